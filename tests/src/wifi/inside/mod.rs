//! The runner inside the laptop VM (`vmnet-wifi-laptop`, started by systemd as
//! `vmnet-wifi.service` once D-Bus and NetworkManager run). It plays the scenarios in order
//! and reports each through the result protocol; the VM powers off when it returns.
//!
//! | scenario  | needs   | shows |
//! |-----------|---------|-------|
//! | `laptop`  |         | hwsim radios, both APs up, vmnetd (default configuration) offline, NM sees wlan0 as Wi-Fi |
//! | `home`    | laptop  | NM on "home"; vmnetd follows; a vmnet member's guest gets its lease, is reached by ping and TCP |
//! | `ipv6`    | home    | the APs' RAs (SLAAC): Manager1 `Prefix6` is home's /64; the DHCP/QMP guest and an IPv6-only one without QMP take home addresses, listed in `Addresses6`, pinged over IPv6 from home; the next roam watched |
//! | `roam`    | home    | `nmcli connection up` office: one `Rehomed`, QMP flap, new lease, reached from office; dispatcher ran |
//! | `ipv6-roam` | ipv6  | after that roam: both guests on the office /64, pinged from office (the QMP-less one as it roamed), home addresses no longer preferred or routed |
//! | `roam-back` | roam  | the same, back home |
//! | `ap-loss` | roam-back | the home AP disappears, NM falls back on office by itself: the same checks |
//! | `radio`   | ap-loss | `nmcli radio wifi off`: offline, nothing routed; on: back online on office, reached again |
//! | `hostile` | home    | the AP's side routes another network of the laptop's through it: reaches the guest, nothing else; no ARP answer for a VPN-routed LAN address |
//! | `bridge`  | home    | a bridge over the station (on office) carries no second MAC |
//!
//! A scenario is a function added to [`SCENARIOS`] with the scenario it needs, and a
//! `slow_wifi_*` test in `tests/tests/wifi.rs` that asserts it.

mod agent;
mod bridge;
mod guest;
mod hostile;
mod ipv6;
mod lines;
mod report;
mod scenarios;
mod vmnet;
mod world;

use guest::Guest;
use report::{Reporter, Step};
use std::path::Path;
use std::process::ExitCode;
use world::Laptop;

/// A scenario's body: the world, the reporter and the guest (`home` makes it).
type Play = fn(&mut Laptop, &mut Reporter, &mut Option<Guest>) -> Step;

fn with_guest(
    play: fn(&mut Laptop, &mut Reporter, &mut Guest) -> Step,
) -> impl Fn(&mut Laptop, &mut Reporter, &mut Option<Guest>) -> Step {
    move |w, r, guest| match guest.as_mut() {
        Some(guest) => play(w, r, guest),
        None => Err("no guest (scenario home did not make one)".into()),
    }
}

/// Every scenario in the order played, with the scenario it needs to have passed.
const SCENARIOS: [(&str, Option<&str>); 10] = [
    ("laptop", None),
    ("home", Some("laptop")),
    ("ipv6", Some("home")),
    ("roam", Some("home")),
    ("ipv6-roam", Some("ipv6")),
    ("roam-back", Some("roam")),
    ("ap-loss", Some("roam-back")),
    ("radio", Some("ap-loss")),
    ("hostile", Some("home")),
    ("bridge", Some("home")),
];

fn play(name: &str) -> Play {
    match name {
        "laptop" => |w, r, _| scenarios::laptop(w, r),
        "home" => |w, r, g| {
            *g = Some(scenarios::home(w, r)?);
            Ok(())
        },
        "ipv6" => |w, r, g| with_guest(ipv6::ipv6)(w, r, g),
        "roam" => |w, r, g| with_guest(scenarios::roam_to_office)(w, r, g),
        "ipv6-roam" => |w, r, g| with_guest(ipv6::ipv6_roam)(w, r, g),
        "roam-back" => |w, r, g| with_guest(scenarios::roam_back_home)(w, r, g),
        "ap-loss" => |w, r, g| with_guest(scenarios::ap_loss)(w, r, g),
        "radio" => |w, r, g| with_guest(scenarios::radio)(w, r, g),
        "hostile" => |w, r, g| with_guest(hostile::hostile)(w, r, g),
        _ => |w, r, _| bridge::bridge(w, r),
    }
}

/// Plays every scenario, reporting to `out/results`; leaves the journal in `out/journal.txt`.
pub fn main(out: &Path) -> ExitCode {
    println!("vmnet-wifi: runner started");
    let mut r = match Reporter::create(&out.join("results")) {
        Ok(r) => r,
        Err(e) => {
            println!("vmnet-wifi: cannot create the results file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut w = match Laptop::new(out) {
        Ok(w) => w,
        Err(e) => {
            r.not_run("laptop", &format!("the runner's environment: {e}"));
            r.done();
            return ExitCode::FAILURE;
        }
    };
    let mut guest = None;
    let mut passed: Vec<&str> = Vec::new();
    for (name, needs) in SCENARIOS {
        if let Some(needed) = needs.filter(|n| !passed.contains(n)) {
            r.not_run(name, &format!("scenario {needed} did not pass"));
            continue;
        }
        r.begin(name);
        let outcome = play(name)(&mut w, &mut r, &mut guest);
        if r.end(outcome) {
            passed.push(name);
        }
    }
    let journal = std::process::Command::new("journalctl").args(["-b", "--no-pager"]).output();
    if let Ok(journal) = journal {
        let _ = std::fs::write(out.join("journal.txt"), journal.stdout);
    }
    w.procs.stop_all();
    r.done();
    ExitCode::SUCCESS
}

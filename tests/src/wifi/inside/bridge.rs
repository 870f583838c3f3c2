//! Why vmnet routes: a bridge over the Wi-Fi station does not carry a second MAC. The kernel
//! refuses to enslave a 3-address station; with 4-address mode it accepts, but the AP (no WDS)
//! drops the frames of a MAC it has not associated, so a host behind the bridge stays out of
//! reach and the AP never learns its MAC. Played last: it takes wlan0 away from NM's routing.

use super::guest::pings;
use super::report::{Reporter, Step};
use super::world::{ipv4, Ap, Laptop, OFFICE, WLAN};
use crate::cmd::{ip, output, run};
use std::process::Command;
use std::time::Duration;

const BRIDGE: &str = "br-wifi";
const BEHIND: &str = "behind";
/// The host behind the bridge: host part in the AP's subnet, outside DHCP's and vmnet's ranges.
const BEHIND_HOST: &str = "99";

fn sh(args: &[&str]) -> Result<String, String> {
    run(Command::new(args[0]).args(&args[1..])).map_err(|e| e.to_string())
}

/// On the AP the laptop is on after the scenarios before (office).
pub fn bridge(w: &mut Laptop, r: &mut Reporter) -> Step {
    bridge_on(w, r, &OFFICE)
}

fn bridge_on(w: &mut Laptop, r: &mut Reporter, ap: &Ap) -> Step {
    let address = w.wlan_address().unwrap_or_default();
    r.require(&format!("laptop-on-{}", ap.ns), w.on(ap), &format!("wlan0 {address}"))?;
    let behind_addr = format!("{}.{BEHIND_HOST}", ap.net);
    sh(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
    sh(&["ip", "link", "set", BRIDGE, "up"])?;
    sh(&["ip", "netns", "add", BEHIND])?;
    sh(&["ip", "link", "add", "veth-behind", "type", "veth", "peer", "name", "eth0", "netns", BEHIND])?;
    sh(&["ip", "link", "set", "veth-behind", "master", BRIDGE, "up"])?;
    let in_behind = |args: &[&str]| ip(BEHIND, args).map_err(|e| e.to_string());
    in_behind(&["link", "set", "lo", "up"])?;
    in_behind(&["addr", "add", &format!("{behind_addr}/24"), "dev", "eth0"])?;
    in_behind(&["link", "set", "eth0", "up"])?;
    let mac = ip(BEHIND, &["-br", "link", "show", "eth0"]).unwrap_or_default();
    let behind_mac = mac.split_whitespace().nth(2).unwrap_or("").to_string();

    let refused = output(Command::new("ip").args(["link", "set", WLAN, "master", BRIDGE]))
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).trim().to_string()))
        .map_err(|e| e.to_string())?;
    r.check("kernel-refuses-3-address-station", !refused.0, &refused.1);

    sh(&["iw", "dev", WLAN, "set", "4addr", "on"])?;
    let enslaved = output(Command::new("ip").args(["link", "set", WLAN, "master", BRIDGE]))
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).trim().to_string()))
        .map_err(|e| e.to_string())?;
    let outcome = if enslaved.0 { "ok" } else { &enslaved.1 };
    let detail = format!("ip link set {WLAN} master {BRIDGE} with 4addr on: {outcome}");
    r.require("4addr-station-enslaved", enslaved.0, &detail)?;
    // The bridge passes frames: it learns the behind host's MAC once that host sends.
    let _ = pings(BEHIND, &ap.address(), 2);
    let fdb = run(Command::new("bridge").args(["fdb", "show", "br", BRIDGE])).unwrap_or_default();
    r.check(
        "bridge-learned-behind-mac",
        fdb.contains(&behind_mac),
        &format!("{behind_mac} in the bridge's fdb"),
    );
    std::thread::sleep(Duration::from_secs(1));
    let answered = pings(ap.ns, &behind_addr, 3);
    r.check(
        "ap-lan-cannot-reach-host-behind-bridge",
        answered == 0,
        &format!("{answered} of 3 pings answered"),
    );
    let stations = w.stations(ap);
    let laptop = std::fs::read_to_string(format!("/sys/class/net/{WLAN}/address")).unwrap_or_default();
    r.check(
        "ap-associates-only-the-laptop",
        stations == [laptop.trim().to_string()],
        &format!("stations {stations:?}, behind host {behind_mac}"),
    );
    let neigh = ip(ap.ns, &["neigh", "show", "dev", ap.iface]).unwrap_or_default();
    let learned = !behind_mac.is_empty() && neigh.contains(&behind_mac);
    r.check("ap-never-learns-second-mac", !learned, neigh.trim());
    // Put wlan0 back (also fine if the VM ends right here).
    let _ = sh(&["ip", "link", "set", WLAN, "nomaster"]);
    let _ = sh(&["iw", "dev", WLAN, "set", "4addr", "off"]);
    println!("vmnet-wifi: after the bridge test wlan0 has {:?}", ipv4(None, WLAN));
    Ok(())
}

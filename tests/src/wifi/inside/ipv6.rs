//! IPv6 over real Wi-Fi: each AP's dnsmasq advertises its /64 for SLAAC (home 2001:db8:1::/64,
//! office 2001:db8:2::/64, RDNSS the AP's `::1`) and NM's Wi-Fi profiles have
//! `ipv6.method=auto`. vmnetd, on its default configuration, advertises the Wi-Fi's prefix on
//! each tap, learns the guests' SLAAC addresses and routes them with proxy NDP.
//!
//! - `ipv6` (on home): Manager1's IPv6 is the home AP's; the DHCP/QMP guest and a second,
//!   IPv6-only guest without QMP (so vmnetd cannot flap its link) take a home address by
//!   SLAAC, listed in Guest1 `Addresses6`, and are pinged over IPv6 from the home AP. It then
//!   watches, without polling, what scenario `roam`'s roam does: wlan0's addresses and the
//!   QMP-less guest's (`ip monitor`), and a steady ping from the office AP to the address that
//!   guest will take there (the same EUI-64 interface identifier in the office /64).
//! - `ipv6-roam` (after `roam`, on office): what the watch saw, with the timings from NM's
//!   office address (as NM adds it) to the guest's usable one and to its first answered ping; both guests reached on office, their home addresses no
//!   longer preferred, no home /128 left routed. A roam costs ~20 s under TCG: riding on
//!   `roam`'s roam keeps the IPv6 checks to a few seconds.

use super::guest::{Guest, NS};
use super::lines::Lines;
use super::report::{Reporter, Step};
use super::scenarios::GUEST;
use super::world::{Ap, Laptop, HOME, OFFICE, WLAN};
use crate::cmd::{error, run, wait_until};
use crate::ip6::{self, Addr6, Prefix6};
use std::io;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The IPv6-only guest without QMP, and its netns.
const V6_GUEST: &str = "v6";
const V6_NS: &str = "guest6";
const WAIT: Duration = Duration::from_secs(15);

/// What `ipv6` leaves for `ipv6-roam`: the QMP-less guest and the watch on the roam.
pub struct Roam6 {
    guest: Guest,
    /// The address the guest takes on office.
    office: Ipv6Addr,
    since: Instant,
    wlan: Lines,
    guest_addresses: Lines,
    office_pings: Lines,
    watchers: Vec<u32>,
}

fn prefix(ap: &Ap) -> Result<Prefix6, String> {
    Prefix6::parse(&ap.prefix6()).map_err(|e| e.to_string())
}

/// The first usable (DAD done, not deprecated) stable address in `prefix`.
fn usable_in(addresses: io::Result<Vec<Addr6>>, prefix: Prefix6) -> Option<Addr6> {
    addresses.ok()?.into_iter().find(|a| a.usable() && !a.temporary && a.in_prefix(prefix))
}

fn shown(addresses: io::Result<Vec<Addr6>>) -> String {
    let all: Vec<String> = addresses.unwrap_or_default().iter().map(Addr6::to_string).collect();
    format!("{all:?}")
}

fn wlan_addresses6() -> io::Result<Vec<Addr6>> {
    let args = ["-6", "-j", "addr", "show", "dev", WLAN, "scope", "global"];
    ip6::parse_addresses(&run(Command::new("ip").args(args))?)
}

fn guest_addresses6(ns: &str) -> io::Result<Vec<Addr6>> {
    ip6::addresses(ns, "eth0", "global")
}

/// Guest1 `Addresses6` of guest `name`, from `vmnetctl --json list`.
fn listed6(w: &Laptop, name: &str) -> Vec<String> {
    let Ok((true, stdout, _)) = w.vmnetctl(None, &["--json", "list"]) else { return Vec::new() };
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let guest = list.as_array().into_iter().flatten().find(|g| g["name"] == name);
    let addresses = guest.and_then(|g| g["addresses6"].as_array()).into_iter().flatten();
    addresses.filter_map(|a| a.as_str().map(str::to_string)).collect()
}

/// Manager1's IPv6: `Prefix6` the AP's /64, `Nameservers6` its RDNSS, `Gateway6` a link-local.
fn manager6(w: &Laptop, r: &mut Reporter, ap: &Ap) -> Step {
    let wanted = ap.prefix6();
    let mut status = serde_json::Value::Null;
    let seen = wait_until(WAIT, Duration::from_millis(100), || {
        status = w.status().unwrap_or_default();
        status["prefix6"] == wanted.as_str()
    });
    r.require(&format!("vmnetd-prefix6-{}", ap.ns), seen, &status.to_string())?;
    let servers = &status["nameservers6"];
    let rdnss = servers.as_array().is_some_and(|l| l.iter().any(|a| a == ap.address6().as_str()));
    r.check("vmnetd-nameservers6-from-rdnss", rdnss, &format!("{servers} (wanted {})", ap.address6()));
    let gateway = status["gateway6"].as_str().unwrap_or_default();
    r.check("vmnetd-gateway6-link-local", gateway.starts_with("fe80:"), gateway);
    Ok(())
}

/// Guest `name` in netns `ns` has a SLAAC address in `ap`'s /64, listed in its `Addresses6`,
/// pinged over IPv6 from the AP; it pings the AP. Returns the address and when it was pinged.
fn reached6(
    w: &Laptop,
    r: &mut Reporter,
    (name, ns): (&str, &str),
    ap: &Ap,
) -> Result<(Addr6, Instant), String> {
    let prefix = prefix(ap)?;
    let mut found = None;
    wait_until(WAIT, Duration::from_millis(50), || {
        found = usable_in(guest_addresses6(ns), prefix);
        found.is_some()
    });
    let detail = format!("{ns} eth0 {}", shown(guest_addresses6(ns)));
    r.require(&format!("{name}-slaac-{}", ap.ns), found.is_some(), &detail)?;
    let address = found.ok_or("no address")?;
    let text = address.address.to_string();
    let listed = wait_until(WAIT, Duration::from_millis(100), || listed6(w, name).contains(&text));
    r.check(&format!("{name}-addresses6-lists-it"), listed, &format!("{text} in {:?}", listed6(w, name)));
    let source = ap.address6();
    let pinged = wait_until(WAIT, Duration::from_millis(20), || ip6::ping(ap.ns, Some(&source), &text));
    let at = Instant::now();
    r.require(&format!("{}-pings6-{name}", ap.ns), pinged, &format!("{text} from {source}"))?;
    let back = ip6::ping(ns, None, &source);
    r.check(&format!("{name}-pings6-{}-ap", ap.ns), back, &source);
    Ok((address, at))
}

/// `argv` (in netns `ns` if given) as a process of the runner, its lines read as they come.
fn watch(w: &Laptop, name: &str, ns: Option<&str>, argv: &[&str]) -> io::Result<(u32, Lines)> {
    let mut cmd = match ns {
        Some(ns) => crate::cmd::in_netns(ns, argv),
        None => {
            let mut cmd = Command::new(argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    };
    let log = format!("{}.log", name.replace(' ', "-"));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(w.log(&log)?);
    let (pid, stdout) = w.procs.spawn(name, cmd)?;
    let stdout = stdout.ok_or_else(|| error(format!("{name}: stdout is not piped")))?;
    Ok((pid, Lines::read(stdout, Some(w.log(&log)?))))
}

impl Roam6 {
    /// Starts watching the next roam for `guest`, whose home address is `home`.
    fn start(w: &Laptop, guest: Guest, home: Ipv6Addr) -> Result<Roam6, String> {
        let identifier = u128::from(home) & u128::from(u64::MAX);
        let office = Ipv6Addr::from(u128::from(prefix(&OFFICE)?.network) | identifier);
        let since = Instant::now();
        let mut watchers = Vec::new();
        let mut started = |name: &str, ns: Option<&str>, argv: &[&str]| {
            let (pid, lines) = watch(w, name, ns, argv).map_err(|e| e.to_string())?;
            watchers.push(pid);
            Ok::<Lines, String>(lines)
        };
        let wlan = started("monitor wlan0", None, &["ip", "-6", "monitor", "address", "dev", WLAN])?;
        let monitor = ["ip", "-6", "monitor", "address", "dev", "eth0"];
        let guest_addresses = started("monitor v6", Some(V6_NS), &monitor)?;
        let target = office.to_string();
        let from = OFFICE.address6();
        let ping = ["busybox", "ping", "-6", "-i", "0.2", "-I", &from, &target];
        let office_pings = started("office pings v6", Some(OFFICE.ns), &ping)?;
        Ok(Roam6 { guest, office, since, wlan, guest_addresses, office_pings, watchers })
    }

    /// Stops the watch and takes the QMP-less guest away: the scenarios after see the world as
    /// before `ipv6`.
    fn stop(self, w: &Laptop) -> bool {
        for pid in self.watchers {
            let _ = w.procs.stop(pid);
        }
        remove_ipv6_guest(w, Some(self.guest.pid))
    }
}

fn remove_ipv6_guest(w: &Laptop, pid: Option<u32>) -> bool {
    let removed = w.vmnetctl(Some(w.tester), &["remove", V6_GUEST]).is_ok_and(|(ok, _, _)| ok);
    if let Some(pid) = pid {
        let _ = w.procs.stop(pid);
    }
    let _ = run(Command::new("ip").args(["netns", "del", V6_NS]));
    removed
}

/// On home: vmnetd's IPv6, both guests on the home prefix; then the watch on the next roam.
pub fn ipv6(w: &mut Laptop, r: &mut Reporter, _guest: &mut Guest) -> Step {
    let home = prefix(&HOME)?;
    let nm = wait_until(WAIT, Duration::from_millis(50), || usable_in(wlan_addresses6(), home).is_some());
    r.require("nm-ipv6-address-home", nm, &format!("wlan0 {}", shown(wlan_addresses6())))?;
    manager6(w, r, &HOME)?;
    reached6(w, r, (GUEST, NS), &HOME)?;
    let added = Instant::now();
    let guest = match w.add_ipv6_guest(V6_GUEST, V6_NS) {
        Ok(guest) => guest,
        Err(e) => {
            remove_ipv6_guest(w, None);
            return Err(format!("the IPv6-only guest: {e}"));
        }
    };
    let pid = guest.pid;
    let watched = reached6(w, r, (V6_GUEST, V6_NS), &HOME).and_then(|(address, at)| {
        r.time_between("v6-added-to-pingable6", added, at);
        Roam6::start(w, guest, address.address)
    });
    match watched {
        Ok(roam6) => w.roam6 = Some(roam6),
        Err(e) => {
            remove_ipv6_guest(w, Some(pid));
            return Err(e);
        }
    }
    Ok(())
}

/// After `roam`, on office: what the watch saw and both guests on the office prefix.
pub fn ipv6_roam(w: &mut Laptop, r: &mut Reporter, _guest: &mut Guest) -> Step {
    let mut roam6 = w.roam6.take().ok_or("scenario ipv6 left no IPv6-only guest")?;
    let result = on_office(w, r, &mut roam6);
    let removed = roam6.stop(w);
    r.check("ipv6-only-guest-removed", removed, &format!("vmnetctl remove {V6_GUEST}"));
    result
}

fn on_office(w: &mut Laptop, r: &mut Reporter, roam6: &mut Roam6) -> Step {
    let wlan = w.wlan_address().unwrap_or_default();
    r.require("laptop-on-office", w.on(&OFFICE), &format!("wlan0 {wlan}"))?;
    let office6 = format!(" inet6 {}:", OFFICE.net6);
    let added = |l: &str| l.contains(&office6) && !l.starts_with("Deleted");
    let usable = |l: &str| added(l) && !l.contains("tentative");
    let nm_usable = roam6.wlan.wait_for(roam6.since, WAIT, usable);
    let detail = format!("wlan0 {}", shown(wlan_addresses6()));
    r.require("nm-ipv6-address-office", nm_usable.is_some(), &detail)?;
    manager6(w, r, &OFFICE)?;
    // From when NM put its office address on wlan0 (still tentative: its own DAD runs).
    let nm = roam6.wlan.wait_for(roam6.since, WAIT, added).map_or(roam6.since, |(at, _)| at);
    if let Some((at, _)) = nm_usable {
        r.time_between("nm-address6-dad", nm, at);
    }
    let target = roam6.office.to_string();
    if let Some((at, _)) = roam6.guest_addresses.wait_for(roam6.since, WAIT, usable) {
        r.time_between("nm-address6-to-v6-address6", nm, at);
    }
    let pinged = roam6.office_pings.wait_for(roam6.since, WAIT, |l| l.contains("bytes from"));
    r.check("office-pinged-v6-as-it-roamed", pinged.is_some(), &format!("{target}, no QMP"));
    if let Some((at, _)) = pinged {
        r.time_between("nm-address6-to-v6-pingable6", nm, at);
    }
    let (address, _) = reached6(w, r, (V6_GUEST, V6_NS), &OFFICE)?;
    r.check("v6-same-identifier-on-office", address.address == roam6.office, &address.to_string());
    home_not_preferred(r, V6_GUEST, V6_NS)?;
    reached6(w, r, (GUEST, NS), &OFFICE)?;
    home_not_preferred(r, GUEST, NS)?;
    let routes = run(Command::new("ip").args(["-6", "route", "show", "table", "all", "proto", "118"]));
    let routes = routes.unwrap_or_default();
    let stale: Vec<&str> = routes.lines().filter(|l| l.starts_with(&format!("{}:", HOME.net6))).collect();
    r.check("no-home-address6-routed", stale.is_empty(), &format!("{stale:?}"));
    Ok(())
}

/// The guest no longer uses its home address (deprecated by vmnetd's RA, or gone).
fn home_not_preferred(r: &mut Reporter, name: &str, ns: &str) -> Step {
    let home = prefix(&HOME)?;
    let addresses = guest_addresses6(ns).map_err(|e| e.to_string())?;
    let usable: Vec<String> =
        addresses.iter().filter(|a| a.in_prefix(home) && a.usable()).map(Addr6::to_string).collect();
    r.check(&format!("{name}-home-address6-not-preferred"), usable.is_empty(), &shown(Ok(addresses)));
    Ok(())
}

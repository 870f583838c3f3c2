//! The scenarios, played in this order in one VM; each reports its checks and timings. A
//! scenario builds on the state the one before left (NM's connection, the guest).

use super::guest::{ping_until, pings, tcp, Guest, NS};
use super::report::{Reporter, Step};
use super::world::{Ap, Laptop, HOME, OFFICE, WLAN};
use std::time::{Duration, Instant};

/// How long NM gets to associate and get an address (scan, 4-way handshake, DHCP).
const ASSOCIATE: Duration = Duration::from_secs(60);
/// How long NM gets to fall back on its own when the AP it is on disappears.
const FALLBACK: Duration = Duration::from_secs(90);
const LEASE: Duration = Duration::from_secs(20);
const REACH: Duration = Duration::from_secs(10);
/// How long to wait after a roam for a second, unwanted `Rehomed`.
const SETTLE: Duration = Duration::from_secs(3);
/// The guest's name (tap `vmt-web`) and its address's host part in every /24.
pub const GUEST: &str = "web";
pub const HOST_PART: &str = "200";

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The world: radios, both APs, vmnetd with the default configuration, `vmnetctl watch`.
pub fn laptop(w: &mut Laptop, r: &mut Reporter) -> Step {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    r.check(
        "systemd-pid1",
        std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        kernel.trim(),
    );
    w.radios().map_err(io("mac80211_hwsim radios"))?;
    r.check("hwsim-radios", true, "wlan1 in netns home, wlan2 in netns office, wlan0 for the laptop");
    let started = Instant::now();
    for ap in [&HOME, &OFFICE] {
        w.start_ap(ap).map_err(io(ap.ssid))?;
    }
    for ap in [&HOME, &OFFICE] {
        let up =
            crate::cmd::wait_until(Duration::from_secs(30), Duration::from_millis(200), || w.ap_enabled(ap));
        r.require(
            &format!("ap-{}-enabled", ap.ns),
            up,
            &format!("hostapd {} on channel {}", ap.ssid, ap.channel),
        )?;
    }
    r.time_between("aps-enabled", started, Instant::now());
    w.install_binaries().map_err(io("install vmnetctl and the dispatcher plugin"))?;
    w.start_vmnetd().map_err(io("vmnetd"))?;
    let status = w.status().unwrap_or_default();
    r.require("vmnetd-offline-before-nm", status["state"] == "offline", &status.to_string())?;
    w.start_watch().map_err(io("vmnetctl watch"))?;
    super::agent::start(super::world::PSK).map_err(io("NM secret agent"))?;
    let kind = w.nmcli(&["-g", "GENERAL.TYPE", "device", "show", WLAN]).unwrap_or_default();
    r.require("nm-sees-wlan0-as-wifi", kind.trim() == "wifi", kind.trim())
}

/// NM associates with "home"; vmnetd follows; a guest added by a member of group vmnet gets
/// its lease and is reached from the home AP's namespace across the 802.11 link.
pub fn home(w: &mut Laptop, r: &mut Reporter) -> Result<Guest, String> {
    // Home autoconnects only once it is up: NM would otherwise activate it as soon as it is
    // added, and the explicit `connection up` would then restart that activation.
    w.add_profile(&HOME, false).map_err(io("nmcli connection add home"))?;
    w.add_profile(&OFFICE, false).map_err(io("nmcli connection add office"))?;
    let started = Instant::now();
    r.require("scan-sees-home", w.wait_for_scan(&HOME, ASSOCIATE), HOME.ssid)?;
    w.connection_up(&HOME).map_err(io("nmcli connection up home"))?;
    let connected = w.wait_for_address(&HOME, ASSOCIATE);
    let address = w.wlan_address().unwrap_or_default();
    r.require("nm-connected-home", connected.is_some(), &format!("wlan0 {address}"))?;
    r.time("boot-to-nm-connected", uptime());
    r.time_between("scan-associate-dhcp", started, connected.unwrap_or(started));
    // NM falls back on home by itself when the office AP disappears (scenario ap-loss).
    w.nmcli(&["connection", "modify", HOME.profile, "connection.autoconnect", "yes"])
        .map_err(io("autoconnect"))?;
    let mut active = String::new();
    crate::cmd::wait_until(REACH, Duration::from_millis(200), || {
        active = active_connection_type();
        active == "s \"802-11-wireless\""
    });
    r.check("nm-active-type-802-11-wireless", active == "s \"802-11-wireless\"", &active);
    let laptop_mac = std::fs::read_to_string(format!("/sys/class/net/{WLAN}/address")).unwrap_or_default();
    let laptop_mac = laptop_mac.trim().to_string();
    let associated =
        crate::cmd::wait_until(REACH, Duration::from_millis(200), || w.stations(&HOME).contains(&laptop_mac));
    r.check("home-ap-has-the-laptop", associated, &format!("{laptop_mac} in {:?}", w.stations(&HOME)));
    let online = w.wait_for_state("online", Some(&HOME.subnet()), REACH);
    let status = w.status().unwrap_or_default();
    r.require("vmnetd-follows-wifi", online.is_some() && status["uplink"] == WLAN, &status.to_string())?;
    // From the watch's lines: the checks above took time of their own.
    if let Some(at) = w.state_changed_to(started, "online", REACH) {
        r.time_between("nm-address-to-vmnetd-online", connected.unwrap_or(started), at);
    }

    let (refused, _, stderr) =
        w.vmnetctl(Some(crate::users::NOBODY), &["add", "intruder"]).map_err(io("vmnetctl"))?;
    r.check("polkit-refuses-non-members", !refused && stderr.contains("not authorized"), &stderr);
    let added = Instant::now();
    let mut guest = w.add_guest(GUEST).map_err(io("vmnetctl add as a member of group vmnet"))?;
    r.check("vmnetctl-add-as-vmnet-member", true, &format!("tap {} mac {}", guest.tap, guest.mac));
    let host = address.split('/').next().unwrap_or("").to_string();
    expect_lease(r, &mut guest, added, &HOME, &host)?;
    reachable(r, &HOME, added)?;
    // The routing at work: the home LAN sees the guest's address at the laptop's own MAC.
    let neigh =
        crate::cmd::ip(HOME.ns, &["neigh", "show", &format!("{}.{HOST_PART}", HOME.net)]).unwrap_or_default();
    r.check("home-sees-guest-at-laptop-mac", neigh.contains(&laptop_mac), neigh.trim());
    Ok(guest)
}

/// The guest's DHCP lease after `since`: the AP's subnet, the laptop's address as router.
fn expect_lease(
    r: &mut Reporter,
    guest: &mut Guest,
    since: Instant,
    ap: &Ap,
    host: &str,
) -> Result<Instant, String> {
    let (at, lease) = guest.lease_after(since, LEASE).map_err(io("guest DHCP"))?;
    let wanted = format!("{}.{HOST_PART}/24", ap.net);
    let router = lease.router.map(|a| a.to_string()).unwrap_or_default();
    let detail = format!("{} via {router} (wanted {wanted} via {host})", lease.cidr());
    r.require("guest-lease", lease.cidr() == wanted && router == host, &detail)?;
    Ok(at)
}

/// Ping and TCP from the AP's namespace to the guest, and ping from the guest to the AP.
fn reachable(r: &mut Reporter, ap: &Ap, since: Instant) -> Result<Instant, String> {
    let addr = format!("{}.{HOST_PART}", ap.net);
    let first = ping_until(ap.ns, &addr, REACH);
    r.require(&format!("{}-pings-guest", ap.ns), first.is_some(), &format!("{addr} from netns {}", ap.ns))?;
    let answered = pings(ap.ns, &addr, 3);
    r.check(&format!("{}-pings-guest-steadily", ap.ns), answered == 3, &format!("{answered} of 3"));
    let reply = tcp(ap.ns, &addr);
    r.check(&format!("{}-tcp-to-guest", ap.ns), reply.as_deref() == Some("hi"), &format!("{reply:?}"));
    let back = ping_until(NS, &ap.address(), REACH).is_some();
    r.check(&format!("guest-pings-{}-ap", ap.ns), back, &ap.address());
    let at = first.unwrap_or(since);
    r.time_between(&format!("{}-pingable", ap.ns), since, at);
    Ok(at)
}

/// `org.freedesktop.NetworkManager.Connection.Active.Type` of wlan0's active connection.
fn active_connection_type() -> String {
    let busctl = |args: &[&str]| {
        let mut cmd = std::process::Command::new("busctl");
        cmd.arg("--system").args(args);
        crate::cmd::run(&mut cmd).unwrap_or_default().trim().to_string()
    };
    let nm = "org.freedesktop.NetworkManager";
    let device =
        busctl(&["call", nm, "/org/freedesktop/NetworkManager", nm, "GetDeviceByIpIface", "s", WLAN]);
    let device = device.split('"').nth(1).unwrap_or("").to_string();
    let active = busctl(&["get-property", nm, &device, &format!("{nm}.Device"), "ActiveConnection"]);
    let active = active.split('"').nth(1).unwrap_or("").to_string();
    busctl(&["get-property", nm, &active, &format!("{nm}.Connection.Active"), "Type"])
}

/// A move from `from` to `to`, started by `start` (which returns when it started it): NM's
/// new address, exactly one `Rehomed`, the guest's QMP flap and new lease, reachability
/// from the new AP's namespace; the dispatcher plugin ran. Reports the timings.
pub fn roam(
    w: &mut Laptop,
    r: &mut Reporter,
    guest: &mut Guest,
    (from, to): (&Ap, &Ap),
    start: impl FnOnce(&mut Laptop) -> Result<Instant, String>,
    timeout: Duration,
) -> Step {
    let dispatched = w.dispatcher_runs();
    let started = start(w)?;
    let address = w.wait_for_address(to, timeout);
    let wlan = w.wlan_address().unwrap_or_default();
    r.require(&format!("nm-moved-to-{}", to.ns), address.is_some(), &format!("wlan0 {wlan}"))?;
    let address = address.unwrap_or(started);
    r.time_between("roam-to-nm-address", started, address);
    let flap = guest.link_down_after(started, LEASE);
    r.require("guest-link-flapped-over-qmp", flap.is_some(), "tapguest saw `link down`")?;
    let host = wlan.split('/').next().unwrap_or("").to_string();
    let lease = expect_lease(r, guest, started, to, &host)?;
    let pingable = reachable(r, to, started)?;
    std::thread::sleep(SETTLE);
    let rehomed = w.rehomed_since(started);
    let (old, new) = (from.subnet(), to.subnet());
    let once = rehomed.len() == 1 && rehomed[0].1 == old && rehomed[0].2 == new;
    let seen: Vec<String> = rehomed.iter().map(|(_, o, n)| format!("{o} -> {n}")).collect();
    r.check("exactly-one-rehomed", once, &format!("{seen:?} (wanted [\"{old} -> {new}\"])"));
    if let Some((at, _, _)) = rehomed.first() {
        r.time_between("nm-address-to-rehomed", address, *at);
    }
    r.time_between("nm-address-to-guest-lease", address, lease);
    r.time_between("nm-address-to-guest-pingable", address, pingable);
    let status = w.status().unwrap_or_default();
    r.check("vmnetd-subnet", status["subnet"] == new.as_str(), &status.to_string());
    let routes = w.vmnet_routes();
    let route = format!("{}.{HOST_PART} dev {}", to.net, guest.tap);
    r.check("route-moved", routes.iter().any(|l| l.starts_with(&route)), &format!("{routes:?}"));
    let ran = crate::cmd::wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
        w.dispatcher_runs() > dispatched
    });
    r.check("dispatcher-plugin-ran", ran, "journal: `vmnet-dispatcher: wlan0 up: vmnetd resynced`");
    Ok(())
}

/// `nmcli connection up` to `to`, from `from`.
fn roam_by_nmcli(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest, (from, to): (&Ap, &Ap)) -> Step {
    r.require(&format!("scan-sees-{}", to.ns), w.wait_for_scan(to, ASSOCIATE), to.ssid)?;
    let start = |w: &mut Laptop| {
        let at = Instant::now();
        w.connection_up(to).map_err(io("nmcli connection up"))?;
        Ok(at)
    };
    roam(w, r, guest, (from, to), start, ASSOCIATE)
}

/// Home to office by `nmcli connection up`.
pub fn roam_to_office(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest) -> Step {
    roam_by_nmcli(w, r, guest, (&HOME, &OFFICE))
}

/// And back home the same way.
pub fn roam_back_home(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest) -> Step {
    roam_by_nmcli(w, r, guest, (&OFFICE, &HOME))
}

/// The home AP disappears; NM falls back on office by itself (autoconnect).
pub fn ap_loss(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest) -> Step {
    w.nmcli(&["connection", "modify", OFFICE.profile, "connection.autoconnect", "yes"])
        .map_err(io("autoconnect office"))?;
    let start = |w: &mut Laptop| {
        let at = Instant::now();
        w.stop_ap(&HOME).map_err(io("stop the home AP"))?;
        Ok(at)
    };
    roam(w, r, guest, (&HOME, &OFFICE), start, FALLBACK)
}

/// Wi-Fi off: vmnetd offline, nothing routed; on: NM reconnects, the guest is reached again.
pub fn radio(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest) -> Step {
    radio_on(w, r, guest, &OFFICE)
}

fn radio_on(w: &mut Laptop, r: &mut Reporter, guest: &mut Guest, ap: &Ap) -> Step {
    let addr = format!("{}.{HOST_PART}", ap.net);
    let off = Instant::now();
    w.nmcli(&["radio", "wifi", "off"]).map_err(io("nmcli radio wifi off"))?;
    let offline = w.wait_for_state("offline", None, REACH);
    let status = w.status().unwrap_or_default();
    r.require("vmnetd-offline", offline.is_some(), &status.to_string())?;
    r.time_between("radio-off-to-offline", off, offline.unwrap_or(off));
    let routes = w.vmnet_routes();
    r.check("no-routes-while-off", routes.is_empty(), &format!("{routes:?}"));
    let proxies = w.vmnet_proxies();
    r.check("proxy-entries-withdrawn", proxies.is_empty(), &format!("{proxies:?}"));
    let proxy = w.sysctl(&format!("net.ipv4.conf.{WLAN}.proxy_arp"));
    r.check("wlan0-proxy-arp-untouched", proxy == "0", &format!("proxy_arp={proxy}"));
    let out = pings(NS, &ap.address(), 2);
    r.check("guest-cut-off", out == 0, &format!("{out} of 2 pings to the AP answered"));
    r.check(
        "guest-kept",
        w.vmnetctl(None, &["list"]).is_ok_and(|(ok, l, _)| ok && l.contains(&guest.tap)),
        &guest.tap,
    );
    w.revive_ap(ap).map_err(io("the AP after the radio switch"))?;
    let up = crate::cmd::wait_until(Duration::from_secs(30), Duration::from_millis(200), || w.ap_enabled(ap));
    r.require("ap-back", up, &format!("hostapd {} after the APs' radios were unblocked", ap.ssid))?;

    let on = Instant::now();
    w.nmcli(&["radio", "wifi", "on"]).map_err(io("nmcli radio wifi on"))?;
    let back = w.wait_for_address(ap, FALLBACK);
    let enabled = if w.ap_enabled(ap) { "enabled" } else { "not enabled" };
    let detail = format!("wlan0 {:?}, AP {enabled}", w.wlan_address());
    r.require(&format!("nm-reconnects-{}", ap.ns), back.is_some(), &detail)?;
    r.time_between("radio-on-to-nm-address", on, back.unwrap_or(on));
    let online = w.wait_for_state("online", Some(&ap.subnet()), REACH);
    r.require("vmnetd-online-again", online.is_some(), &w.status().unwrap_or_default().to_string())?;
    let routes = w.vmnet_routes();
    let route = format!("{addr} dev {}", guest.tap);
    r.check("route-restored", routes.iter().any(|l| l.starts_with(&route)), &format!("{routes:?}"));
    let pingable = ping_until(ap.ns, &addr, Duration::from_secs(20));
    r.check(&format!("{}-pings-guest-again", ap.ns), pingable.is_some(), &addr);
    r.time_between("radio-on-to-guest-pingable", on, pingable.unwrap_or(on));
    Ok(())
}

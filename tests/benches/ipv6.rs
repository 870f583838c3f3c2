//! vmnet IPv6 benchmark: prints figures, asserts nothing about speed. Run as root, with the
//! release vmnetd built first (`cargo bench` does not build it):
//!
//! ```sh
//! cargo build --release -p vmnetd -p vmnet-dispatcher && cargo bench -p vmnet-tests --bench ipv6
//! ```
//!
//! 1. A guest's DAD → its address routed: a netns guest's Neighbor Solicitation from `::` (sent
//!    by the bench from the guest's netns, as the guest's kernel would) to the moment vmnetd has
//!    the /128 route, the proxy NDP entry and the filter element in place (its "uses …: routed"
//!    log line, written after the kernel acknowledged all three). With `dad_ms = 0` that is
//!    vmnetd's own cost; with the default 400 ms the check on the LAN is in it too, so the
//!    figure shown is the rest: elapsed − 400 ms.
//! 2. Roam → the guest reachable on the new prefix: with a real NetworkManager on dual-stack
//!    LANs, from the moment NM's uplink holds its new address in the office (or home) prefix to
//!    the first echo reply from the guest's new SLAAC address to the LAN client (one try every
//!    50 ms). It includes the guest's own DAD (750 ms, as vmnetd's advertisements set it).
//!
//! Everything runs in Worlds (private netns, bus, polkitd) that are removed on Drop.

mod common;

use std::net::Ipv6Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{release_binary, text_len, text_since, Samples};
use vmnet_tests::hostile::{dad_probe, mac_octets, send_frames};
use vmnet_tests::vmnetd::vmnetd_binary;
use vmnet_tests::{
    is_root, kernel_config, wait_until, Ipv6Guest, Lan, NmOptions, NmWorld, World, LAN_DEV, UPLINK,
};

/// Addresses checked per guest (under vmnetd's 16 per guest).
const PER_GUEST: usize = 12;
const GUESTS: usize = 4;
const ROAMS: usize = 6;
const NM_CONFIG: &str = "[uplink]\nsource = \"networkmanager\"\nconnection_types = [\"802-3-ethernet\"]\n";

fn main() {
    if !is_root() {
        eprintln!("skipped: the IPv6 benchmark needs root (network namespaces, taps, polkitd)");
        return;
    }
    let binary = release_binary("vmnetd", "VMNETD_BIN", vmnetd_binary(), &["service", "dbus", "polkit"]);
    println!("vmnetd: {}", binary.display());
    for dad_ms in [0, 400] {
        dad_to_route(dad_ms);
    }
    roam_to_reachable();
}

/// Seconds since midnight UTC of a log line's timestamp ("2026-12-01T14:27:53.670984Z ...").
fn log_seconds(line: &str) -> Option<f64> {
    let time = line.split_once('T')?.1.split_once('Z')?.0;
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) =
        (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_seconds() -> f64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_secs_f64() % 86_400.0
}

fn dad_to_route(dad_ms: u32) {
    println!(
        "\n== a guest's DAD -> its /128 route, proxy NDP entry and filter element (dad_ms = {dad_ms}) =="
    );
    let world = World::new("bench6dad");
    let (host, lan) = (world.host_ns(), world.lan_ns());
    world.ip(lan, &["-6", "addr", "add", "2001:db8:1::1/64", "dev", LAN_DEV, "nodad"]).expect("LAN address");
    world.ip(host, &["-6", "addr", "add", "2001:db8:1::10/64", "dev", UPLINK, "nodad"]).expect("address");
    world.ip(host, &["-6", "route", "add", "default", "via", "2001:db8:1::1"]).expect("route");
    let config = format!("[arp]\nprobe_ms = 0\n[ipv6]\ndad_ms = {dad_ms}\n");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, &config));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", "2001:db8:1::/64"));
    let log = world.dir().join("vmnetd.log");
    let mut ms = Vec::new();
    for g in 0..GUESTS {
        let name = format!("g{g}");
        client.add_guest(&name, &[]).expect("AddGuest");
        let tap = client.guest_property(&name, "Tap").unwrap();
        let mac = client.guest_property(&name, "Mac").unwrap();
        let guest = world.add_guest(&tap, &mac); // eth0 down: the guest's kernel sends nothing
        guest.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
        world.set_sysctl(guest.ns(), "net.ipv6.conf.eth0.accept_ra", "0").expect("no SLAAC of its own");
        let octets = mac_octets(&mac).expect("MAC");
        for n in 0..PER_GUEST {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0xbe, g as u16, 0, 1 + n as u16);
            let offset = text_len(&log);
            let sent = now_seconds();
            send_frames(guest.ns(), "eth0", vec![dad_probe(octets, address)]).expect("send");
            let marker = format!("guest {name} uses {address}: routed");
            let mut routed = None;
            wait_until(Duration::from_secs(3), Duration::from_millis(2), || {
                routed = text_since(&log, offset).lines().find(|l| l.contains(&marker)).and_then(log_seconds);
                routed.is_some()
            });
            let at = routed.unwrap_or_else(|| panic!("{address} not routed: {}", vmnetd.log()));
            ms.push((at - sent) * 1000.0 - f64::from(dad_ms));
        }
        drop(guest);
    }
    let label = if dad_ms == 0 { "DAD -> routed" } else { "DAD -> routed, minus the 400 ms check" };
    println!("  {label:<40} {}", Samples::new(ms).summary());
    drop(vmnetd);
}

fn roam_to_reachable() {
    println!("\n== NetworkManager roam -> the guest reachable on the new prefix ==");
    let world = NmWorld::with_options("bench6roam", NmOptions { ipv6: true, ..NmOptions::default() });
    world.wait_for_address6(Lan::Home, Duration::from_secs(15)).expect("NM's home IPv6 address");
    let vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", Lan::Home.prefix6()));
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let mac = client.guest_property("web", "Mac").unwrap();
    let guest = world.ipv6_guest(&tap, &mac, Ipv6Guest::default(), false);
    guest.wait_for_global6(Lan::Home.prefix6(), Duration::from_secs(15)).expect("a home address");
    let mut ms = Vec::new();
    let mut to = Lan::Office;
    for _ in 0..ROAMS {
        world.roam(to).expect("roam");
        world.wait_for_address6(to, Duration::from_secs(15)).expect("NM's new IPv6 address");
        let t0 = Instant::now();
        let mut reached = false;
        while t0.elapsed() < Duration::from_secs(5) && !reached {
            let address = guest
                .addresses6()
                .unwrap_or_default()
                .into_iter()
                .find(|a| to.contains6(&a.address.to_string()));
            if let Some(address) = address {
                let ping = ["busybox", "ping", "-c1", "-W1", "-q", &address.address.to_string()];
                reached = world.exec_in(world.lan_ns(to), &ping).is_ok_and(|o| o.status.success());
            }
            if !reached {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        assert!(reached, "the guest was not reachable in the {} prefix: {}", to.name(), vmnetd.log());
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        to = to.other();
    }
    println!("  {:<40} {}", "NM's new address -> guest reachable", Samples::new(ms).summary());
    drop(vmnetd);
}

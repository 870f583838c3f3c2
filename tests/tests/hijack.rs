//! What a LAN host or a guest can take from the host, and cannot: ARP on the uplink is
//! answered for guests' addresses only (per-address proxy entries, not the uplink's
//! proxy_arp), and a guest's Router Advertisement gives the host no IPv6 address or route.
//! Each case is first shown on what the kernel does without vmnetd's care.

use std::process::Output;
use std::time::Duration;

use vmnet_tests::hostile::{mac_octets, router_advertisement, send_frames};
use vmnet_tests::{kernel_config, require_root, World, LAN_DEV, UPLINK};

/// `arping` from the LAN for `address`: the reply's round trip in ms, or `None` (no answer in 1 s).
fn arp_from_lan(world: &World, address: &str) -> Option<f64> {
    let argv = ["busybox", "arping", "-I", LAN_DEV, "-c", "1", "-w", "1", "-f", address];
    let out: Output = world.exec_in(world.lan_ns(), &argv).expect("arping");
    // "Unicast reply from 198.51.100.200 [aa:bb:cc:dd:ee:ff] 0.061ms"
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("Unicast reply from"))?;
    line.rsplit(' ').next()?.strip_suffix("ms")?.parse().ok()
}

#[test]
fn the_uplink_answers_arp_for_guests_only_and_at_once() {
    require_root!();
    let world = World::new("arpguests");
    let host = world.host_ns();
    // Another network of the laptop's that overlaps the LAN: a VPN route to a LAN address.
    world.ip(host, &["link", "add", "vpn0", "type", "veth", "peer", "name", "vpn1"]).expect("veth");
    world.ip(host, &["link", "set", "vpn0", "up"]).expect("up");
    world.ip(host, &["link", "set", "vpn1", "up"]).expect("up");
    world.ip(host, &["route", "add", "198.51.100.77/32", "dev", "vpn0"]).expect("vpn route");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");

    let answer = arp_from_lan(&world, "198.51.100.200").expect("the guest's address is answered");
    assert!(answer < 50.0, "answered after {answer} ms");
    assert_eq!(arp_from_lan(&world, "198.51.100.77"), None, "the VPN's address is not taken from the LAN");
    // The uplink's proxy_arp (the textbook recipe) would have taken it: the test can tell.
    world.set_sysctl(host, &format!("net.ipv4.conf.{UPLINK}.proxy_arp"), "1").expect("sysctl");
    assert!(arp_from_lan(&world, "198.51.100.77").is_some(), "proxy_arp answers for every routed address");
    world.set_sysctl(host, &format!("net.ipv4.conf.{UPLINK}.proxy_arp"), "0").expect("sysctl");

    // Re-homed, removed: the entries follow the guests.
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("move uplink");
    assert!(world.wait_for_property(&client, "Subnet", "203.0.113.0/24"));
    let moved = vec![format!("203.0.113.200 dev {UPLINK}")];
    assert_eq!(world.settled(World::vmnet_proxies, &moved), moved);
    client.remove_guest("web").expect("RemoveGuest");
    let after = world.kernel_state();
    assert!(after.proxies.is_empty(), "{after:?}");
    assert_eq!((after.uplink_proxy_arp.as_str(), after.uplink_proxy_delay.as_str()), ("0", "80"));
    drop(vmnetd);
}

/// The host's IPv6 addresses and routes on `dev` and its default routes, but link-local
/// addresses and routes and multicast.
fn ipv6_on(world: &World, dev: &str) -> Vec<String> {
    let addresses = world.ip(world.host_ns(), &["-6", "-o", "addr", "show", "dev", dev]).expect("ip addr");
    let routes = world.ip(world.host_ns(), &["-6", "route", "show", "dev", dev]).expect("ip route");
    let defaults = world.ip(world.host_ns(), &["-6", "route", "show", "default"]).expect("ip route");
    addresses
        .lines()
        .chain(routes.lines())
        .chain(defaults.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("fe80::") && !l.contains("inet6 fe80::"))
        .filter(|l| !l.starts_with("multicast"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_guest_router_advertisement_gives_the_host_no_ipv6_address_or_route() {
    require_root!();
    let world = World::new("raguest");
    let host = world.host_ns();
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    let mac = client.guest_property("web", "Mac").expect("Mac");
    let guest = world.add_guest("vmt-web", &mac);
    guest.ip(&["link", "set", "eth0", "up"]).expect("up");
    // A tap the way the kernel makes it (accept_ra=1), with a guest of its own behind it.
    world.ip(host, &["tuntap", "add", "dev", "plain0", "mode", "tap"]).expect("tuntap");
    world.ip(host, &["link", "set", "plain0", "up"]).expect("up");
    let plain = world.add_guest("plain0", "0a:00:00:00:00:99");
    plain.ip(&["link", "set", "eth0", "up"]).expect("up");
    std::thread::sleep(Duration::from_millis(300)); // both taps have their carrier

    let octets = |mac: &str| mac_octets(mac).expect("a MAC");
    let from = "fe80::bad".parse().unwrap();
    let ra = |mac: &str, prefix: &str| router_advertisement(octets(mac), from, prefix.parse().unwrap());
    send_frames(plain.ns(), "eth0", vec![ra("0a:00:00:00:00:99", "2001:db8:99::")]).expect("RA");
    send_frames(guest.ns(), "eth0", vec![ra(&mac, "2001:db8:66::")]).expect("RA");
    std::thread::sleep(Duration::from_millis(500));

    let taken = ipv6_on(&world, "plain0");
    assert!(taken.iter().any(|l| l.contains("2001:db8:99:")), "the kernel's tap took the RA: {taken:?}");
    assert!(taken.iter().any(|l| l.starts_with("default via fe80::bad dev plain0")), "{taken:?}");
    let on_guest_tap = ipv6_on(&world, "vmt-web");
    assert!(
        on_guest_tap.iter().all(|l| !l.contains("vmt-web")),
        "vmnetd's tap took nothing: {on_guest_tap:?}"
    );
    let link_local = world.ip(host, &["-6", "-o", "addr", "show", "dev", "vmt-web"]).expect("ip addr");
    assert!(link_local.lines().all(|l| l.contains("scope link")), "link-local only: {link_local}");
}

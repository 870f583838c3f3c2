//! vmnetd's DHCP server and ARP conflict probing, with a real DHCP client (busybox udhcpc) in
//! a netns guest behind the tap and real LAN hosts answering ARP.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmnet_dbus::Error;
use vmnet_tests::{
    kernel_config, require_root, GuestHandle, Opt, World, HOST_ADDR, LAN_CLIENT, LAN_DEV, UPLINK,
};

/// A udhcpc hook that configures eth0 as a guest's network scripts would and logs each event
/// as `<event> ip=… mask=… router=… dns=… domain=… search=… mtu=… lease=… serverid=…`.
fn hook_script(world: &World, guest: &GuestHandle<'_>) -> (PathBuf, PathBuf) {
    let log = world.dir().join(format!("{}-dhcp.log", guest.ns()));
    let script = world.dir().join(format!("{}-dhcp.sh", guest.ns()));
    let text = format!(
        r#"#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 -o addr show dev "$interface" | grep -q " $ip/$mask " || {{
      ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"; }}
    ip route replace default via "$router" dev "$interface" onlink ;;
esac
echo "$1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain search=$search mtu=$mtu lease=$lease serverid=$serverid" >> {log}
"#,
        log = log.display()
    );
    fs::write(&script, text).expect("write the hook");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod hook");
    (script, log)
}

/// Runs udhcpc once in the guest (exits after a lease, or after 3 unanswered DISCOVERs);
/// returns whether it got a lease.
fn dhcp_once(world: &World, guest: &GuestHandle<'_>) -> bool {
    let (script, _) = hook_script(world, guest);
    guest.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
    let script = script.to_string_lossy();
    let argv = ["busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "3", "-T", "1", "-s", &script];
    guest.exec(&argv).expect("run udhcpc").status.success()
}

/// Starts udhcpc in the background, as a guest's DHCP client runs: it renews, and goes back to
/// DISCOVER after a NAK. Returns its pid.
fn dhcp_client(world: &World, guest: &GuestHandle<'_>) -> u32 {
    let (script, _) = hook_script(world, guest);
    guest.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
    let script = script.to_string_lossy();
    let argv = ["busybox", "udhcpc", "-f", "-i", "eth0", "-t", "3", "-T", "1", "-A", "1", "-s", &script];
    world.spawn_in(guest.ns(), &format!("udhcpc {}", guest.ns()), &argv).expect("start udhcpc")
}

fn events(log: &Path) -> Vec<String> {
    fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Waits for a logged event that starts with `prefix`; returns it.
fn wait_for_event(world: &World, guest: &GuestHandle<'_>, prefix: &str, timeout: Duration) -> Option<String> {
    let log = world.dir().join(format!("{}-dhcp.log", guest.ns()));
    let end = Instant::now() + timeout;
    loop {
        if let Some(line) = events(&log).into_iter().find(|l| l.starts_with(prefix)) {
            return Some(line);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Guest "web" on its tap with udhcpc running, once it has its first lease; returns udhcpc's pid.
fn leased_guest<'w>(world: &'w World, client: &vmnet_tests::Client) -> (GuestHandle<'w>, u32) {
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());
    world.fast_proxy_arp(UPLINK).unwrap();
    let udhcpc = dhcp_client(world, &guest);
    let first = wait_for_event(world, &guest, "bound", Duration::from_secs(10)).expect("first lease");
    assert!(first.contains("ip=198.51.100.200 "), "{first}");
    (guest, udhcpc)
}

/// Roams to 203.0.113.0/24 and makes udhcpc renew at once (SIGUSR1): vmnetd NAKs the stale
/// renewal and the guest DISCOVERs its new address. Returns the new lease's event.
fn roam_and_renew(
    world: &World,
    client: &vmnet_tests::Client,
    guest: &GuestHandle<'_>,
    udhcpc: u32,
) -> String {
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    assert!(world.wait_for_property(client, "Subnet", "203.0.113.0/24"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(udhcpc as i32), nix::sys::signal::Signal::SIGUSR1)
        .expect("signal udhcpc");
    let nak = wait_for_event(world, guest, "nak", Duration::from_secs(10));
    assert!(nak.is_some(), "the stale renewal was NAKed");
    let rebound = wait_for_event(world, guest, "bound ip=203.0.113.200 ", Duration::from_secs(10));
    rebound.expect("a lease in the new subnet")
}

#[test]
fn guest_gets_its_address_router_dns_domain_and_mtu_by_dhcp() {
    require_root!();
    let world = World::new("dhcp");
    let config = kernel_config(&world, "");
    fs::write(world.dir().join("resolv.conf"), "nameserver 198.51.100.1\nsearch home.test example.test\n")
        .unwrap();
    let _vmnetd = world.start_vmnetd(&config);
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());

    assert!(dhcp_once(&world, &guest), "udhcpc got a lease");
    let bound = wait_for_event(&world, &guest, "bound", Duration::ZERO).expect("bound event");
    for expected in [
        "ip=198.51.100.200 ",
        "mask=24 ",
        "router=198.51.100.10 ",
        "dns=198.51.100.1 ",
        "domain=home.test ",
        "search=home.test example.test ",
        "mtu=1500 ",
        "lease=90 ",
        "serverid=198.51.100.10",
    ] {
        assert!(bound.contains(expected), "{expected:?} in {bound:?}");
    }
    assert!(world.ping_from_lan("198.51.100.200"), "the LAN reaches the DHCP-configured guest");
    assert!(guest.ping_from_guest("198.51.100.2"), "the guest reaches the LAN");

    // Another MAC on the tap gets nothing.
    guest.ip(&["link", "set", "eth0", "address", "52:54:00:99:99:99"]).unwrap();
    assert!(!dhcp_once(&world, &guest), "a foreign MAC is not served");
    guest.ip(&["link", "set", "eth0", "address", &client.guest_property("web", "Mac").unwrap()]).unwrap();

    // Offline: nothing is served.
    world.ip(world.host_ns(), &["-4", "addr", "flush", "dev", UPLINK]).unwrap();
    assert!(world.wait_for_property(&client, "State", "offline"));
    assert!(!dhcp_once(&world, &guest), "nothing is served while the uplink is offline");
}

#[test]
fn a_renewing_guest_is_naked_after_a_roam_and_rediscovers_its_new_address() {
    require_root!();
    let world = World::new("dhren");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let (guest, udhcpc) = leased_guest(&world, &client);
    // No QMP socket: the guest learns at its next renewal from a NAK, then DISCOVERs.
    let rebound = roam_and_renew(&world, &client, &guest, udhcpc);
    assert!(rebound.contains("router=203.0.113.10 "), "{rebound}");
    assert!(world.ping_from_lan("203.0.113.200"), "the LAN reaches the guest at its new address");
}

#[test]
fn probing_skips_addresses_held_on_the_lan_and_announces_the_given_ones() {
    require_root!();
    let world = World::new("probe");
    // A LAN host holds the first pool address, and learns addresses from gratuitous ARP.
    world.ip(world.lan_ns(), &["addr", "add", "198.51.100.200/24", "dev", LAN_DEV]).unwrap();
    world.set_sysctl(world.lan_ns(), &format!("net.ipv4.conf.{LAN_DEV}.arp_accept"), "1").unwrap();
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();

    client.add_guest("web", &[]).expect("AddGuest");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.201", ".200 answered");
    let requested = client.add_guest("db", &[("address", Opt::Str("198.51.100.200"))]);
    match requested {
        Err(Error::AddressUnavailable(message)) => {
            assert!(message.contains("in use on the LAN"), "{message}")
        }
        other => panic!("expected AddressUnavailable, got {other:?}"),
    }
    assert_eq!(client.list_guests().unwrap().len(), 1, "the refused guest left nothing");

    let uplink_mac = world.ip(world.host_ns(), &["-br", "link", "show", "dev", UPLINK]).unwrap();
    let uplink_mac = uplink_mac.split_whitespace().nth(2).expect("uplink MAC").to_owned();
    let neighbour = world.ip(world.lan_ns(), &["neigh", "show", "198.51.100.201", "dev", LAN_DEV]).unwrap();
    assert!(neighbour.contains(&uplink_mac), "the LAN learned .201 from the announcement: {neighbour:?}");

    // A roam back into a subnet where the LAN host still holds .200: web keeps .201, and a
    // guest whose address is taken on the new LAN moves on.
    world.ip(world.lan_ns(), &["addr", "add", "203.0.113.201/24", "dev", LAN_DEV]).unwrap();
    let mut rehomed = client.watch_rehomed().expect("subscribe");
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    rehomed.next(Duration::from_secs(5)).expect("Rehomed");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "203.0.113.200", ".201 answered there");
}

/// Malformed IPv4/UDP/DHCP frames from `from` (a client address; 0.0.0.0 reaches the UDP
/// socket, another address only the stale-request listener) to the DHCP server.
fn malformed_dhcp_frames(to_mac: [u8; 6], from_mac: [u8; 6], from: Ipv4Addr, to: Ipv4Addr) -> Vec<Vec<u8>> {
    use vmnet_tests::hostile::{dhcp_discover, ethernet, ipv4, udp, udp_to_dhcp_server};
    let frame = |udp: &[u8]| ipv4(to_mac, from_mac, from, to, 17, udp);
    let discover = dhcp_discover(from_mac);
    let mut options_past_the_end = discover.clone();
    options_past_the_end.pop(); // the END option
    options_past_the_end.extend([12, 200, b'h', b'o']);
    let mut hlen_255 = discover.clone();
    hlen_255[2] = 255;
    let whole = frame(&udp(&discover));
    let mut frames: Vec<Vec<u8>> = [13, 14, 15].iter().map(|n| whole[..14 + n].to_vec()).collect();
    let mut header_past_the_end = frame(&udp(&[]));
    header_past_the_end[14] = 0x4f;
    frames.extend([
        header_past_the_end,
        frame(&udp_to_dhcp_server(&discover[..100], 4000)),
        frame(&udp_to_dhcp_server(&discover, 3)),
        frame(&udp(&discover[..100])),
        frame(&udp(&options_past_the_end)),
        frame(&udp(&hlen_255)),
        ethernet(to_mac, from_mac, 0x0800, &[0x45; 1500]),
    ]);
    frames
}

/// Any host on the LAN and any guest can send these; vmnetd must go on serving everyone.
#[test]
fn malformed_frames_from_the_lan_and_a_guest_change_nothing_and_dhcp_keeps_serving() {
    use vmnet_tests::hostile::{arp, send_frames, send_udp_junk, BROADCAST_MAC};
    require_root!();
    let world = World::new("hostile");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let (guest, udhcpc) = leased_guest(&world, &client);
    let tap = client.guest_property("web", "Tap").unwrap();

    let guest_mac = world.mac_of(guest.ns(), "eth0");
    let tap_mac = world.mac_of(world.host_ns(), &tap);
    let (lan_mac, uplink_mac) =
        (world.mac_of(world.lan_ns(), LAN_DEV), world.mac_of(world.host_ns(), UPLINK));
    let (host, lan_client): (Ipv4Addr, Ipv4Addr) = (HOST_ADDR.parse().unwrap(), LAN_CLIENT.parse().unwrap());
    let stale = Ipv4Addr::new(203, 0, 113, 99);
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut from_guest = Vec::new();
    let mut from_lan = Vec::new();
    for to_mac in [BROADCAST_MAC, tap_mac] {
        from_guest.extend(malformed_dhcp_frames(to_mac, guest_mac, unspecified, Ipv4Addr::BROADCAST));
        from_guest.extend(malformed_dhcp_frames(to_mac, guest_mac, stale, Ipv4Addr::BROADCAST));
    }
    for to_mac in [BROADCAST_MAC, uplink_mac] {
        from_lan.extend(malformed_dhcp_frames(to_mac, lan_mac, unspecified, Ipv4Addr::BROADCAST));
        from_lan.extend(malformed_dhcp_frames(to_mac, lan_mac, lan_client, host));
    }
    send_frames(guest.ns(), "eth0", from_guest).expect("frames from the guest");
    send_frames(world.lan_ns(), LAN_DEV, from_lan).expect("frames from the LAN");
    send_udp_junk(guest.ns(), SocketAddrV4::new(Ipv4Addr::BROADCAST, 67), 65_000)
        .expect("junk from the guest");
    send_udp_junk(world.lan_ns(), SocketAddrV4::new(host, 67), 65_000).expect("junk from the LAN");

    // Bad ARP on the LAN while vmnetd probes the next guest's address.
    let candidate = Ipv4Addr::new(198, 51, 100, 201);
    let bad_arp = vec![
        arp([0, 1, 8, 0, 6, 4], 2, lan_mac, candidate, host)[..14 + 20].to_vec(),
        arp([0, 6, 8, 0, 6, 4], 2, lan_mac, candidate, host),
        arp([0, 1, 8, 0, 16, 4], 2, lan_mac, candidate, host),
        arp([0, 1, 8, 0, 6, 4], 99, lan_mac, unspecified, candidate),
    ];
    let lan_ns = world.lan_ns().to_owned();
    let arp_sender = std::thread::spawn(move || {
        for _ in 0..100 {
            send_frames(&lan_ns, LAN_DEV, bad_arp.clone()).expect("bad ARP from the LAN");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    client.add_guest("db", &[]).expect("AddGuest while the LAN sends bad ARP");
    arp_sender.join().expect("the ARP sender");
    assert_eq!(client.guest_property("db", "Address").unwrap(), "198.51.100.201", "bad ARP is no conflict");

    assert!(vmnetd.is_running(), "vmnetd died: {}", vmnetd.log());
    assert!(!vmnetd.log().contains("panicked"), "{}", vmnetd.log());
    // A new guest gets its lease...
    let db_tap = client.guest_property("db", "Tap").unwrap();
    let db = world.add_guest(&db_tap, &client.guest_property("db", "Mac").unwrap());
    assert!(dhcp_once(&world, &db), "the new guest got a lease");
    assert!(wait_for_event(&world, &db, "bound ip=198.51.100.201 ", Duration::ZERO).is_some());
    // ...and a stale renewal after a roam is NAKed (the stale-request listener still runs).
    roam_and_renew(&world, &client, &guest, udhcpc);
    assert!(!vmnetd.log().contains("panicked"), "{}", vmnetd.log());
}

//! vmnetd's nftables tables with real packets: the laptop forwards only what vmnet owns (no
//! "open router" into its other networks), guests cannot spoof addresses, MACs or ARP even with
//! rp_filter off, and the tables follow the guests (gone with the last, restored after a crash).
//!
//! Each test builds, in its own namespaces, a second network of the laptop's behind the host
//! netns (a VPN or libvirt bridge stand-in) and routes it from the LAN via the laptop.

use std::net::Ipv4Addr;
use std::time::Duration;

use vmnet_tests::hostile::{self, send_frames};
use vmnet_tests::{kernel_config, require_root, Opt, World, HOST_ADDR, LAN_CLIENT, LAN_ROUTER};

/// The stand-in for a VPN: netns `<id>-vpn`, `vpn0` 192.0.2.1/24 in the host, the peer .2.
const VPN_PEER: &str = "192.0.2.2";

fn add_vpn(world: &World) {
    let ns = format!("{}-vpn", world.id());
    world.add_netns(&ns).expect("vpn netns");
    let host = world.host_ns();
    world.ip(host, &["link", "add", "vpn0", "type", "veth", "peer", "name", "eth0", "netns", &ns]).unwrap();
    world.ip(host, &["addr", "add", "192.0.2.1/24", "dev", "vpn0"]).unwrap();
    world.ip(host, &["link", "set", "vpn0", "up"]).unwrap();
    world.ip(&ns, &["link", "set", "lo", "up"]).unwrap();
    world.ip(&ns, &["addr", "add", "192.0.2.2/24", "dev", "eth0"]).unwrap();
    world.ip(&ns, &["link", "set", "eth0", "up"]).unwrap();
    world.ip(&ns, &["route", "add", "default", "via", "192.0.2.1"]).unwrap();
    // A LAN host that routes the VPN's network via the laptop's Wi-Fi address.
    world.ip(world.lan_ns(), &["route", "add", "192.0.2.0/24", "via", HOST_ADDR]).unwrap();
}

fn vpn_reachable_from_lan(world: &World) -> bool {
    // One ping a try, about 1 s: reachability is a yes, its absence waits for the timeout.
    vmnet_tests::wait_until(Duration::from_secs(2), Duration::from_millis(100), || {
        world
            .exec_in(world.lan_ns(), &["busybox", "ping", "-c1", "-W1", "-q", VPN_PEER])
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_lan_reaches_no_other_network_of_the_laptop_but_guests_work() {
    require_root!();
    let world = World::new("openrtr");
    add_vpn(&world);
    assert_eq!(world.sysctl(world.host_ns(), "net.ipv4.ip_forward").unwrap(), "0");
    assert!(!vpn_reachable_from_lan(&world), "the laptop forwards nothing before vmnetd");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[]).expect("AddGuest db");
    let web = world.add_guest("vmt-web", &client.guest_property("web", "Mac").unwrap());
    let db = world.add_guest("vmt-db", &client.guest_property("db", "Mac").unwrap());
    let (web_address, db_address) = (web.configure_from(&client, "web"), db.configure_from(&client, "db"));
    assert_eq!(world.sysctl(world.host_ns(), "net.ipv4.ip_forward").unwrap(), "1");

    // LAN ↔ guest and guest ↔ guest work; the LAN gets nothing into the VPN.
    assert!(world.ping_from_lan(&web_address), "LAN pings the guest");
    assert!(web.ping_from_guest(LAN_CLIENT), "the guest reaches the LAN");
    assert!(web.ping_from_guest(&db_address), "guest reaches guest");
    assert!(!vpn_reachable_from_lan(&world), "open router: the LAN reached the VPN through the laptop");
    assert!(world.dropped("forward_other") > 0, "{:?}", world.nft_counters());
    assert!(!web.ping_from_guest(VPN_PEER), "a guest gets into the laptop's other networks");

    // Without the table this is the open router of before; a resync puts it back.
    let deleted = world.exec_in(world.host_ns(), &["nft", "delete", "table", "inet", "vmnet"]).unwrap();
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert!(vpn_reachable_from_lan(&world), "reproduced: without the filter the LAN gets in");
    client.resync().expect("Resync");
    assert!(!vpn_reachable_from_lan(&world), "the resync restored the filter");
    assert!(world.ping_from_lan(&db_address), "and the guests still work");
}

#[test]
fn a_host_that_forwarded_before_still_forwards_its_own_traffic() {
    require_root!();
    let world = World::new("fwdbefore");
    add_vpn(&world);
    world.set_sysctl(world.host_ns(), "net.ipv4.ip_forward", "1").unwrap();
    assert!(vpn_reachable_from_lan(&world), "the host routes the VPN for the LAN");
    let before = world.kernel_state();
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    let web = world.add_guest("vmt-web", &client.guest_property("web", "Mac").unwrap());
    let address = web.configure_from(&client, "web");
    assert!(world.ping_from_lan(&address));
    assert!(vpn_reachable_from_lan(&world), "vmnetd broke the host's own forwarding");
    // The guest is still held to the LAN and the other guests.
    assert!(!web.ping_from_guest(VPN_PEER));
    assert!(world.dropped("not_guest_forward") > 0, "{:?}", world.nft_counters());
    client.remove_guest("web").expect("RemoveGuest");
    assert_eq!(world.kernel_state(), before, "forwarding stays on, no table is left");
    assert!(vpn_reachable_from_lan(&world));
}

/// A UDP datagram from port 5555 to 9999 (checksum 0: none) carrying `text`.
fn udp(text: &str) -> Vec<u8> {
    let len = u16::try_from(8 + text.len()).unwrap();
    [&5555u16.to_be_bytes()[..], &9999u16.to_be_bytes(), &len.to_be_bytes(), &[0, 0], text.as_bytes()]
        .concat()
}

#[test]
fn guests_cannot_spoof_addresses_macs_or_arp_even_with_rp_filter_off() {
    require_root!();
    let world = World::new("spoof");
    let host = world.host_ns();
    for key in ["all", "default", "wlan0"] {
        world.set_sysctl(host, &format!("net.ipv4.conf.{key}.rp_filter"), "0").unwrap();
    }
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[("address", Opt::Str("198.51.100.77"))]).expect("AddGuest db");
    // As a sysctl.d drop-in applied by udev would leave it.
    world.set_sysctl(host, "net.ipv4.conf.vmt-web.rp_filter", "0").unwrap();
    let web = world.add_guest("vmt-web", &client.guest_property("web", "Mac").unwrap());
    let own: Ipv4Addr = web.configure_from(&client, "web").parse().unwrap();
    let guest_mac = world.mac_of(web.ns(), "eth0");
    let tap_mac = world.mac_of(host, "vmt-web");
    let received = world.dir().join("received");
    let sink = format!("OPEN:{},creat,append", received.display());
    world.spawn_in(world.lan_ns(), "udp-sink", &["socat", "-u", "UDP-RECV:9999", &sink]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let lan: Ipv4Addr = LAN_CLIENT.parse().unwrap();
    let frame =
        |mac, from: &str, text| hostile::ipv4(tap_mac, mac, from.parse().unwrap(), lan, 17, &udp(text));
    let foreign_mac = [0x02, 0, 0, 0xde, 0xad, 1];
    let frames = vec![
        frame(guest_mac, "198.51.100.3", "spoofed-lan-host\n"),
        frame(guest_mac, LAN_ROUTER, "spoofed-router\n"),
        frame(guest_mac, "198.51.100.77", "spoofed-other-guest\n"),
        frame(foreign_mac, &own.to_string(), "foreign-mac\n"),
        frame(guest_mac, &own.to_string(), "own\n"),
    ];
    send_frames(web.ns(), "eth0", frames).expect("send frames");
    let arrived = || std::fs::read_to_string(&received).unwrap_or_default();
    assert!(vmnet_tests::wait_until(Duration::from_secs(3), Duration::from_millis(50), || arrived()
        .contains("own")));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(arrived(), "own\n", "only the guest's own datagram reaches the LAN");
    assert!(world.dropped("spoofed_source") >= 3, "{:?}", world.nft_counters());
    assert!(world.dropped("foreign_mac") >= 1, "{:?}", world.nft_counters());

    // ARP: a request claiming the router's address, one claiming the guest's address with a
    // foreign MAC, and the guest's own (answered, so the host learns it).
    let request = hostile::arp(
        [0, 1, 8, 0, 6, 4],
        1,
        guest_mac,
        LAN_ROUTER.parse().unwrap(),
        HOST_ADDR.parse().unwrap(),
    );
    let forged = hostile::arp([0, 1, 8, 0, 6, 4], 1, foreign_mac, own, HOST_ADDR.parse().unwrap());
    let honest = hostile::arp([0, 1, 8, 0, 6, 4], 1, guest_mac, own, HOST_ADDR.parse().unwrap());
    web.ip(&["link", "set", "eth0", "arp", "off"]).unwrap(); // only the frames below
    world.ip(host, &["neigh", "flush", "dev", "vmt-web"]).unwrap();
    send_frames(web.ns(), "eth0", vec![request, forged, honest]).expect("send ARP");
    let neighbours = || world.ip(host, &["neigh", "show", "dev", "vmt-web"]).unwrap();
    assert!(vmnet_tests::wait_until(Duration::from_secs(3), Duration::from_millis(50), || neighbours()
        .contains(&own.to_string())));
    let table = neighbours();
    assert!(!table.contains(LAN_ROUTER), "the guest took the router's address: {table}");
    assert!(!table.contains("02:00:00:de:ad:01"), "a foreign MAC got in: {table}");
    assert!(world.dropped("spoofed_arp") >= 2, "{:?}", world.nft_counters());

    // From the guest's own address and MAC all the same: a DHCP server's offer, an ICMP
    // redirect, an IPv6 router advertisement.
    let offer = [&67u16.to_be_bytes()[..], &68u16.to_be_bytes(), &16u16.to_be_bytes(), &[0; 10]].concat();
    let redirect = [5u8, 1, 0, 0, 198, 51, 100, 99].to_vec();
    let broadcast = Ipv4Addr::BROADCAST;
    let frames = vec![
        hostile::ipv4(hostile::BROADCAST_MAC, guest_mac, own, broadcast, 17, &offer),
        hostile::ipv4(tap_mac, guest_mac, own, HOST_ADDR.parse().unwrap(), 1, &redirect),
        router_advertisement(guest_mac),
    ];
    send_frames(web.ns(), "eth0", frames).expect("send");
    for counter in ["dhcp_server", "icmp_redirect", "ipv6_router"] {
        let counted = || world.dropped(counter) >= 1;
        assert!(
            vmnet_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), counted),
            "{counter}"
        );
    }

    // What a user sees: `vmnetctl status --verbose`, read back from the kernel by vmnetd.
    let out = world.vmnetctl_as(None, &["status", "--verbose"]).expect("vmnetctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains(" spoofed_source: ")).unwrap_or_default();
    let packets: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(packets >= 3, "{text}");
    assert!(text.contains("spoofed_arp: ARP from a tap with another sender"), "{text}");
    let plain = world.vmnetctl_as(None, &["status"]).expect("vmnetctl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Dropped"), "only with --verbose");
    let json = world.vmnetctl_as(None, &["status", "--verbose", "--json"]).expect("vmnetctl");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let dropped = value["dropped"].as_array().expect("dropped");
    let foreign = dropped.iter().find(|c| c["name"] == "foreign_mac").expect("foreign_mac");
    assert!(foreign["packets"].as_u64() >= Some(1), "{value}");
}

/// An ICMPv6 router advertisement from `mac` (fe80::1 to all nodes); the checksum is not
/// checked before the filter sees it.
fn router_advertisement(mac: [u8; 6]) -> Vec<u8> {
    let icmp = [134u8, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut header = vec![0x60, 0, 0, 0];
    header.extend((icmp.len() as u16).to_be_bytes());
    header.extend([58, 255]);
    header.extend(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets());
    header.extend(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets());
    hostile::ethernet([0x33, 0x33, 0, 0, 0, 1], mac, 0x86dd, &[&header[..], &icmp].concat())
}

#[test]
fn the_tables_go_with_the_last_guest_and_a_crash_restores_them_exactly() {
    require_root!();
    let world = World::new("fwtables");
    let before = world.nftables();
    assert_eq!(before, "", "the test's host netns starts without nftables");
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    assert_eq!(world.nftables(), "", "no table without a guest");
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[("mac", Opt::Str("52:54:00:12:34:56"))]).expect("AddGuest db");
    let tables = world.nftables();
    for expected in
        ["table inet vmnet", "table arp vmnet", "vmt-web", "52:54:00:12:34:56", "198.51.100.201", "wlan0"]
    {
        assert!(tables.contains(expected), "{expected} missing from\n{tables}");
    }
    eprintln!("{tables}");

    vmnetd.kill(vmnet_tests::Signal::SIGKILL).expect("SIGKILL");
    // While it is down: a rule, an element and a counter that are not vmnetd's.
    let host = world.host_ns();
    for edit in [
        "add rule inet vmnet forward accept",
        "add element inet vmnet uplinks { \"eth9\" }",
        "add counter arp vmnet stray",
    ] {
        let out = world.exec_in(host, &["nft", edit]).unwrap();
        assert!(out.status.success(), "nft {edit}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_ne!(world.nftables(), tables);
    vmnetd.restart().expect("restart");
    let _ = world.client().list_guests().expect("vmnetd answers");
    assert_eq!(world.nftables(), tables, "restored exactly, nothing duplicated");

    let client = world.client();
    client.remove_guest("web").expect("RemoveGuest web");
    assert!(world.nftables().contains("table inet vmnet"), "a guest is left");
    client.remove_guest("db").expect("RemoveGuest db");
    assert_eq!(world.nftables(), "", "no table is left");
    vmnetd.kill(vmnet_tests::Signal::SIGKILL).expect("SIGKILL");
    vmnetd.restart().expect("restart without guests");
    let _ = world.client().list_guests().expect("vmnetd answers");
    assert_eq!(world.nftables(), "");
}

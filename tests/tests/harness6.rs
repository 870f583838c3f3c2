//! The harness's IPv6 side, without vmnetd: a real NM with `ipv6.method=auto` on dual-stack
//! LANs gets SLAAC addresses and follows roams; the RA capture parses dnsmasq's RAs; netns
//! guests do SLAAC (and privacy addresses) from a dnsmasq on their tap; the IPv6 hostile
//! frames are accepted by a real kernel; and everything is gone after Drop.

use std::net::Ipv6Addr;
use std::process::Command;
use std::time::Duration;
use vmnet_tests::hostile::{self, Ip6Frame, ALL_ROUTERS};
use vmnet_tests::ndp::{Capture, RouterAdvert};
use vmnet_tests::nm::{BRIDGE, RA_ROUTER_LIFETIME};
use vmnet_tests::{ip6, require_root, Ipv6Guest, Lan, NmOptions, NmWorld, World, UPLINK};

fn netns_names() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().expect("an IPv6 address")
}

/// An RA of a LAN's dnsmasq: from the router's link-local and MAC, SLAAC on the LAN's /64,
/// the router as DNS server, the LAN's search domain.
fn assert_lan_ra(ra: &RouterAdvert, lan: Lan, router_ll: Ipv6Addr, router_mac: [u8; 6]) {
    assert!(ra.checksum_ok && ra.hop_limit == 255, "{ra:?}");
    assert_eq!((ra.source, ra.source_mac, ra.source_link_layer), (router_ll, router_mac, Some(router_mac)));
    assert_eq!(u32::from(ra.router_lifetime), RA_ROUTER_LIFETIME, "{ra:?}");
    assert!(!ra.managed && !ra.other_config, "SLAAC only: {ra:?}");
    let prefix = ra.prefix(lan.prefix6_net()).unwrap_or_else(|| panic!("no {} in {ra:?}", lan.prefix6()));
    assert!(prefix.autonomous && prefix.on_link && prefix.valid_lifetime > 0, "{prefix:?}");
    assert!(
        prefix.preferred_lifetime > 0 && prefix.preferred_lifetime <= prefix.valid_lifetime,
        "{prefix:?}"
    );
    assert_eq!(ra.dns_servers(), [lan.router6()], "{ra:?}");
    assert_eq!(ra.search_domains(), [lan.search_domain()], "{ra:?}");
}

#[test]
fn nm_slaac_on_dual_stack_lans_roams_and_dnsmasq_ras_parse() {
    require_root!();
    let world = NmWorld::with_options("nm6", NmOptions { ipv6: true, ..NmOptions::default() });
    let (id, dir, host) = (world.id().to_string(), world.dir().to_path_buf(), world.host_ns().to_string());
    let home = world.wait_for_address6(Lan::Home, Duration::from_secs(20)).expect("a home SLAAC address");
    eprintln!("[{id}] {UPLINK} has {} after {:.3}s more", home.address, home.elapsed.as_secs_f64());
    let all = world.uplink_addresses6().expect("addresses");
    assert!(all.iter().all(|a| Lan::Home.contains6(&a.address.to_string()) && !a.temporary), "{all:?}");
    assert!(home.address.dynamic && home.address.prefix_len == 64, "{:?}", home.address);
    let home_ll = world.router_link_local6(Lan::Home).expect("router link-local");
    let routers = world.uplink_default_routers6().expect("routes");
    assert_eq!(routers, [home_ll], "NM's default route goes via the router's link-local");
    let addr = home.address.address.to_string();
    assert!(world.ping6_from(Lan::Home, &addr), "the home LAN cannot ping {addr}");
    world.start_lan_tcp_server6(Lan::Home, 8086).expect("LAN server");
    assert_eq!(ip6::tcp(&host, None, &Lan::Home.client6().to_string(), 8086).as_deref(), Some("home"));
    world.start_tcp_server6(&host, home.address.address, 8087, "host").expect("host server");
    assert_eq!(world.tcp6_from(Lan::Home, &addr, 8087).as_deref(), Some("host"));

    // The capture on NM's side: a Router Solicitation gets dnsmasq's RA at once.
    let home_ns = world.lan_ns(Lan::Home).to_string();
    let router_mac = world.mac_of(&home_ns, BRIDGE);
    let capture = Capture::open(&host, UPLINK).expect("capture");
    let wlan_mac = world.mac_of(&host, UPLINK);
    let my_ll = ip6::addresses(&host, UPLINK, "link").expect("link-local")[0].address;
    let solicit = Ip6Frame::new(wlan_mac, my_ll, ALL_ROUTERS, [0; 6]).router_solicitation(Some(wlan_mac));
    hostile::send_frames(&host, UPLINK, vec![solicit]).expect("send RS");
    let ra = capture.next_router_advert_where(Duration::from_secs(12), |ra| !ra.outgoing).expect("capture");
    let ra = ra.expect("an RA within 12 s");
    eprintln!("[{id}] RA: {ra:?}");
    assert_lan_ra(&ra, Lan::Home, home_ll, router_mac);

    // A LAN host claims an address: it answers DAD for it (as it would a guest's, proxied).
    let taken = Lan::Home.host6(0x99);
    world.claim_address6(Lan::Home, taken).expect("claim");
    let dad = hostile::dad_probe(wlan_mac, taken);
    hostile::send_frames(&host, UPLINK, vec![dad]).expect("send DAD probe");
    let answer = capture
        .next_frame_where(Duration::from_secs(3), |f| {
            let b = &f.bytes;
            b.len() >= 78 && b[20] == 58 && b[54] == 136 && b[62..78] == taken.octets()
        })
        .expect("capture");
    assert!(answer.is_some(), "no Neighbor Advertisement for the claimed {taken}");
    assert!(ip6::ping(&host, None, &taken.to_string()), "the claimed {taken} does not answer");
    world.release_address6(Lan::Home, taken).expect("release");

    // A roam: the office prefix and router replace home's on the uplink.
    let roam = world.roam(Lan::Office).expect("roam to office");
    let office = world.wait_for_address6(Lan::Office, Duration::from_secs(10)).expect("office SLAAC");
    eprintln!(
        "[{id}] office {} {:.3}s after the IPv4 lease ({})",
        office.address,
        office.elapsed.as_secs_f64(),
        roam.address
    );
    let office_ll = world.router_link_local6(Lan::Office).expect("office router link-local");
    let only_office = || {
        let addrs = world.uplink_addresses6().unwrap_or_default();
        let routers = world.uplink_default_routers6().unwrap_or_default();
        addrs.iter().all(|a| Lan::Office.contains6(&a.address.to_string())) && routers == [office_ll]
    };
    assert!(
        vmnet_tests::wait_until(Duration::from_secs(5), Duration::from_millis(20), only_office),
        "after the roam: {:?} via {:?}",
        world.uplink_addresses6(),
        world.uplink_default_routers6()
    );
    let office_mac = world.mac_of(world.lan_ns(Lan::Office), BRIDGE);
    let ra = capture.next_router_advert_where(Duration::from_secs(12), |ra| ra.source == office_ll);
    assert_lan_ra(&ra.expect("capture").expect("an office RA"), Lan::Office, office_ll, office_mac);
    assert!(world.ping6_from(Lan::Office, &office.address.address.to_string()));
    world.roam(Lan::Home).expect("roam home");
    world.wait_for_address6(Lan::Home, Duration::from_secs(10)).expect("home SLAAC again");

    drop(capture);
    drop(world);
    assert!(!netns_names().contains(&id), "netns left: {}", netns_names());
    assert!(!dir.exists(), "{} left", dir.display());
}

/// A tap in the host netns with `prefix`::1/64 (no DAD, no RAs taken), up.
fn router_tap(world: &World, tap: &str, router: &str) {
    let host = world.host_ns();
    world.ip(host, &["tuntap", "add", "dev", tap, "mode", "tap"]).expect("tuntap add");
    for key in ["accept_dad", "accept_ra"] {
        world.set_sysctl(host, &format!("net.ipv6.conf.{tap}.{key}"), "0").expect("sysctl");
    }
    world.ip(host, &["-6", "addr", "add", &format!("{router}/64"), "dev", tap, "nodad"]).expect("addr");
    world.ip(host, &["link", "set", tap, "up"]).expect("up");
}

/// dnsmasq sending RAs on both taps (each for the /64 of its address; RDNSS: the tap's own
/// address), as the LANs' dnsmasq does.
fn start_ra_server(world: &World, taps: [&str; 2]) {
    let dir = world.dir().display().to_string();
    let mut argv: Vec<String> =
        ["dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--log-facility=-"]
            .map(String::from)
            .into();
    argv.extend(["--port=0", "--bind-interfaces", "--enable-ra"].map(String::from));
    argv.extend([format!("--pid-file={dir}/ra.pid"), format!("--dhcp-leasefile={dir}/ra.leases")]);
    for tap in taps {
        argv.extend([format!("--interface={tap}"), format!("--ra-param={tap},10,1800")]);
    }
    argv.extend(
        ["--dhcp-range=2001:db8:1::,ra-only,64,2h", "--dhcp-range=2001:db8:3::,ra-only,64,2h"]
            .map(String::from),
    );
    argv.extend(
        ["--dhcp-option=option6:dns-server,[::]", "--dhcp-option=option6:domain-search,home.test"]
            .map(String::from),
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    world.spawn_in(world.host_ns(), "dnsmasq-ra", &argv).expect("dnsmasq");
}

#[test]
fn ipv6_guests_do_slaac_and_privacy_addresses_and_hostile_frames_reach_the_kernel() {
    require_root!();
    let world = World::new("guest6");
    let (id, dir, host) = (world.id().to_string(), world.dir().to_path_buf(), world.host_ns().to_string());
    router_tap(&world, "rt6a", "2001:db8:1::1");
    router_tap(&world, "rt6b", "2001:db8:3::1");
    let plain = world.ipv6_guest("rt6a", "52:54:00:12:34:56", Ipv6Guest::default(), false);
    let private =
        world.ipv6_guest("rt6b", "52:54:00:12:34:57", Ipv6Guest { temporary_addresses: true }, false);
    let capture = Capture::open(&host, "rt6a").expect("capture on the tap");
    start_ra_server(&world, ["rt6a", "rt6b"]);

    // The RA as it leaves the host (outgoing on the tap).
    let tap_ll = ip6::addresses(&host, "rt6a", "link").expect("tap link-local")[0].address;
    let tap_mac = world.mac_of(&host, "rt6a");
    let ras = capture.router_adverts(Duration::from_secs(12), 1).expect("capture");
    let ra = ras.first().expect("an RA within 12 s");
    assert!(ra.outgoing && ra.checksum_ok && ra.source == tap_ll, "{ra:?}");
    assert_eq!(ra.source_link_layer, Some(tap_mac));
    let info = ra.prefix(ip6::Prefix6::parse("2001:db8:1::/64").expect("prefix")).expect("the prefix");
    assert!(info.autonomous && info.on_link, "{info:?}");
    assert_eq!(
        (ra.dns_servers(), ra.search_domains()),
        (vec![v6("2001:db8:1::1")], vec!["home.test".into()])
    );

    for (guest, tempaddr) in [(&plain, "0"), (&private, "2")] {
        let key = "net.ipv6.conf.eth0.use_tempaddr";
        assert_eq!(world.sysctl(guest.ns(), key).expect("sysctl"), tempaddr, "{}", guest.ns());
    }

    // Kernel defaults: one EUI-64 address, the tap's link-local as default router.
    let timeout = Duration::from_secs(15);
    let stable = plain.wait_for_global6("2001:db8:1::/64", timeout).expect("SLAAC");
    assert_eq!(stable.address, v6("2001:db8:1::5054:ff:fe12:3456"), "EUI-64 from the MAC");
    assert!(stable.dynamic && !stable.temporary && stable.valid_lifetime.is_some(), "{stable:?}");
    assert_eq!(plain.addresses6().expect("addresses").len(), 1, "no temporary address by default");
    assert_eq!(plain.default_router6().expect("routes"), Some(tap_ll));
    assert_eq!(plain.link_local6().expect("link-local"), Some(v6("fe80::5054:ff:fe12:3456")));
    assert!(plain.ping6_from_guest("2001:db8:1::1", None), "the guest cannot ping its router");
    world.start_tcp_server6(&host, v6("2001:db8:1::1"), 8081, "router").expect("server");
    assert_eq!(plain.tcp6_from_guest("2001:db8:1::1", 8081, None).as_deref(), Some("router"));
    plain.start_tcp_server6(80).expect("guest server");
    plain.start_tcp_server(80).expect("the IPv4 server on the same port");
    let guest_addr = stable.address.to_string();
    assert_eq!(ip6::tcp(&host, None, &guest_addr, 80).as_deref(), Some("hi"));

    // use_tempaddr=2: a temporary address besides the stable one, and it works as a source.
    let managed = private.wait_for_global6("2001:db8:3::/64", timeout).expect("SLAAC");
    let temporary = private.wait_for_temporary6("2001:db8:3::/64", timeout).expect("a temporary address");
    assert!(managed.mngtmpaddr && temporary.temporary && temporary.address != managed.address);
    let source = temporary.address.to_string();
    assert!(private.ping6_from_guest("2001:db8:3::1", Some(&source)));
    world.start_tcp_server6(&host, v6("2001:db8:3::1"), 8082, "router b").expect("server");
    assert_eq!(private.tcp6_from_guest("2001:db8:3::1", 8082, Some(&source)).as_deref(), Some("router b"));

    // DAD fails for an address the router already holds: tentative and dadfailed.
    world.ip(&host, &["-6", "addr", "add", "2001:db8:1::99/64", "dev", "rt6a", "nodad"]).expect("addr");
    plain.ip(&["-6", "addr", "add", "2001:db8:1::99/64", "dev", "eth0"]).expect("guest addr");
    let failed =
        plain.wait_for_address6_where("2001:db8:1::99/128", timeout, |a| a.dadfailed).expect("DAD fails");
    assert!(failed.tentative && !failed.usable(), "{failed}");

    // Hostile frames from the guest: a spoofed echo request makes the host look for the
    // spoofed source; an unsolicited NA overrides the host's entry for the guest's address.
    let guest_capture = Capture::open(plain.ns(), "eth0").expect("capture in the guest");
    let guest_mac = world.mac_of(plain.ns(), "eth0");
    let spoofed = v6("2001:db8:1::dead");
    let echo = Ip6Frame::new(guest_mac, spoofed, v6("2001:db8:1::1"), tap_mac).echo_request(1, 1, b"spoof");
    hostile::send_frames(plain.ns(), "eth0", vec![echo]).expect("send");
    let looked_up = guest_capture
        .next_frame_where(Duration::from_secs(3), |f| {
            let b = &f.bytes;
            !f.outgoing && b.len() >= 78 && b[20] == 58 && b[54] == 135 && b[62..78] == spoofed.octets()
        })
        .expect("capture");
    assert!(looked_up.is_some(), "the host never looked for the spoofed source {spoofed}");
    let fake = [0x02, 0, 0, 0, 0, 0x99];
    let na = hostile::unsolicited_neighbor_advertisement(fake, stable.address);
    hostile::send_frames(plain.ns(), "eth0", vec![na]).expect("send");
    let overridden = || {
        let neigh = world.ip(&host, &["-6", "neigh", "show", "dev", "rt6a"]).unwrap_or_default();
        neigh
            .lines()
            .any(|l| l.starts_with(&format!("{guest_addr} ")) && l.contains("lladdr 02:00:00:00:00:99"))
    };
    assert!(
        vmnet_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), overridden),
        "the NA did not override: {:?}",
        world.ip(&host, &["-6", "neigh", "show", "dev", "rt6a"])
    );

    drop((capture, guest_capture, plain, private));
    drop(world);
    assert!(!netns_names().contains(&id), "netns left: {}", netns_names());
    assert!(!dir.exists(), "{} left", dir.display());
}

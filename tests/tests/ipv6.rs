//! IPv6 parity with the "kernel" uplink source: a guest with the kernel's stock SLAAC gets an
//! address in the LAN's /64 from vmnetd's Router Advertisements, vmnetd learns it from the
//! guest's own DAD, checks it on the uplink and routes it; a LAN host already holding the
//! address makes the guest's DAD fail; without IPv6 on the uplink nothing changes.

use std::net::Ipv6Addr;
use std::time::Duration;

use vmnet_tests::hostile::{
    dad_probe, mac_octets, router_advertisement, send_frames, unsolicited_neighbor_advertisement, Ip6Frame,
};
use vmnet_tests::ip6;
use vmnet_tests::{
    kernel_config, require_root, wait_until, Addr6, GuestHandle, Ipv6Guest, Opt, World, LAN_DEV, UPLINK,
};

const PREFIX: &str = "2001:db8:1::/64";
const LAN_ROUTER6: &str = "2001:db8:1::1";
const LAN_CLIENT6: &str = "2001:db8:1::2";

/// The LAN gets its router and client addresses, the host its own and a default route.
fn dual_stack(world: &World) {
    let (host, lan) = (world.host_ns(), world.lan_ns());
    for address in [LAN_ROUTER6, LAN_CLIENT6] {
        world
            .ip(lan, &["-6", "addr", "add", &format!("{address}/64"), "dev", LAN_DEV, "nodad"])
            .expect("LAN address");
    }
    world
        .ip(host, &["-6", "addr", "add", "2001:db8:1::10/64", "dev", UPLINK, "nodad"])
        .expect("host address");
    world
        .ip(host, &["-6", "route", "add", "default", "via", LAN_ROUTER6, "dev", UPLINK])
        .expect("default route");
}

/// A guest behind `guest`'s tap, with its MAC and the kernel's default IPv6 settings (SLAAC
/// on; temporary addresses preferred too when `temporary`), eth0 up, as a VM boots.
fn slaac_guest<'w>(world: &'w World, client: &vmnet_tests::Client, guest: &str) -> GuestHandle<'w> {
    slaac_guest_with(world, client, guest, false)
}

fn slaac_guest_with<'w>(
    world: &'w World,
    client: &vmnet_tests::Client,
    guest: &str,
    temporary: bool,
) -> GuestHandle<'w> {
    let tap = client.guest_property(guest, "Tap").expect("Tap");
    let mac = client.guest_property(guest, "Mac").expect("Mac");
    world.ipv6_guest(&tap, &mac, Ipv6Guest { temporary_addresses: temporary }, false)
}

/// The guest's eth0 global addresses with their flags, as text (for messages).
fn shown(guest: &GuestHandle<'_>) -> Vec<String> {
    guest.addresses6().unwrap_or_default().iter().map(Addr6::to_string).collect()
}

/// The guest's first usable (DAD passed, not deprecated) address in the LAN's prefix, stable or
/// temporary, once it has one.
fn usable_address(guest: &GuestHandle<'_>) -> Option<String> {
    let found = guest.wait_for_address6_where(PREFIX, Duration::from_secs(10), Addr6::usable);
    found.ok().map(|a| a.address.to_string())
}

fn ping6(ns: &str, address: &str) -> bool {
    ip6::ping(ns, None, address)
}

#[test]
fn a_stock_slaac_guest_gets_the_lans_prefix_and_is_reachable_both_ways() {
    require_root!();
    let world = World::new("ipv6slaac");
    dual_stack(&world);
    let before = world.kernel_state();
    let vmnetd =
        world.start_vmnetd(&kernel_config(&world, "[ipv6]\ndad_ms = 300\nforget_unused_seconds = 4\n"));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", PREFIX), "vmnetd sees the uplink's /64");
    assert_eq!(client.manager_property("Gateway6").unwrap(), LAN_ROUTER6);
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = slaac_guest(&world, &client, "web");
    let address = usable_address(&guest).unwrap_or_else(|| {
        let on_tap = world.ip(world.host_ns(), &["-6", "addr", "show", "dev", &tap]).unwrap_or_default();
        panic!("no SLAAC address: {:?}; tap: {on_tap}; vmnetd: {}", shown(&guest), vmnetd.log())
    });
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || client
            .guest_property("web", "Addresses6")
            .is_ok_and(|a| a.split(',').any(|a| a == address))),
        "Addresses6: {:?}",
        client.guest_property("web", "Addresses6")
    );
    let route = world.ip(world.host_ns(), &["-6", "route", "show", &address]).unwrap();
    assert!(route.contains(&format!("dev {tap}")) && route.contains("proto 118"), "{route}");
    let vmnetctl = |args: &[&str]| {
        let out = world.vmnetctl_as(None, args).expect("vmnetctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        vmnetctl(&["status"]).contains("IPv6 prefix:      2001:db8:1::/64\n"),
        "{}",
        vmnetctl(&["status"])
    );
    let list = vmnetctl(&["list"]);
    assert!(list.lines().next().is_some_and(|h| h.contains("IPV6")) && list.contains(&address), "{list}");
    let json: serde_json::Value = serde_json::from_str(&vmnetctl(&["--json", "list"])).expect("JSON");
    assert_eq!(json[0]["addresses6"][0], address.as_str());
    let proxies = world.ip(world.host_ns(), &["-6", "neigh", "show", "proxy"]).unwrap();
    assert!(proxies.contains(&address), "{proxies}");
    assert!(
        ping6(world.lan_ns(), &address),
        "the LAN reaches the guest: {:?} {:?} {:?} {:?}",
        world.sysctl(world.host_ns(), "net.ipv6.conf.all.forwarding"),
        world.sysctl(world.host_ns(), &format!("net.ipv6.conf.{UPLINK}.proxy_ndp")),
        world.nft_counters(),
        world.nftables()
    );
    assert!(ping6(guest.ns(), LAN_CLIENT6), "the guest reaches the LAN");
    let router = guest.ip(&["-6", "route", "show", "default"]).unwrap();
    assert!(router.contains("via fe80::766d:"), "vmnetd's router link-local: {router}");

    // The guest drops the address: it stops answering for it and is forgotten.
    guest.ip(&["-6", "addr", "del", &format!("{address}/64"), "dev", "eth0"]).expect("addr del");
    assert!(
        wait_until(Duration::from_secs(8), Duration::from_millis(100), || client
            .guest_property("web", "Addresses6")
            .is_ok_and(|a| !a.contains(&address))),
        "forgotten"
    );
    assert!(world.ip(world.host_ns(), &["-6", "route", "show", &address]).unwrap().trim().is_empty());

    client.remove_guest("web").expect("RemoveGuest");
    assert_eq!(world.kernel_state(), before, "the last guest gone, the host is as it was");
    drop(vmnetd);
}

#[test]
fn a_lan_host_holding_the_guests_address_makes_its_dad_fail_and_nothing_is_proxied() {
    require_root!();
    let world = World::new("ipv6dad");
    dual_stack(&world);
    let vmnetd = world.start_vmnetd(&kernel_config(&world, "[ipv6]\ndad_ms = 300\n"));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", PREFIX));
    // The guest's EUI-64 address (MAC 52:54:00:12:34:56) is held on the LAN already.
    let taken = "2001:db8:1:0:5054:ff:fe12:3456";
    world
        .ip(world.lan_ns(), &["-6", "addr", "add", &format!("{taken}/64"), "dev", LAN_DEV, "nodad"])
        .unwrap();
    client.add_guest("web", &[("mac", Opt::Str("52:54:00:12:34:56"))]).expect("AddGuest");
    let guest = slaac_guest_with(&world, &client, "web", true);
    // Its temporary address passes and is routed; the taken one never becomes usable (the
    // kernel drops a SLAAC address whose DAD failed).
    let temporary = guest.wait_for_temporary6(PREFIX, Duration::from_secs(10)).expect("a temporary address");
    let temporary = temporary.address.to_string();
    std::thread::sleep(Duration::from_secs(2));
    let now = shown(&guest);
    assert!(!now.iter().any(|a| a.starts_with(taken)), "the taken address is not the guest's: {now:?}");
    let proxies = world.ip(world.host_ns(), &["-6", "neigh", "show", "proxy"]).unwrap();
    assert!(!proxies.contains(taken), "{proxies}");
    let routed = client.guest_property("web", "Addresses6").unwrap();
    assert!(!routed.contains(taken) && routed.contains(&temporary), "{routed}");
    assert!(ping6(world.lan_ns(), &temporary), "the temporary address works");
    assert!(vmnetd.log().contains(&format!("{taken}, which guest web wants, is in use on the LAN")));
    drop(vmnetd);
}

#[test]
fn an_ipv4_only_uplink_gives_guests_no_ipv6_and_the_host_nothing_new() {
    require_root!();
    let world = World::new("ipv6none");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = slaac_guest(&world, &client, "web");
    std::thread::sleep(Duration::from_secs(2));
    assert!(shown(&guest).is_empty(), "{:?}", shown(&guest));
    assert_eq!(client.manager_property("Prefix6").unwrap(), "");
    let host = world.host_ns();
    assert_eq!(world.sysctl(host, "net.ipv6.conf.all.forwarding").unwrap(), "0");
    let on_tap = world.ip(host, &["-6", "addr", "show", "dev", &tap]).unwrap();
    assert!(on_tap.trim().is_empty(), "no IPv6 address on the tap: {on_tap}");
    drop(vmnetd);
}

#[test]
fn a_guest_cannot_send_from_take_or_advertise_what_is_not_its_own() {
    require_root!();
    let world = World::new("ipv6spoof");
    dual_stack(&world);
    let vmnetd = world.start_vmnetd(&kernel_config(&world, "[ipv6]\ndad_ms = 300\n"));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", PREFIX));
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("evil", &[]).expect("AddGuest evil");
    let web = slaac_guest(&world, &client, "web");
    let evil = slaac_guest(&world, &client, "evil");
    let victim = usable_address(&web).expect("web's address");
    let own = usable_address(&evil).expect("evil's address");
    let web_tap = client.guest_property("web", "Tap").unwrap();
    let routed_to_web =
        |world: &World| world.ip(world.host_ns(), &["-6", "route", "show", &victim]).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(3), Duration::from_millis(20), || routed_to_web(&world)
        .contains(&web_tap)));
    let evil_mac = mac_octets(&client.guest_property("evil", "Mac").unwrap()).expect("MAC");
    let victim_ip: Ipv6Addr = victim.parse().unwrap();
    let lan: Ipv6Addr = LAN_CLIENT6.parse().unwrap();
    let router = world.mac_of(world.host_ns(), &client.guest_property("evil", "Tap").unwrap());

    // Echo requests to the LAN from web's address, and from an address nobody has.
    let spoofed = [victim_ip, "2001:db8:1::bad".parse().unwrap()]
        .map(|from| Ip6Frame::new(evil_mac, from, lan, router).echo_request(7, 1, b"spoof"));
    send_frames(evil.ns(), "eth0", spoofed.to_vec()).expect("send");
    // Claims on web's address: an unsolicited advertisement and a DAD probe.
    let claims =
        vec![unsolicited_neighbor_advertisement(evil_mac, victim_ip), dad_probe(evil_mac, victim_ip)];
    send_frames(evil.ns(), "eth0", claims).expect("send");
    // A Router Advertisement of its own.
    let advert =
        router_advertisement(evil_mac, "fe80::bad".parse().unwrap(), "2001:db8:bad::".parse().unwrap());
    send_frames(evil.ns(), "eth0", vec![advert]).expect("send");
    std::thread::sleep(Duration::from_millis(800));

    assert!(world.dropped("spoofed_source6") >= 2, "{:?}", world.nft_counters());
    assert!(world.dropped("ipv6_router") >= 1, "{:?}", world.nft_counters());
    assert!(routed_to_web(&world).contains(&web_tap), "web's address stays web's: {}", routed_to_web(&world));
    let evil6 = client.guest_property("evil", "Addresses6").unwrap();
    assert!(!evil6.contains(&victim) && !evil6.contains("2001:db8:1::bad"), "{evil6}");
    // Its own address works.
    assert!(ping6(world.lan_ns(), &own), "evil's own address is reachable");
    assert!(ping6(world.lan_ns(), &victim), "web is still reachable");
    drop(vmnetd);
}

#[test]
fn slow_qemu_guest_gets_its_ipv6_address_by_itself_and_is_reached_from_the_lan() {
    require_root!();
    let world = World::new("ipv6qemu");
    dual_stack(&world);
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", PREFIX));
    let qmp = world.dir().join("vm.qmp");
    let mac = "52:54:00:12:34:56";
    let options = [("qmp", Opt::Str(&qmp.to_string_lossy())), ("mac", Opt::Str(mac))];
    client.add_guest("vm", &options).expect("AddGuest");
    let tap = client.guest_property("vm", "Tap").unwrap();
    let vm = world.qemu_guest(&tap, mac, &qmp);
    vm.wait_for_lease(Duration::from_secs(90)).expect("the VM boots and gets its IPv4 lease");
    // The stock kernel's SLAAC address from the MAC (EUI-64).
    let address = "2001:db8:1:0:5054:ff:fe12:3456";
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || client
            .guest_property("vm", "Addresses6")
            .is_ok_and(|a| a.split(',').any(|a| a == address))),
        "Addresses6: {:?}; log: {}",
        client.guest_property("vm", "Addresses6"),
        vmnetd.log()
    );
    assert!(ping6(world.lan_ns(), address), "the LAN pings the VM over IPv6");
    let page = world
        .exec_in(world.lan_ns(), &["socat", "-T3", "-", &format!("TCP6:[{address}]:80,connect-timeout=3")]);
    assert!(page.is_ok_and(|o| o.status.success()), "the VM's web server over IPv6");
    let reaches = vm.console_check(&format!("ping -c1 -W2 {LAN_CLIENT6}"), Duration::from_secs(10));
    assert!(reaches.expect("console"), "the VM reaches the LAN over IPv6");
    drop(vmnetd);
}

#[test]
fn a_host_that_takes_its_own_ipv6_by_slaac_keeps_its_router_while_it_forwards() {
    require_root!();
    let world = World::new("ipv6kslaac");
    let (host, lan) = (world.host_ns(), world.lan_ns());
    world.ip(lan, &["-6", "addr", "add", "2001:db8:1::1/64", "dev", LAN_DEV, "nodad"]).expect("LAN address");
    let pid_file = world.dir().join("dnsmasq-ra.pid");
    let dnsmasq = [
        "dnsmasq",
        "--conf-file=/dev/null",
        "--keep-in-foreground",
        "--port=0",
        &format!("--interface={LAN_DEV}"),
        "--bind-interfaces",
        "--enable-ra",
        "--dhcp-range=2001:db8:1::,ra-only,64,2h",
        &format!("--ra-param={LAN_DEV},10,1800"),
        &format!("--pid-file={}", pid_file.display()),
    ];
    world.spawn_in(lan, "dnsmasq-ra", &dnsmasq).expect("dnsmasq");
    // The host's own SLAAC address and default router from the LAN's RAs (accept_ra = 1).
    let routers =
        |world: &World| world.ip(world.host_ns(), &["-6", "route", "show", "default"]).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(15), Duration::from_millis(100), || routers(&world)
        .contains("proto ra")));
    let before = world.kernel_state();
    assert_eq!(before.uplink_accept_ra, "1");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", PREFIX), "{}", vmnetd.log());
    client.add_guest("web", &[]).expect("AddGuest");
    let guest = slaac_guest(&world, &client, "web");
    let address = usable_address(&guest).expect("the guest's address");
    let state = world.kernel_state();
    assert_eq!((state.ipv6_forwarding.as_str(), state.uplink_accept_ra.as_str()), ("1", "2"));
    assert!(routers(&world).contains("proto ra"), "the host kept its router: {}", routers(&world));
    assert!(ping6(lan, &address), "the LAN reaches the guest");
    client.remove_guest("web").expect("RemoveGuest");
    assert_eq!(world.kernel_state().uplink_accept_ra, "1", "restored");
    assert!(routers(&world).contains("proto ra"));
    let _ = host;
    drop(vmnetd);
}

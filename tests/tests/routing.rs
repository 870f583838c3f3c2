//! vmnetd end to end on a real bus, with a real polkitd and a guest behind the tap: the kernel
//! state it builds, reachability from the LAN, re-homing, going offline, and cleaning up.

use std::time::Duration;

use vmnet_tests::{kernel_config, require_root, Opt, World, LAN_CLIENT, UPLINK};

#[test]
fn add_guest_routes_a_reachable_guest_and_remove_restores_everything() {
    require_root!();
    let world = World::new("route");
    let before = world.kernel_state();
    assert_eq!((before.ip_forward.as_str(), before.uplink_proxy_arp.as_str()), ("0", "0"));
    assert_eq!(before.uplink_proxy_delay, "80", "the kernel's default, 0.8 s");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    assert_eq!(client.manager_property("State").unwrap(), "online");
    assert_eq!(client.manager_property("Uplink").unwrap(), UPLINK);
    assert_eq!(client.manager_property("HostAddress").unwrap(), "198.51.100.10");
    assert_eq!(client.manager_property("Subnet").unwrap(), "198.51.100.0/24");
    assert_eq!(client.manager_property("Gateway").unwrap(), "198.51.100.1");
    assert_eq!(client.manager_property("Nameservers").unwrap(), "198.51.100.1");

    // As root, for the test user: the tap belongs to that user.
    let owner = world.tester_uid();
    let path = client.add_guest("web", &[("owner", Opt::U32(owner))]).expect("AddGuest");
    assert_eq!(path.as_str(), "/org/vmnet/guests/web");
    let tap = client.guest_property("web", "Tap").unwrap();
    let mac = client.guest_property("web", "Mac").unwrap();
    assert_eq!(tap, "vmt-web");
    assert_eq!(client.guest_property("web", "Owner").unwrap(), owner.to_string());
    assert_eq!(client.guest_property("web", "State").unwrap(), "active");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.200");
    assert_eq!(world.tap_owner(&tap), i64::from(owner));
    let state = world.kernel_state();
    assert_eq!(state.taps, ["vmt-web"]);
    assert_eq!(state.routes, ["198.51.100.200 dev vmt-web scope link linkdown"]);
    // Forwarding on; the uplink answers ARP for the guest's address (a proxy entry, at once)
    // and for nothing else: its own proxy_arp stays off.
    assert_eq!((state.ip_forward.as_str(), state.uplink_proxy_arp.as_str()), ("1", "0"));
    assert_eq!(state.proxies, [format!("198.51.100.200 dev {UPLINK}")]);
    assert_eq!(state.uplink_proxy_delay, "0");
    let host = world.host_ns();
    assert_eq!(world.sysctl(host, "net.ipv4.conf.vmt-web.proxy_arp").unwrap(), "1");
    assert_eq!(world.sysctl(host, "net.ipv4.conf.vmt-web.rp_filter").unwrap(), "1");
    assert_eq!(world.sysctl(host, "net.ipv4.conf.vmt-web.accept_redirects").unwrap(), "0");
    for (key, value) in [("accept_ra", "0"), ("autoconf", "0"), ("accept_redirects", "0")] {
        assert_eq!(world.sysctl(host, &format!("net.ipv6.conf.vmt-web.{key}")).unwrap(), value, "{key}");
    }
    let link = world.ip(host, &["-o", "link", "show", "vmt-web"]).unwrap();
    assert!(link.contains(",UP") && link.contains("mtu 1500"), "{link}");
    let addresses = world.ip(host, &["-o", "addr", "show", "dev", "vmt-web"]).unwrap();
    assert!(!addresses.contains("inet "), "the tap has no IPv4 address: {addresses}");

    // A guest behind the tap, configured from the properties, is on the LAN.
    let guest = world.add_guest(&tap, &mac);
    let address = guest.configure_from(&client, "web");
    guest.start_tcp_server(80).expect("tcp server");
    assert!(world.ping_from_lan(&address), "LAN pings the guest");
    assert_eq!(world.tcp_from_lan(&address, 80).as_deref(), Some("hi"), "LAN connects to the guest");
    assert!(guest.ping_from_guest(LAN_CLIENT), "the guest reaches the LAN");

    // A second guest, then both removed: nothing is left, sysctls are as they were.
    client.add_guest("db", &[("address", Opt::Str("198.51.100.77"))]).expect("AddGuest db");
    assert_eq!(world.vmnet_routes().len(), 2);
    client.remove_guest("web").expect("RemoveGuest web");
    assert_eq!(world.kernel_state().taps, ["vmt-db"]);
    assert_eq!(world.vmnet_routes(), ["198.51.100.77 dev vmt-db scope link linkdown"]);
    assert_eq!(world.kernel_state().ip_forward, "1", "still a guest");
    client.remove_guest("db").expect("RemoveGuest db");
    assert_eq!(world.kernel_state(), before);
    assert!(client.list_guests().unwrap().is_empty());
}

#[test]
fn uplink_moving_to_another_subnet_rehomes_every_guest() {
    require_root!();
    let world = World::new("rehome");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[("address", Opt::Str("198.51.100.77"))]).expect("AddGuest db");
    let tap = client.guest_property("web", "Tap").unwrap();
    let web_index = world.ifindex(&tap);
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());
    let address = guest.configure_from(&client, "web");
    guest.start_tcp_server(80).expect("tcp server");
    assert!(world.ping_from_lan(&address));

    // The laptop roams: the uplink's address moves to 203.0.113.0/24 by hand.
    let mut rehomed = client.watch_rehomed().expect("subscribe");
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("move uplink");
    let signal = rehomed.next(Duration::from_secs(5)).expect("Rehomed signal");
    assert_eq!(signal, ("198.51.100.0/24".into(), "203.0.113.0/24".into()));
    assert_eq!(client.manager_property("HostAddress").unwrap(), "203.0.113.10");
    assert_eq!(client.manager_property("Subnet").unwrap(), "203.0.113.0/24");
    // Host parts are kept; routes moved; the taps are the same devices.
    assert_eq!(client.guest_property("web", "Address").unwrap(), "203.0.113.200");
    assert_eq!(client.guest_property("db", "Address").unwrap(), "203.0.113.77");
    // The old subnet's routes go with the full sync right after `Rehomed`.
    let moved = ["203.0.113.200 dev vmt-web scope link", "203.0.113.77 dev vmt-db scope link linkdown"];
    let moved = moved.map(String::from).to_vec();
    assert_eq!(world.settled(World::vmnet_routes, &moved), moved);
    assert_eq!(world.ifindex(&tap), web_index, "the tap was kept");
    let gateway = world.wait_for_property(&client, "Gateway", "203.0.113.1");
    assert!(gateway, "Gateway follows the new default route");

    // The guest, reconfigured from its new Address, is reachable on the new LAN.
    let address = guest.configure_from(&client, "web");
    assert_eq!(address, "203.0.113.200");
    assert!(world.ping_from_lan(&address), "LAN pings the re-homed guest");
    assert_eq!(world.tcp_from_lan(&address, 80).as_deref(), Some("hi"));
    assert!(guest.ping_from_guest("203.0.113.2"), "the guest reaches the new LAN");

    // And back home: one more Rehomed.
    world.move_uplink("198.51.100.10/24", "198.51.100.1").expect("move back");
    let signal = rehomed.next(Duration::from_secs(5)).expect("Rehomed back");
    assert_eq!(signal, ("203.0.113.0/24".into(), "198.51.100.0/24".into()));
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.200");
    let home = |w: &World| w.vmnet_routes().iter().filter(|r| r.starts_with("198.51.100.")).count();
    assert_eq!(world.settled(home, &2), 2);
    assert_eq!(world.vmnet_routes().len(), 2, "the other subnet's routes swept");
}

#[test]
fn uplink_without_address_is_offline_until_it_returns() {
    require_root!();
    let world = World::new("offline");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    world.ip(world.host_ns(), &["-4", "addr", "flush", "dev", UPLINK]).expect("flush");
    assert!(world.wait_for_property(&client, "State", "offline"));
    assert_eq!(client.guest_property("web", "State").unwrap(), "offline");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "");
    let state = world.kernel_state();
    assert!(state.routes.is_empty(), "routes withdrawn: {:?}", state.routes);
    assert!(state.proxies.is_empty(), "proxy entries withdrawn: {:?}", state.proxies);
    assert_eq!(state.taps, ["vmt-web"], "taps are kept");
    // A requested address cannot be checked while offline; a plain guest can be added.
    let err = client.add_guest("db", &[("address", Opt::Str("198.51.100.77"))]).unwrap_err();
    assert!(matches!(err, vmnet_dbus::Error::AddressUnavailable(_)), "{err:?}");
    client.add_guest("db", &[]).expect("AddGuest while offline");

    world.ip(world.host_ns(), &["addr", "add", "198.51.100.10/24", "dev", UPLINK]).expect("re-add");
    assert!(world.wait_for_property(&client, "State", "online"));
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.200");
    assert_eq!(client.guest_property("db", "Address").unwrap(), "198.51.100.201");
    assert_eq!(world.vmnet_routes().len(), 2);
    let proxies = [format!("198.51.100.200 dev {UPLINK}"), format!("198.51.100.201 dev {UPLINK}")];
    assert_eq!(world.kernel_state().proxies, proxies);
}

#[test]
fn sigkill_and_restart_restore_every_guest_without_deleting_taps() {
    require_root!();
    let world = World::new("restart");
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[("mac", Opt::Str("52:54:00:12:34:56"))]).expect("AddGuest db");
    let guests = client.list_guests().unwrap();
    let indexes = (world.ifindex("vmt-web"), world.ifindex("vmt-db"));
    let kernel = world.kernel_state();

    vmnetd.kill(vmnet_tests::Signal::SIGKILL).expect("SIGKILL");
    // Leftovers it owns and must sweep at start: a stale route, proxy entry and tap. The
    // user's own proxy entry is not vmnetd's: it stays.
    let host = world.host_ns();
    world.ip(host, &["route", "add", "198.51.100.99/32", "dev", UPLINK, "proto", "118"]).unwrap();
    world.ip(host, &["neigh", "add", "proxy", "198.51.100.99", "dev", UPLINK, "protocol", "118"]).unwrap();
    world.ip(host, &["neigh", "add", "proxy", "198.51.100.98", "dev", UPLINK]).unwrap();
    world.ip(host, &["tuntap", "add", "dev", "vmt-stale", "mode", "tap"]).unwrap();
    // The guest's tap lost its route and proxy entry while vmnetd was down: they come back.
    world.ip(host, &["route", "del", "198.51.100.200/32"]).unwrap();
    world.ip(host, &["neigh", "del", "proxy", "198.51.100.200", "dev", UPLINK]).unwrap();

    vmnetd.restart().expect("restart");
    let client = world.client();
    assert_eq!(client.list_guests().unwrap(), guests);
    assert_eq!(world.kernel_state(), kernel);
    assert_eq!((world.ifindex("vmt-web"), world.ifindex("vmt-db")), indexes, "taps were not recreated");
    // The original sysctl values survived the crash: removing every guest restores them.
    client.remove_guest("web").unwrap();
    client.remove_guest("db").unwrap();
    let after = world.kernel_state();
    assert_eq!((after.ip_forward.as_str(), after.uplink_proxy_arp.as_str()), ("0", "0"));
    assert_eq!(after.uplink_proxy_delay, "80", "restored");
    assert!(after.taps.is_empty() && after.routes.is_empty() && after.proxies.is_empty(), "{after:?}");
    let users = world.ip(host, &["-4", "neigh", "show", "proxy"]).unwrap();
    assert_eq!(users.trim(), format!("198.51.100.98 dev {UPLINK} proxy"), "the user's entry stays");
}

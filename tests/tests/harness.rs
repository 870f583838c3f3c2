//! The harness itself, end to end, without vmnetd: namespaces, bus, polkit verdicts, a guest
//! behind a hand-made tap in the routed proxy-ARP layout, and cleanup.

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use vmnet_tests::{require_root, World, HOST_ADDR, LAN_CLIENT, MANAGE_GUESTS, NOBODY, UPLINK};

fn netns_names() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the service will do for a guest, by hand: a persistent tap, proxy ARP, forwarding, /32.
fn route_tap_by_hand(world: &World, tap: &str, guest_addr: &str) {
    let host = world.host_ns();
    world.ip(host, &["tuntap", "add", "dev", tap, "mode", "tap"]).expect("tuntap add");
    world.ip(host, &["link", "set", tap, "up"]).expect("tap up");
    for key in [format!("net.ipv4.conf.{UPLINK}.proxy_arp"), format!("net.ipv4.conf.{tap}.proxy_arp")] {
        world.set_sysctl(host, &key, "1").expect("proxy_arp");
    }
    world.set_sysctl(host, "net.ipv4.ip_forward", "1").expect("ip_forward");
    world.fast_proxy_arp(tap).expect("proxy_delay");
    world.ip(host, &["route", "add", &format!("{guest_addr}/32"), "dev", tap]).expect("route");
}

/// Sysctls of the root netns that a World must never change.
fn root_sysctls() -> Vec<String> {
    ["net/ipv4/ip_forward", "net/ipv4/conf/all/proxy_arp", "net/ipv4/neigh/default/proxy_delay"]
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{k}")).expect("read sysctl"))
        .to_vec()
}

#[test]
fn world_bus_polkit_guest_and_cleanup() {
    require_root!();
    let world = World::new("harness");
    let (id, dir) = (world.id().to_string(), world.dir().to_path_buf());

    // The bus answers, as root and as an unprivileged user.
    let get_id = ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId"];
    for uid in [None, Some(NOBODY)] {
        let out = world.busctl_as(uid, &get_id).expect("busctl");
        assert!(out.status.success(), "GetId as {uid:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // zbus (for the async tests) reaches the same bus.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let bus_id = rt.block_on(async {
        let conn = world.bus().connect().await.expect("zbus connect");
        zbus::fdo::DBusProxy::new(&conn).await.expect("proxy").get_id().await.expect("GetId")
    });
    assert!(!bus_id.to_string().is_empty());

    // The project's bus policy is loaded: root may own org.vmnet, nobody may not.
    let request = [
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
        "su",
        "org.vmnet",
        "0",
    ];
    let out = world.busctl_as(None, &request).expect("busctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "u 1", "{out:?}");
    let out = world.busctl_as(Some(NOBODY), &request).expect("busctl");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Access denied"), "{out:?}");

    // polkit verdicts.
    let polkit = world.polkit();
    let tester = Some(world.tester_uid());
    assert!(polkit.is_authorized(None, MANAGE_GUESTS).expect("pkcheck root"));
    assert!(!polkit.is_authorized(Some(NOBODY), MANAGE_GUESTS).expect("pkcheck nobody"));
    assert!(!polkit.is_authorized(tester, MANAGE_GUESTS).expect("pkcheck tester"));
    let reload = polkit.install_example_rules().expect("example rules");
    eprintln!("[{id}] polkitd applied 50-vmnet.rules after {:.3}s", reload.as_secs_f64());
    assert!(polkit.is_authorized(tester, MANAGE_GUESTS).expect("pkcheck tester"));
    assert!(!polkit.is_authorized(Some(NOBODY), MANAGE_GUESTS).expect("pkcheck nobody"));

    // A guest behind a tap, reachable from the LAN by ping and TCP, and reaching the LAN.
    route_tap_by_hand(&world, "vmt-x", "198.51.100.200");
    assert_eq!(world.sysctl(world.host_ns(), "net.ipv4.ip_forward").expect("sysctl"), "1");
    let t0 = Instant::now();
    let guest = world.add_guest("vmt-x", "52:54:00:12:34:56");
    guest.configure("198.51.100.200/24", HOST_ADDR).expect("configure");
    guest.start_tcp_server(80).expect("tcp server");
    eprintln!("[{id}] guest configured and serving after {:.3}s", t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    assert!(world.ping_from_lan("198.51.100.200"), "LAN cannot ping the guest");
    eprintln!("[{id}] first ping from the LAN after {:.3}s", t1.elapsed().as_secs_f64());
    assert_eq!(world.tcp_from_lan("198.51.100.200", 80).as_deref(), Some("hi"));
    assert!(guest.ping_from_guest(LAN_CLIENT), "guest cannot ping the LAN");

    // QMP: carrier off drops the traffic, carrier on brings it back.
    guest.set_link(false).expect("set_link down");
    guest.wait_for_event("link down", std::time::Duration::from_secs(2)).expect("link down");
    let carrier = guest.ip(&["-o", "link", "show", "eth0"]).expect("link show");
    assert!(carrier.contains("NO-CARRIER"), "{carrier}");
    guest.set_link(true).expect("set_link up");
    assert!(world.ping_from_lan("198.51.100.200"), "no ping after link up");

    drop(guest);
    drop(world);
    assert!(!netns_names().contains(&id), "netns left: {}", netns_names());
    assert!(!Path::new(&dir).exists(), "{} left", dir.display());
}

#[test]
fn uplink_moves_to_another_subnet_and_back() {
    require_root!();
    let root_before = root_sysctls();
    let world = World::new("roam");
    let (host, lan) = (world.host_ns(), world.lan_ns());
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("move to 203.0.113.0/24");
    let addrs = world.ip(host, &["-4", "-o", "addr", "show", "dev", UPLINK]).expect("addr");
    assert!(addrs.contains("203.0.113.10/24") && !addrs.contains("198.51.100.10"), "{addrs}");
    let out = world.exec_in(lan, &["busybox", "ping", "-c1", "-W2", "203.0.113.10"]).expect("ping");
    assert!(out.status.success(), "LAN cannot reach the moved uplink");
    let route = world.ip(host, &["route", "show", "default"]).expect("route");
    assert!(route.contains("via 203.0.113.1"), "{route}");

    world.move_uplink("198.51.100.10/24", "198.51.100.1").expect("move back");
    let route = world.ip(host, &["route", "show", "default"]).expect("route");
    assert!(route.contains("via 198.51.100.1"), "{route}");
    assert!(world.ping_from_lan(HOST_ADDR));
    drop(world);
    assert_eq!(root_sysctls(), root_before, "the root netns was changed");
}

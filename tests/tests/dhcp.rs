//! vmnetd's DHCP server and ARP conflict probing, with a real DHCP client (busybox udhcpc) in
//! a netns guest behind the tap and real LAN hosts answering ARP.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmnet_dbus::Error;
use vmnet_tests::{kernel_config, require_root, GuestHandle, Opt, World, LAN_DEV, UPLINK};

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
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());
    world.fast_proxy_arp(UPLINK).unwrap();
    let udhcpc = dhcp_client(&world, &guest);
    let first = wait_for_event(&world, &guest, "bound", Duration::from_secs(10)).expect("first lease");
    assert!(first.contains("ip=198.51.100.200 "), "{first}");

    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    assert!(world.wait_for_property(&client, "Subnet", "203.0.113.0/24"));
    // No QMP socket: the guest learns at its next renewal (SIGUSR1 makes udhcpc renew now)
    // from a NAK, then DISCOVERs.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(udhcpc as i32), nix::sys::signal::Signal::SIGUSR1)
        .expect("signal udhcpc");
    let nak = wait_for_event(&world, &guest, "nak", Duration::from_secs(10));
    assert!(nak.is_some(), "the stale renewal was NAKed");
    let rebound = wait_for_event(&world, &guest, "bound ip=203.0.113.200 ", Duration::from_secs(10));
    let rebound = rebound.expect("a lease in the new subnet");
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

//! The test guests themselves, without vmnetd: a tap routed by hand and busybox udhcpd stand in
//! for the service. A netns guest (tapguest) and a QEMU guest get their leases, are reachable
//! from the LAN, answer QMP as QEMU does, and run DHCP again after a QMP link flap, onto a new
//! address when the server now offers another one (what a re-home does).
//!
//! `slow_qemu_*` boots a real VM under TCG (about 5 s to its lease, 10 s in all): it runs with
//! the rest under `tests/run.sh` (which installs qemu-system-x86 and the guest kernel).

use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vmnet_tests::{require_root, Lease, Qmp, Udhcpd, World, HOST_ADDR, LAN_CLIENT, LAN_ROUTER};

const MAC: &str = "52:54:00:12:34:56";
const LEASE_WAIT: Duration = Duration::from_secs(10);

fn ip(addr: &str) -> Ipv4Addr {
    addr.parse().expect("IPv4 address")
}

/// What udhcpd's default configuration (`Udhcpd::new`) hands out.
fn assert_full_lease(lease: &Lease, address: &str) {
    assert_eq!(lease.event, "bound");
    assert_eq!(lease.cidr(), format!("{address}/24"));
    assert_eq!(lease.router, Some(ip(HOST_ADDR)));
    assert_eq!(lease.dns, [ip(LAN_ROUTER)]);
    assert_eq!(lease.domain.as_deref(), Some("example.test"));
    assert_eq!((lease.mtu, lease.lease), (Some(1500), Some(90)));
    assert_eq!(lease.server, Some(ip(HOST_ADDR)));
}

/// `GET /` from the LAN client (socat: busybox wget crashes in the netns).
fn lan_http_get(world: &World, addr: &str) -> String {
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socat -T3 - TCP:{addr}:80,connect-timeout=3");
    let out = world.exec_in(world.lan_ns(), &["sh", "-c", &get]).expect("socat");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn netns_dhcp_guest_gets_its_lease_and_rebinds_after_a_link_flap() {
    require_root!();
    let world = World::new("gdhcp");
    let tap = "vmt-d";
    world.tap_by_hand(tap, "198.51.100.200").expect("tap");
    let server = world.start_udhcpd(&Udhcpd::new(tap, "198.51.100.200")).expect("udhcpd");
    let t0 = Instant::now();
    let guest = world.dhcp_guest(tap, MAC, true);
    let lease = guest.wait_for_lease(LEASE_WAIT).expect("lease");
    eprintln!("[{}] netns guest bound {} after {:.3}s", world.id(), lease.cidr(), t0.elapsed().as_secs_f64());
    assert_full_lease(&lease, "198.51.100.200");
    let addr = guest.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]).expect("addr");
    assert!(addr.contains(" 198.51.100.200/24 "), "{addr}");
    let route = guest.ip(&["route", "show", "default"]).expect("route");
    assert!(route.starts_with("default via 198.51.100.10 dev eth0"), "{route}");
    assert!(world.ping_from_lan("198.51.100.200"), "LAN cannot ping the DHCP guest");
    assert!(guest.ping_from_guest(LAN_CLIENT), "the DHCP guest cannot reach the LAN");

    // What vmnetd does on a re-home: find the NIC by its MAC, then flap its link.
    let mut qmp = guest.qmp_connect().expect("QMP");
    let nic = qmp.nic_with_mac(&MAC.to_uppercase()).expect("query-rx-filter");
    assert_eq!(nic.as_deref(), Some("virtio-net-pci.0"));
    let filter = qmp.rx_filters().expect("query-rx-filter").remove(0);
    let multicast = filter["multicast-table"].as_array().cloned().unwrap_or_default();
    assert!(multicast.contains(&json!("01:00:5e:00:00:01")), "eth0 joined 224.0.0.1: {filter}");
    let t1 = Instant::now();
    qmp.set_link("virtio-net-pci.0", false).expect("set_link down");
    guest.wait_for_event("link down", Duration::from_secs(2)).expect("link down");
    let link = guest.ip(&["-o", "link", "show", "eth0"]).expect("link");
    assert!(link.contains("NO-CARRIER"), "{link}");
    qmp.set_link("virtio-net-pci.0", true).expect("set_link up");
    guest.wait_for_event("link up", Duration::from_secs(2)).expect("link up");
    let again = guest.wait_for_lease(LEASE_WAIT).expect("lease after the flap");
    eprintln!("[{}] flap to a new lease: {:.3}s", world.id(), t1.elapsed().as_secs_f64());
    assert_full_lease(&again, "198.51.100.200");

    // The server now offers another address; a flap (by netdev id this time) moves the guest.
    drop(server);
    let _server = world.start_udhcpd(&Udhcpd::new(tap, "198.51.100.201")).expect("udhcpd .201");
    world.route_by_hand(tap, "198.51.100.201").expect("route .201");
    qmp.set_link("n0", false).expect("set_link n0 down");
    qmp.set_link("n0", true).expect("set_link n0 up");
    let moved = guest.wait_for_lease(LEASE_WAIT).expect("lease .201");
    assert_full_lease(&moved, "198.51.100.201");
    let addr = guest.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]).expect("addr");
    assert!(addr.contains(" 198.51.100.201/24 ") && !addr.contains(".200/"), "{addr}");
    assert!(world.ping_from_lan("198.51.100.201"), "LAN cannot ping the moved guest");
}

#[test]
fn netns_dhcp_guest_keeps_asking_until_a_server_answers() {
    require_root!();
    let world = World::new("gretry");
    let tap = "vmt-r";
    world.tap_by_hand(tap, "198.51.100.200").expect("tap");
    let guest = world.dhcp_guest(tap, MAC, false);
    // 3 DISCOVERs 1 s apart go unanswered: udhcpc reports it, pauses 1 s and starts over.
    guest.wait_for_event("dhcp leasefail", Duration::from_secs(8)).expect("leasefail");
    let t0 = Instant::now();
    let _server = world.start_udhcpd(&Udhcpd::new(tap, "198.51.100.200")).expect("udhcpd");
    let lease = guest.wait_for_lease(LEASE_WAIT).expect("lease once the server is up");
    let waited = t0.elapsed();
    eprintln!("[{}] bound {:.3}s after the server started", world.id(), waited.as_secs_f64());
    assert_full_lease(&lease, "198.51.100.200");
    assert!(waited < Duration::from_secs(4), "retries are too slow: {waited:?}");
    assert!(world.ping_from_lan("198.51.100.200"));
}

fn qmp_error(reply: &Value) -> (&str, &str) {
    let field = |name: &str| reply["error"][name].as_str().unwrap_or_default();
    (field("class"), field("desc"))
}

#[test]
fn tapguest_qmp_answers_as_qemu_does() {
    require_root!();
    let world = World::new("gqmp");
    world.tap_by_hand("vmt-m", "198.51.100.200").expect("tap");
    let guest = world.add_guest("vmt-m", MAC);

    // Before negotiation, everything but qmp_capabilities is refused.
    let mut raw = Qmp::connect_raw(guest.qmp_socket()).expect("connect");
    assert!(raw.greeting()["QMP"]["version"]["qemu"]["major"].is_number(), "{}", raw.greeting());
    let reply = raw.send_raw("{\"execute\": \"query-status\"}\n").expect("reply");
    assert_eq!(qmp_error(&reply).0, "CommandNotFound");

    let replies = guest
        .qmp(&[
            json!({"execute": "qmp_capabilities"}),
            json!({"execute": "query-rx-filter", "arguments": {"name": "n0"}}),
            json!({"execute": "query-rx-filter", "arguments": {"name": "nope"}}),
            json!({"execute": "set_link", "arguments": {"name": "nope", "up": true}}),
            json!({"execute": "set_link", "arguments": {"name": "n0"}}),
            json!({"execute": "set_link", "arguments": {"name": "n0", "up": "yes"}}),
            json!({"execute": "no-such-command", "id": 7}),
            json!({"execute": "query-rx-filter", "arguments": {"name": "virtio-net-pci.0"}}),
        ])
        .expect("QMP");
    let errors: Vec<(&str, &str)> = replies[..7].iter().map(qmp_error).collect();
    assert_eq!(
        errors,
        [
            ("CommandNotFound", "Capabilities negotiation is already complete, command ignored"),
            ("GenericError", "net client(n0) isn't a NIC"),
            ("GenericError", "invalid net client name: nope"),
            ("DeviceNotFound", "Device 'nope' not found"),
            ("GenericError", "Parameter 'up' is missing"),
            ("GenericError", "Invalid parameter type for 'up', expected: boolean"),
            ("CommandNotFound", "The command no-such-command has not been found"),
        ]
    );
    assert_eq!(replies[6]["id"], 7);
    let filter = &replies[7]["return"][0];
    assert_eq!((filter["name"].as_str(), filter["main-mac"].as_str()), (Some("virtio-net-pci.0"), Some(MAC)));
    assert_eq!(filter["promiscuous"], false);

    // Input that is not JSON is reported, and the connection goes on.
    let mut qmp = guest.qmp_connect().expect("QMP");
    let reply = qmp.send_raw("garbage\n").expect("reply");
    assert_eq!(qmp_error(&reply).0, "GenericError");
    assert!(qmp_error(&reply).1.starts_with("JSON parse error"), "{reply}");
    assert_eq!(qmp.execute("query-status", None).expect("query-status")["status"], "running");

    // quit: a SHUTDOWN event, the reply, and the relay is gone (with eth0).
    qmp.execute("quit", None).expect("quit");
    assert_eq!(qmp.events().first().map(|e| e["event"].clone()), Some(json!("SHUTDOWN")));
    guest.wait_for_exit(Duration::from_secs(5)).expect("relay exits on quit");
}

#[test]
fn slow_qemu_guest_gets_its_lease_answers_and_rebinds_after_a_link_flap() {
    require_root!();
    let world = World::new("gqemu");
    let tap = "vmt-q";
    world.tap_by_hand(tap, "198.51.100.200").expect("tap");
    let server = world.start_udhcpd(&Udhcpd::new(tap, "198.51.100.200")).expect("udhcpd");
    let qmp_path = world.dir().join("vm.qmp");
    let t0 = Instant::now();
    let vm = world.qemu_guest(tap, MAC, &qmp_path);
    let lease = vm.wait_for_lease(Duration::from_secs(90)).expect("lease");
    eprintln!("[{}] QEMU guest bound {} after {:.3}s", world.id(), lease.cidr(), t0.elapsed().as_secs_f64());
    assert_full_lease(&lease, "198.51.100.200");
    assert!(world.ping_from_lan("198.51.100.200"), "LAN cannot ping the VM");
    let page = lan_http_get(&world, "198.51.100.200");
    assert!(page.starts_with("HTTP/1.") && page.ends_with("\r\n\r\nvmnet test guest\n"), "{page:?}");
    let reaches_lan = vm.console_check(&format!("ping -c1 -W2 {LAN_CLIENT}"), Duration::from_secs(10));
    assert!(reaches_lan.expect("console"), "the VM cannot reach the LAN");

    // The real QEMU: the NIC is found by its MAC, and tapguest's rx-filter has the same shape.
    let mut qmp = Qmp::connect(&qmp_path).expect("QMP");
    let filters = qmp.rx_filters().expect("query-rx-filter");
    eprintln!("[{}] QEMU query-rx-filter: {}", world.id(), Value::from(filters.clone()));
    assert_eq!(qmp.nic_with_mac(MAC).expect("rx-filter").as_deref(), Some("virtio-net-pci.0"));
    let not_nic = qmp.execute("query-rx-filter", Some(json!({"name": "n0"}))).expect_err("n0 is a netdev");
    assert_eq!(not_nic.to_string(), "QMP error GenericError: net client(n0) isn't a NIC");
    world.tap_by_hand("vmt-m", "198.51.100.99").expect("second tap");
    let mirror = world.add_guest("vmt-m", "52:54:00:00:00:99").qmp_connect().expect("QMP").rx_filters();
    let mirror = mirror.expect("tapguest rx-filter");
    let keys = |f: &Value| f.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&mirror[0]), keys(&filters[0]), "tapguest's rx-filter fields differ from QEMU's");
    for field in ["name", "promiscuous", "multicast", "unicast", "vlan", "vlan-table", "broadcast-allowed"] {
        assert_eq!(mirror[0][field], filters[0][field], "rx-filter field {field}");
    }

    // A link flap: the VM sees its carrier go and come back, and runs DHCP again, onto the
    // new address the server now offers.
    drop(server);
    let _server = world.start_udhcpd(&Udhcpd::new(tap, "198.51.100.201")).expect("udhcpd .201");
    world.route_by_hand(tap, "198.51.100.201").expect("route .201");
    let t1 = Instant::now();
    qmp.set_link("virtio-net-pci.0", false).expect("set_link down");
    vm.wait_for_console("GUEST-LINK down", Duration::from_secs(5)).expect("link down");
    std::thread::sleep(Duration::from_millis(300));
    qmp.set_link("virtio-net-pci.0", true).expect("set_link up");
    vm.wait_for_console("GUEST-LINK up", Duration::from_secs(5)).expect("link up");
    let moved = vm.wait_for_lease(LEASE_WAIT).expect("lease after the flap");
    eprintln!("[{}] QEMU flap to a new lease: {:.3}s", world.id(), t1.elapsed().as_secs_f64());
    assert_full_lease(&moved, "198.51.100.201");
    assert!(world.ping_from_lan("198.51.100.201"), "LAN cannot ping the VM at its new address");
}

//! Guests with no static configuration follow real NetworkManager roams: vmnetd's DHCP server
//! gives them their address and, through a QMP link flap after the roam, their new one.

use std::path::Path;
use std::time::{Duration, Instant};

use vmnet_tests::{require_root, Lan, NmWorld, Opt};

const NM_CONFIG: &str = "[uplink]\nsource = \"networkmanager\"\nconnection_types = [\"802-3-ethernet\"]\n";
const LEASE_WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_dhcp_guest_with_qmp_is_moved_by_a_link_flap_when_nm_roams() {
    require_root!();
    let world = NmWorld::new("nmdhcp");
    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert!(world.wait_for_property(&client, "State", "online"));
    // The netns guest's QMP socket is g<n>.qmp in the World's directory; this is its first guest.
    let qmp = world.dir().join("g0.qmp");
    client.add_guest("web", &[("qmp", Opt::Str(&qmp.to_string_lossy()))]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.dhcp_guest(&tap, &client.guest_property("web", "Mac").unwrap(), true);
    assert_eq!(guest.qmp_socket(), Path::new(&qmp));
    let lease = guest.wait_for_lease(LEASE_WAIT).expect("first lease");
    assert_eq!(lease.cidr(), "198.51.100.200/24");
    assert_eq!(lease.router.map(|r| r.to_string()), Some(client.manager_property("HostAddress").unwrap()));
    assert_eq!(lease.dns, ["198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap()], "DNS from NM");
    assert!(world.ping_from(Lan::Home, "198.51.100.200"));

    for (to, address) in [(Lan::Office, "203.0.113.200"), (Lan::Home, "198.51.100.200")] {
        let roam = world.roam(to).expect("roam");
        let since_nm = Instant::now();
        guest.wait_for_event("link down", LEASE_WAIT).expect("vmnetd flapped the link over QMP");
        let lease = guest.wait_for_lease(LEASE_WAIT).expect("a lease after the flap");
        eprintln!(
            "[{}] NM holds {} -> guest bound {} after {:.3}s",
            world.id(),
            roam.address,
            lease.cidr(),
            since_nm.elapsed().as_secs_f64()
        );
        assert_eq!(lease.address.to_string(), address);
        assert_eq!(
            lease.router.map(|r| r.to_string()),
            Some(client.manager_property("HostAddress").unwrap())
        );
        assert!(world.ping_from(to, address), "the new LAN reaches the guest at {address}");
    }
}

#[test]
fn slow_qemu_guest_rehomed_by_nm_renews_through_the_qmp_link_flap() {
    require_root!();
    let world = NmWorld::new("nmqemu");
    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert!(world.wait_for_property(&client, "State", "online"));
    let qmp = world.dir().join("vm.qmp");
    let mac = "52:54:00:12:34:56";
    let options = [("qmp", Opt::Str(&qmp.to_string_lossy())), ("mac", Opt::Str(mac))];
    client.add_guest("vm", &options).expect("AddGuest");
    let tap = client.guest_property("vm", "Tap").unwrap();
    let vm = world.qemu_guest(&tap, mac, &qmp);
    let lease = vm.wait_for_lease(Duration::from_secs(90)).expect("the VM's first lease");
    assert_eq!(lease.cidr(), "198.51.100.200/24");
    assert!(world.ping_from(Lan::Home, "198.51.100.200"), "the home LAN reaches the VM");

    world.roam(Lan::Office).expect("roam");
    vm.wait_for_console("GUEST-LINK down", LEASE_WAIT).expect("vmnetd flapped the VM's link");
    let lease = vm.wait_for_lease(LEASE_WAIT).expect("a lease after the flap");
    assert_eq!(lease.cidr(), "203.0.113.200/24");
    assert!(world.ping_from(Lan::Office, "203.0.113.200"), "the office LAN reaches the VM");
}

//! Which network the uplink is on: the same subnet behind another router is another network
//! (addresses probed and announced again, guests asked to renew), the same router after a
//! carrier bounce is not, nor is a guest's DHCP renewal. Real packets: the router's MAC on the
//! LAN is what tells them apart, and the LAN's side of the uplink sees the ARP probes and
//! announcements.

use std::time::Duration;

use std::net::Ipv4Addr;

use vmnet_tests::{kernel_config, require_root, ArpSeen, ArpWatch, Opt, World, LAN_DEV};

const LEASE_WAIT: Duration = Duration::from_secs(15);
const SUBNET: &str = "198.51.100.0/24";
const GUEST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

/// The probes and announcements of the guest's address seen on the LAN.
fn probed_or_announced(arp: &ArpWatch) -> Vec<ArpSeen> {
    let guests = [ArpSeen::Probe(GUEST), ArpSeen::Announcement(GUEST)];
    arp.seen().into_iter().filter(|seen| guests.contains(seen)).collect()
}

/// Takes the LAN's side of the uplink down (the uplink loses its carrier: offline) and up
/// again, with the LAN's MAC changed to `mac` when given: another router, same addresses.
fn bounce_lan(world: &World, mac: Option<&str>) {
    let client = world.client();
    world.ip(world.lan_ns(), &["link", "set", LAN_DEV, "down"]).expect("LAN down");
    assert!(world.wait_for_property(&client, "State", "offline"), "no carrier: offline");
    if let Some(mac) = mac {
        world.ip(world.lan_ns(), &["link", "set", LAN_DEV, "address", mac]).expect("LAN MAC");
    }
    world.ip(world.lan_ns(), &["link", "set", LAN_DEV, "up"]).expect("LAN up");
    assert!(world.wait_for_property(&client, "State", "online"), "carrier back: online");
}

#[test]
fn the_same_subnet_behind_another_router_is_a_new_network() {
    require_root!();
    let world = World::new("samesub");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let qmp = world.dir().join("g0.qmp");
    client.add_guest("web", &[("qmp", Opt::Str(&qmp.to_string_lossy()))]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.dhcp_guest(&tap, &client.guest_property("web", "Mac").unwrap(), true);
    assert_eq!(guest.wait_for_lease(LEASE_WAIT).expect("lease").cidr(), "198.51.100.200/24");
    let mut rehomed = client.watch_rehomed().expect("watch Rehomed");
    let arp = world.watch_arp(world.lan_ns(), LAN_DEV).expect("watch ARP on the LAN");

    // A DHCP renewal on the same network: its address is not probed again.
    guest.renew_lease().expect("ask the guest to renew");
    guest.wait_for_event("dhcp renew 198.51.100.200/24", LEASE_WAIT).expect("the guest renews");
    std::thread::sleep(Duration::from_millis(300)); // what vmnetd would do after the ACK
    assert!(!arp.seen().contains(&ArpSeen::Probe(GUEST)), "probed at a renewal: {:?}", arp.seen());

    // The same router after a carrier bounce: the same network, nothing to tell the guest.
    // (Its address is probed again: nothing defended it while the uplink was offline.)
    bounce_lan(&world, None);
    assert_eq!(rehomed.next(Duration::from_secs(1)), None, "no Rehomed on the same network");
    assert!(guest.wait_for_event("link down", Duration::from_millis(500)).is_err(), "no flap");

    // Another router with the same subnet: a new network.
    arp.clear();
    bounce_lan(&world, Some("02:00:5e:00:be:ef"));
    let signal = rehomed.next(LEASE_WAIT).expect("Rehomed for the new network");
    assert_eq!(signal, (SUBNET.to_owned(), SUBNET.to_owned()));
    assert!(arp.wait_for(ArpSeen::Announcement(GUEST), LEASE_WAIT), "announced: {:?}", arp.seen());
    let told = probed_or_announced(&arp);
    assert_eq!(told.first(), Some(&ArpSeen::Probe(GUEST)), "probed before it is announced: {told:?}");
    guest.wait_for_event("link down", LEASE_WAIT).expect("vmnetd flapped the guest's link");
    let lease = guest.wait_for_lease(LEASE_WAIT).expect("a lease after the flap");
    assert_eq!(lease.cidr(), "198.51.100.200/24", "the address itself is still free");
    assert!(world.ping_from_lan("198.51.100.200"), "the new LAN reaches the guest");
}

//! IPv6 guests behind real NetworkManager on dual-stack LANs (dnsmasq RAs, `ipv6.method=auto`):
//! what vmnetd advertises on the tap, SLAAC and privacy addresses reachable from the LAN, and a
//! real roam that moves the guest to the office prefix by Router Advertisements alone.

use std::time::{Duration, Instant};

use vmnet_tests::ndp::Capture;
use vmnet_tests::{require_root, Ipv6Guest, Lan, NmOptions, NmWorld};

const NM_CONFIG: &str = "[uplink]\nsource = \"networkmanager\"\nconnection_types = [\"802-3-ethernet\"]\n";
const WAIT: Duration = Duration::from_secs(15);

fn dual_stack(tag: &str) -> NmWorld {
    NmWorld::with_options(tag, NmOptions { ipv6: true, ..NmOptions::default() })
}

#[test]
fn an_ipv6_guest_follows_a_real_nm_roam_by_router_advertisements_alone() {
    require_root!();
    let world = dual_stack("nmipv6");
    world.wait_for_address6(Lan::Home, WAIT).expect("NM's home IPv6 address");
    let vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert!(world.wait_for_property(&client, "Prefix6", Lan::Home.prefix6()), "Prefix6");
    assert_eq!(client.manager_property("Nameservers6").unwrap(), Lan::Home.router6().to_string());
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let mac = client.guest_property("web", "Mac").unwrap();
    // No QMP socket: IPv6 needs no link flap.
    let guest = world.ipv6_guest(&tap, &mac, Ipv6Guest { temporary_addresses: true }, false);
    let capture = Capture::open(guest.ns(), "eth0").expect("capture on the guest's eth0");

    let home = guest.wait_for_global6(Lan::Home.prefix6(), WAIT).expect("a home SLAAC address");
    let temporary = guest.wait_for_temporary6(Lan::Home.prefix6(), WAIT).expect("a home temporary address");
    let advert =
        capture.next_router_advert(Duration::from_secs(5)).expect("capture").expect("an RA on the tap");
    let prefix = *advert.prefix(Lan::Home.prefix6_net()).expect("the home prefix advertised");
    assert!(prefix.autonomous && !prefix.on_link, "A=1, L=0: {prefix:?}");
    assert_eq!(advert.dns_servers(), [Lan::Home.router6()], "RDNSS: the uplink's DNS");
    assert_eq!(advert.search_domains(), [Lan::Home.search_domain()], "DNSSL");
    assert_eq!(advert.mtu, Some(1500));
    assert!(advert.router_lifetime > 0);
    for address in [home.address, temporary.address] {
        let text = address.to_string();
        assert!(
            vmnet_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || client
                .guest_property("web", "Addresses6")
                .is_ok_and(|a| a.split(',').any(|a| a == text))),
            "{text} routed: {:?}",
            client.guest_property("web", "Addresses6")
        );
        assert!(world.ping6_from(Lan::Home, &text), "the home LAN reaches {text}");
    }
    guest.start_tcp_server6(8080).expect("TCP server");
    assert!(world.tcp6_from(Lan::Home, &home.address.to_string(), 8080).is_some(), "TCP from the LAN");
    assert!(guest.ping6_from_guest(&Lan::Home.client6().to_string(), None), "the guest reaches the LAN");

    // A real roam: NM gets the office prefix; the guest is told by RAs, no QMP.
    world.roam(Lan::Office).expect("roam");
    let nm = world.wait_for_address6(Lan::Office, WAIT).expect("NM's office IPv6 address");
    let since_nm = Instant::now();
    let office = guest.wait_for_global6(Lan::Office.prefix6(), WAIT).expect("an office SLAAC address");
    let text = office.address.to_string();
    assert!(world.ping6_from(Lan::Office, &text), "the office LAN reaches {text}");
    let elapsed = since_nm.elapsed();
    eprintln!(
        "[{}] NM holds {} -> guest reachable at {text} after {:.3}s",
        world.id(),
        nm.address,
        elapsed.as_secs_f64()
    );
    assert!(elapsed < Duration::from_secs(2), "reachable {elapsed:?} after NM had the office prefix");
    let old = guest.addresses6().unwrap().into_iter().find(|a| a.address == home.address);
    assert!(old.as_ref().is_none_or(|a| a.deprecated), "the home address is deprecated: {old:?}");
    assert_eq!(guest.default_routers6().unwrap().len(), 1, "one default router: the office one");
    assert!(!client.guest_property("web", "Addresses6").unwrap().contains(&home.address.to_string()));
    let routes = world.ip(world.host_ns(), &["-6", "route", "show", "proto", "118"]).unwrap();
    assert!(!routes.contains("2001:db8:1:"), "the home routes are gone: {routes}");

    // Back home: the guest takes its home address up again (no DAD: it still had it,
    // deprecated), and vmnetd routes it again without being told.
    world.roam(Lan::Home).expect("roam back");
    world.wait_for_address6(Lan::Home, WAIT).expect("NM's home IPv6 address again");
    guest.wait_for_global6(Lan::Home.prefix6(), WAIT).expect("the home address in use again");
    assert!(world.ping6_from(Lan::Home, &home.address.to_string()), "the home LAN reaches the guest again");
    assert!(!vmnetd.log().contains("set_link"), "no QMP");
}

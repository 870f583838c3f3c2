use std::time::Duration;

use super::*;
use crate::ndp::message::{neighbor_advertisement, neighbor_solicitation, parse};

const UPLINK: u32 = 2;
const TAP: u32 = 10;
const OTHER_TAP: u32 = 11;
const GUEST_MAC: Mac = Mac([0x0a, 0x76, 0x6d, 0, 0, 1]);
const OTHER_MAC: Mac = Mac([0x0a, 0x76, 0x6d, 0, 0, 2]);
const TAP_MAC: Mac = Mac([0xfe, 0, 0, 0, 0, 10]);
const UPLINK_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 2]);
const LAN_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 99]);

fn ip(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn uplink(prefix: &str) -> UplinkPort {
    let prefix = Prefix6::containing(ip(prefix), 64).unwrap();
    UplinkPort {
        interface: "wlan0".into(),
        prefix,
        router: message::router_link_local(prefix.network()),
        host: Ipv6Addr::from(u128::from(prefix.network()) | 0x10),
        mtu: 1500,
        nameservers: vec![ip("2001:db8:1::1")],
        domains: vec!["home.test".into()],
    }
}

fn tap(guest: &str, ifindex: u32, mac: Mac, routed: &[&str]) -> TapPort {
    TapPort { ifindex, guest: guest.into(), guest_mac: mac, routed: routed.iter().map(|a| ip(a)).collect() }
}

fn routers(prefix: Option<&str>, taps: &[(&str, TapPort)]) -> Routers {
    Routers {
        uplink: prefix.map(uplink),
        taps: taps.iter().map(|(name, port)| (name.to_string(), port.clone())).collect(),
    }
}

fn links(taps: &[(&str, u32)]) -> Links {
    Links {
        uplink: Some((UPLINK, UPLINK_MAC)),
        taps: taps.iter().map(|(name, index)| (name.to_string(), (*index, TAP_MAC))).collect(),
    }
}

fn config(dad_ms: u32, forget: u32) -> Ipv6Config {
    Ipv6Config { enabled: true, dad_ms, forget_unused_seconds: forget }
}

/// One guest on the home prefix, its quick advertisements taken.
fn home(dad_ms: u32) -> (Neighbors, Instant) {
    let now = Instant::now();
    let mut n = Neighbors::new(&config(dad_ms, 300));
    n.update(
        &routers(Some("2001:db8:1::"), &[("vmt-a", tap("a", TAP, GUEST_MAC, &[]))]),
        &links(&[("vmt-a", TAP)]),
        now,
    );
    n.take_outgoing();
    (n, now)
}

fn kinds(outgoing: &[Outgoing]) -> Vec<(u32, Ndp)> {
    outgoing.iter().map(|o| (o.ifindex, parse(&o.packet).unwrap())).collect()
}

fn dad(target: &str) -> Vec<u8> {
    neighbor_solicitation(Ipv6Addr::UNSPECIFIED, ip(target), None)
}

#[test]
fn a_new_tap_gets_three_quick_advertisements_then_one_every_interval() {
    let now = Instant::now();
    let mut n = Neighbors::new(&config(400, 300));
    let home = routers(Some("2001:db8:1::"), &[("vmt-a", tap("a", TAP, GUEST_MAC, &[]))]);
    n.update(&home, &links(&[("vmt-a", TAP)]), now);
    let router = uplink("2001:db8:1::").router;
    assert_eq!(kinds(&n.take_outgoing()), [(TAP, Ndp::RouterAdvertisement { source: router })]);
    for second in 1..=2 {
        n.tick(now + Duration::from_secs(second));
        assert_eq!(n.take_outgoing().len(), 1, "quick advertisement {second}");
    }
    n.tick(now + Duration::from_secs(3));
    assert!(n.take_outgoing().is_empty());
    assert_eq!(n.next_deadline(), Some(now + Duration::from_secs(2) + RA_INTERVAL));
    // A solicitation is answered at once, but not twice within half a second.
    let solicitation = now + Duration::from_secs(4);
    let rs = rs_packet();
    n.received(&rs, TAP, GUEST_MAC, solicitation);
    n.received(&rs, TAP, GUEST_MAC, solicitation + Duration::from_millis(100));
    assert_eq!(n.take_outgoing().len(), 1);
}

fn rs_packet() -> Vec<u8> {
    // A Router Solicitation from the unspecified address, without options.
    let icmp = vec![133u8, 0, 0, 0, 0, 0, 0, 0];
    let sum = message::checksum(Ipv6Addr::UNSPECIFIED, message::ALL_ROUTERS, &icmp);
    let mut packet = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255];
    packet.extend(Ipv6Addr::UNSPECIFIED.octets());
    packet.extend(message::ALL_ROUTERS.octets());
    packet.extend(&icmp);
    packet[40 + 2..40 + 4].copy_from_slice(&sum.to_be_bytes());
    packet
}

#[test]
fn without_ipv6_on_the_uplink_nothing_is_advertised_or_learned() {
    let now = Instant::now();
    let mut n = Neighbors::new(&config(400, 300));
    n.update(&routers(None, &[("vmt-a", tap("a", TAP, GUEST_MAC, &[]))]), &links(&[("vmt-a", TAP)]), now);
    n.received(&rs_packet(), TAP, GUEST_MAC, now);
    n.received(&dad("2001:db8:1::5"), TAP, GUEST_MAC, now);
    n.tick(now + Duration::from_secs(5));
    assert!(n.take_outgoing().is_empty());
    assert!(n.take_found().is_empty());
}

#[test]
fn a_guest_s_dad_is_repeated_on_the_uplink_and_the_address_reported_when_nobody_answers() {
    let (mut n, now) = home(400);
    n.received(&dad("2001:db8:1::5"), TAP, GUEST_MAC, now);
    let sent = n.take_outgoing();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ifindex, UPLINK);
    assert_eq!(sent[0].mac, [0x33, 0x33, 0xff, 0, 0, 5], "to the solicited-node group");
    assert!(matches!(parse(&sent[0].packet), Ok(Ndp::NeighborSolicitation { source, target, .. })
        if source.is_unspecified() && target == ip("2001:db8:1::5")));
    n.tick(now + Duration::from_millis(399));
    assert!(n.take_found().is_empty(), "not before the window ends");
    n.tick(now + Duration::from_millis(400));
    assert_eq!(n.take_found(), [Found::InUse { guest: "a".into(), address: ip("2001:db8:1::5") }]);
}

#[test]
fn a_lan_host_holding_the_address_makes_the_guest_s_dad_fail_and_nothing_is_reported() {
    let (mut n, now) = home(400);
    n.received(&dad("2001:db8:1::5"), TAP, GUEST_MAC, now);
    n.take_outgoing();
    let flags = NaFlags { router: false, solicited: false, override_: true };
    let answer = neighbor_advertisement(ip("2001:db8:1::5"), ALL_NODES, ip("2001:db8:1::5"), LAN_MAC, flags);
    n.received(&answer, UPLINK, LAN_MAC, now + Duration::from_millis(20));
    let sent = kinds(&n.take_outgoing());
    assert!(
        matches!(sent.as_slice(), [(TAP, Ndp::NeighborAdvertisement { target, .. })] if *target == ip("2001:db8:1::5")),
        "{sent:?}"
    );
    n.tick(now + Duration::from_secs(1));
    assert!(n.take_found().is_empty());
}

#[test]
fn what_is_not_the_guest_s_is_ignored() {
    let (mut n, now) = home(400);
    n.received(&dad("2001:db8:1::5"), TAP, OTHER_MAC, now); // another MAC on the tap
    n.received(&dad("2001:db8:9::5"), TAP, GUEST_MAC, now); // another prefix
    n.received(&dad("fe80::5"), TAP, GUEST_MAC, now); // link-local
    n.received(&[0x60, 0, 0], TAP, GUEST_MAC, now); // junk
    n.received(&dad("2001:db8:1::6"), 99, GUEST_MAC, now); // not a tap of ours
    n.tick(now + Duration::from_secs(1));
    let sent = kinds(&n.take_outgoing());
    assert!(sent.iter().all(|(_, m)| matches!(m, Ndp::RouterAdvertisement { .. })), "{sent:?}");
    assert!(n.take_found().is_empty());
}

#[test]
fn an_address_of_another_guest_or_of_the_host_is_defended_on_the_tap() {
    let now = Instant::now();
    let mut n = Neighbors::new(&config(400, 300));
    let taps = [
        ("vmt-a", tap("a", TAP, GUEST_MAC, &[])),
        ("vmt-b", tap("b", OTHER_TAP, OTHER_MAC, &["2001:db8:1::b"])),
    ];
    n.update(&routers(Some("2001:db8:1::"), &taps), &links(&[("vmt-a", TAP), ("vmt-b", OTHER_TAP)]), now);
    n.take_outgoing();
    for taken in ["2001:db8:1::b", "2001:db8:1::10"] {
        n.received(&dad(taken), TAP, GUEST_MAC, now);
        let sent = kinds(&n.take_outgoing());
        assert!(
            matches!(sent.as_slice(), [(TAP, Ndp::NeighborAdvertisement { target, .. })] if *target == ip(taken)),
            "{taken}: {sent:?}"
        );
    }
    n.tick(now + Duration::from_secs(1));
    assert!(n.take_found().is_empty());
}

#[test]
fn a_routed_address_is_announced_once_probed_when_silent_and_reported_unused() {
    let now = Instant::now();
    let mut n = Neighbors::new(&config(400, 8));
    let routed = routers(Some("2001:db8:1::"), &[("vmt-a", tap("a", TAP, GUEST_MAC, &["2001:db8:1::5"]))]);
    n.update(&routed, &links(&[("vmt-a", TAP)]), now);
    let sent = kinds(&n.take_outgoing());
    let announced: Vec<_> = sent.iter().filter(|(index, _)| *index == UPLINK).collect();
    assert!(
        matches!(announced.as_slice(), [(_, Ndp::NeighborAdvertisement { target, override_: true, .. })] if *target == ip("2001:db8:1::5"))
    );
    n.update(&routed, &links(&[("vmt-a", TAP)]), now);
    assert!(kinds(&n.take_outgoing()).iter().all(|(index, _)| *index != UPLINK), "announced once");
    // Heard of 1 s later: the probes start 2 s after that (8 s / 4).
    let heard = now + Duration::from_secs(1);
    let reply = neighbor_advertisement(
        ip("2001:db8:1::5"),
        ALL_NODES,
        ip("2001:db8:1::5"),
        GUEST_MAC,
        NaFlags::default(),
    );
    n.received(&reply, TAP, GUEST_MAC, heard);
    n.tick(heard + Duration::from_secs(2));
    let probes = kinds(&n.take_outgoing());
    assert!(probes.iter().any(|(index, m)| *index == TAP
        && matches!(m, Ndp::NeighborSolicitation { target, .. } if *target == ip("2001:db8:1::5"))));
    for second in 3..8 {
        n.tick(heard + Duration::from_secs(second));
    }
    assert!(n.take_found().is_empty());
    n.tick(heard + Duration::from_secs(8));
    assert_eq!(n.take_found(), [Found::Unused { guest: "a".into(), address: ip("2001:db8:1::5") }]);
}

#[test]
fn a_roam_says_goodbye_from_the_old_router_and_deprecates_the_old_prefix() {
    let (mut n, now) = home(400);
    let later = now + Duration::from_secs(10);
    n.update(
        &routers(Some("2001:db8:2::"), &[("vmt-a", tap("a", TAP, GUEST_MAC, &[]))]),
        &links(&[("vmt-a", TAP)]),
        later,
    );
    let sent = n.take_outgoing();
    let sources: Vec<_> = kinds(&sent).into_iter().map(|(_, m)| m).collect();
    let (old, new) = (uplink("2001:db8:1::").router, uplink("2001:db8:2::").router);
    assert_eq!(sources, [Ndp::RouterAdvertisement { source: old }, Ndp::RouterAdvertisement { source: new }]);
    // The goodbye: router lifetime 0 (octets 6-7 of the ICMPv6 message).
    assert_eq!(&sent[0].packet[40 + 6..40 + 8], &[0, 0]);
    // The new advertisement carries both prefixes, the old one with no preferred lifetime.
    assert!(sent[1].packet.windows(16).any(|w| w == ip("2001:db8:1::").octets()));
    // Losing IPv6 altogether: one goodbye from the router that was.
    n.update(&routers(None, &[("vmt-a", tap("a", TAP, GUEST_MAC, &[]))]), &links(&[("vmt-a", TAP)]), later);
    let sent = kinds(&n.take_outgoing());
    assert_eq!(sent, [(TAP, Ndp::RouterAdvertisement { source: new })]);
}

#[test]
fn without_dad_the_address_is_reported_at_once() {
    let (mut n, now) = home(0);
    n.received(&dad("2001:db8:1::5"), TAP, GUEST_MAC, now);
    assert_eq!(n.take_found(), [Found::InUse { guest: "a".into(), address: ip("2001:db8:1::5") }]);
}

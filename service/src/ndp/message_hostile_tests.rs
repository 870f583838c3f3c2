//! What a hostile guest or LAN host may send, and property tests over arbitrary input.

use proptest::prelude::*;

use super::tests::{reseal, GUEST_LL, MAC, ROUTER, TARGET};
use super::*;

fn valid_packets() -> Vec<Vec<u8>> {
    let flags = NaFlags { router: false, solicited: true, override_: true };
    let ra = RouterAdvertisement {
        source: ROUTER,
        source_mac: MAC,
        hop_limit: 64,
        router_lifetime: 600,
        retrans_timer: 0,
        prefixes: vec![super::tests::prefix(1, 600, 300)],
        mtu: Some(1500),
        rdnss: Some((600, vec![TARGET])),
        dnssl: Some((600, vec!["home.arpa".into()])),
    };
    vec![
        neighbor_solicitation(Ipv6Addr::UNSPECIFIED, TARGET, None),
        neighbor_solicitation(GUEST_LL, TARGET, Some(MAC)),
        neighbor_advertisement(ROUTER, GUEST_LL, TARGET, MAC, flags),
        ra.encode(ALL_NODES),
    ]
}

#[test]
fn every_truncation_is_refused() {
    for packet in valid_packets() {
        assert!(parse(&packet).is_ok());
        for len in 0..packet.len() {
            assert!(parse(&packet[..len]).is_err(), "{len} of {} octets", packet.len());
        }
    }
}

#[test]
fn octets_past_the_payload_length_are_ignored() {
    for packet in valid_packets() {
        let expected = parse(&packet);
        let mut padded = packet.clone();
        padded.extend([0xee; 10]);
        assert_eq!(parse(&padded), expected);
        // A payload length past the octets there are.
        let mut long = packet.clone();
        let claimed = (packet.len() - 40 + 8) as u16;
        long[4..6].copy_from_slice(&claimed.to_be_bytes());
        assert_eq!(parse(&long), Err(ParseError::TooShort));
    }
}

#[test]
fn malformed_options_are_refused() {
    let packet = neighbor_solicitation(GUEST_LL, TARGET, Some(MAC));
    let with_option = |option: &[u8]| {
        let mut changed = packet.clone();
        changed.extend(option);
        reseal(&mut changed);
        parse(&changed)
    };
    assert!(with_option(&[]).is_ok());
    assert!(with_option(&[14, 1, 0, 0, 0, 0, 0, 0]).is_ok(), "an unknown option is skipped");
    assert_eq!(with_option(&[14, 0, 0, 0, 0, 0, 0, 0]), Err(ParseError::BadOption));
    assert_eq!(with_option(&[14, 2, 0, 0, 0, 0, 0, 0]), Err(ParseError::BadOption));
    assert_eq!(with_option(&[14]), Err(ParseError::BadOption));
    assert_eq!(with_option(&[1, 1, 2, 0, 0, 0, 0, 2]), Err(ParseError::BadOption), "a second SLLA");
    let mut long_slla = packet.clone();
    long_slla.truncate(64);
    long_slla.extend([1, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    reseal(&mut long_slla);
    assert_eq!(parse(&long_slla), Err(ParseError::BadOption));
}

#[test]
fn header_fields_are_checked() {
    let packet = neighbor_solicitation(GUEST_LL, TARGET, Some(MAC));
    let changed = |at: usize, value: u8, seal: bool| {
        let mut changed = packet.clone();
        changed[at] = value;
        if seal {
            reseal(&mut changed);
        }
        parse(&changed)
    };
    assert_eq!(changed(0, 0x45, false), Err(ParseError::NotIpv6(4)));
    assert_eq!(changed(6, 0, false), Err(ParseError::NotIcmpv6(0)), "a hop-by-hop header");
    assert_eq!(changed(6, 17, false), Err(ParseError::NotIcmpv6(17)));
    assert_eq!(changed(7, 64, false), Err(ParseError::HopLimitNot255(64)));
    assert_eq!(changed(63, 0xc9, false), Err(ParseError::BadChecksum));
    assert_eq!(changed(41, 1, true), Err(ParseError::BadCode(1)));
    assert_eq!(changed(40, 128, true), Err(ParseError::NotNdp(128)));
    assert_eq!(changed(40, 137, true), Err(ParseError::NotNdp(137)));
    let multicast = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc8);
    assert_eq!(
        changed(48, 0xff, true),
        Err(ParseError::MulticastTarget(Ipv6Addr::new(0xff01, 0xdb8, 1, 0, 0, 0, 0, 0xc8)))
    );
    let mut to_multicast = packet.clone();
    to_multicast[8..24].copy_from_slice(&multicast.octets());
    reseal(&mut to_multicast);
    assert_eq!(parse(&to_multicast), Err(ParseError::BadSource(multicast)));
}

#[test]
fn rules_for_unspecified_sources_and_solicited_advertisements() {
    // DAD with a source link-layer address, or to a group that is not a solicited-node one.
    let mut dad = neighbor_solicitation(GUEST_LL, TARGET, Some(MAC));
    dad[8..24].fill(0);
    reseal(&mut dad);
    assert_eq!(parse(&dad), Err(ParseError::BadSource(Ipv6Addr::UNSPECIFIED)));
    let mut dad = neighbor_solicitation(Ipv6Addr::UNSPECIFIED, TARGET, None);
    dad[24..40].copy_from_slice(&ALL_NODES.octets());
    reseal(&mut dad);
    assert_eq!(parse(&dad), Err(ParseError::BadDestination(ALL_NODES)));
    let solicited = NaFlags { solicited: true, ..NaFlags::default() };
    let na = neighbor_advertisement(ROUTER, ALL_NODES, TARGET, MAC, solicited);
    assert_eq!(parse(&na), Err(ParseError::BadDestination(ALL_NODES)));
    // An RA from a global address.
    let mut ra = valid_packets().remove(3);
    ra[8..24].copy_from_slice(&TARGET.octets());
    reseal(&mut ra);
    assert_eq!(parse(&ra), Err(ParseError::BadSource(TARGET)));
}

#[test]
fn junk_is_refused() {
    let junk: Vec<u8> = (0..65536u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert!(parse(&junk).is_err());
    let mut ipv6_junk = junk.clone();
    ipv6_junk[..8].copy_from_slice(&[0x60, 0, 0, 0, 0xff, 0xff, 58, 255]);
    ipv6_junk[40] = 135;
    assert!(parse(&ipv6_junk).is_err());
    assert_eq!(parse(&[0; 65536]), Err(ParseError::NotIpv6(0)));
}

fn a_mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

fn a_unicast() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from).prop_filter("unicast", |address| !address.is_multicast())
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), ndp in any::<bool>()) {
        let mut bytes = bytes;
        if ndp && bytes.len() >= 44 {
            // Mostly valid headers, so the checks past them run too.
            bytes[0] = 0x60;
            bytes[6] = 58;
            bytes[7] = 255;
            bytes[40] = 133 + bytes[40] % 4;
            bytes[41] = 0;
            reseal(&mut bytes);
        }
        let _ = parse(&bytes);
    }

    #[test]
    fn solicitations_round_trip(source in a_unicast(), target in a_unicast(), mac in a_mac(), dad in any::<bool>()) {
        let source = if dad { Ipv6Addr::UNSPECIFIED } else { source };
        let packet = neighbor_solicitation(source, target, Some(mac));
        let source_mac = (!dad).then_some(mac);
        let found = Ndp::NeighborSolicitation { source, destination: solicited_node(target), target, source_mac };
        prop_assert_eq!(parse(&packet), Ok(found));
        let probe = unicast_neighbor_solicitation(source, target, mac);
        // From `::` with a link-layer address it is not a valid probe.
        let found = Ndp::NeighborSolicitation { source, destination: target, target, source_mac: Some(mac) };
        prop_assert_eq!(parse(&probe), if dad { Err(ParseError::BadSource(source)) } else { Ok(found) });
    }

    #[test]
    fn advertisements_round_trip(
        source in a_unicast(),
        destination in a_unicast(),
        target in a_unicast(),
        mac in a_mac(),
        (router, solicited, override_) in any::<(bool, bool, bool)>(),
    ) {
        let flags = NaFlags { router, solicited, override_ };
        let packet = neighbor_advertisement(source, destination, target, mac, flags);
        let found = Ndp::NeighborAdvertisement {
            source, destination, target, target_mac: Some(mac), router, solicited, override_,
        };
        prop_assert_eq!(parse(&packet), Ok(found));
    }
}

use super::*;

pub(super) const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub(super) const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
pub(super) const TARGET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xc8);
pub(super) const MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);

/// RFC 4861 4.2 and 4.6, field by field; the checksum (0x8877) is the one an independent
/// implementation (scapy 2.8) computes for these fields.
#[rustfmt::skip]
const RA: [u8; 184] = [
    0x60, 0, 0, 0, 0, 144, 58, 255,                          // IPv6: payload 144, ICMPv6, hop limit 255
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,    // source fe80::1
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,    // destination ff02::1
    134, 0, 0x88, 0x77, 64, 0, 0x07, 0x08,                   // RA, code, checksum, hop limit, M=O=0, 1800 s
    0, 0, 0, 0, 0, 0, 0, 0,                                  // reachable time, retransmission timer
    1, 1, 2, 0, 0, 0, 0, 1,                                  // source link-layer address
    5, 1, 0, 0, 0, 0, 0x05, 0xdc,                            // MTU 1500
    3, 4, 64, 0xc0, 0, 0x01, 0x51, 0x80, 0, 0, 0x38, 0x40,   // prefix /64, L A, valid 86400, preferred 14400
    0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8:1::
    3, 4, 64, 0xc0, 0, 0, 0x1c, 0x20, 0, 0, 0, 0,            // prefix /64, L A, valid 7200, preferred 0
    0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8:2::
    25, 3, 0, 0, 0, 0, 0x02, 0x58,                           // RDNSS, 600 s
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53, // 2001:db8:1::53
    31, 3, 0, 0, 0, 0, 0x02, 0x58,                           // DNSSL, 600 s
    4, b'h', b'o', b'm', b'e', 4, b'a', b'r', b'p', b'a', 0, 0, 0, 0, 0, 0, // home.arpa, padding
];

pub(super) fn prefix(second: u16, valid: u32, preferred: u32) -> PrefixInfo {
    let prefix = Ipv6Addr::new(0x2001, 0xdb8, second, 0, 0, 0, 0, 0);
    PrefixInfo { prefix, len: 64, on_link: true, autonomous: true, valid, preferred }
}

fn advertisement() -> RouterAdvertisement {
    RouterAdvertisement {
        source: ROUTER,
        source_mac: MAC,
        hop_limit: 64,
        router_lifetime: 1800,
        retrans_timer: 0,
        prefixes: vec![prefix(1, 86400, 14400), prefix(2, 7200, 0)],
        mtu: Some(1500),
        rdnss: Some((600, vec![Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53)])),
        dnssl: Some((600, vec!["home.arpa".into()])),
    }
}

/// Sums the packet's pseudo-header and ICMPv6 message as 16-bit words, written apart from
/// [`checksum`]: a packet with the right checksum sums to 0xffff.
fn sums_to_all_ones(packet: &[u8]) -> bool {
    let payload = &packet[40..];
    let mut words = packet[8..40].to_vec();
    words.extend((payload.len() as u32).to_be_bytes());
    words.extend([0, 0, 0, 58]);
    words.extend(payload);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    let mut sum: u32 = words.chunks(2).map(|word| u32::from(word[0]) << 8 | u32::from(word[1])).sum();
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum == 0xffff
}

/// Sets the payload length to that of `packet` past its header and the checksum right again.
pub(super) fn reseal(packet: &mut [u8]) {
    let payload_len = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&payload_len.to_be_bytes());
    packet[42..44].fill(0);
    let source = address(&packet[8..24]).unwrap();
    let destination = address(&packet[24..40]).unwrap();
    let sum = checksum(source, destination, &packet[40..]);
    packet[42..44].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn router_advertisement_matches_the_rfc_fields() {
    let packet = advertisement().encode(ALL_NODES);
    assert_eq!(packet, RA);
    assert!(sums_to_all_ones(&packet));
    assert_eq!(parse(&packet), Ok(Ndp::RouterAdvertisement { source: ROUTER }));
}

#[test]
fn router_advertisement_leaves_out_what_is_empty_or_invalid() {
    let mut ra = advertisement();
    ra.prefixes = vec![PrefixInfo { len: 48, on_link: false, ..prefix(1, 600, 300) }];
    ra.prefixes[0].prefix = Ipv6Addr::new(0x2001, 0xdb8, 1, 0xffff, 0, 0, 0, 1);
    ra.mtu = None;
    ra.rdnss = Some((600, Vec::new()));
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = vec!["abcdefghi"; 26].join(".");
    let invalid = ["", ".", "a..b", "bücher.example", "a b.example", &long_label, &long_name];
    ra.dnssl = Some((900, invalid.iter().map(|name| name.to_string()).collect()));
    let packet = ra.encode(GUEST_LL);
    // Header, SLLA and one prefix: /48, A only, host bits cleared.
    assert_eq!(packet.len(), 40 + 16 + 8 + 32);
    assert_eq!(&packet[64..68], &[3, 4, 48, 0x40]);
    assert_eq!(&packet[80..96], &Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0).octets());
    assert!(sums_to_all_ones(&packet));

    ra.dnssl = Some((900, vec!["Lan.".into(), "bad..name".into(), "_x.example".into()]));
    let packet = ra.encode(GUEST_LL);
    let option = &packet[96..];
    assert_eq!(option.len(), 32);
    assert_eq!(&option[..8], &[31, 4, 0, 0, 0, 0, 0x03, 0x84]);
    assert_eq!(&option[8..], b"\x03Lan\x00\x02_x\x07example\x00\0\0\0\0\0\0\0");
    assert_eq!(parse(&packet), Ok(Ndp::RouterAdvertisement { source: ROUTER }));
}

#[test]
fn router_advertisement_options_stay_within_their_length_field() {
    let mut ra = advertisement();
    ra.rdnss = Some((600, vec![TARGET; 300]));
    ra.dnssl = Some((600, (0..300).map(|n| format!("domain-{n}.example")).collect()));
    let packet = ra.encode(ALL_NODES);
    assert!(sums_to_all_ones(&packet));
    assert_eq!(parse(&packet), Ok(Ndp::RouterAdvertisement { source: ROUTER }));
    // After the header, SLLA, MTU and two prefixes: 127 servers in 255 units, then as many
    // names as fit in 255 units.
    let rdnss = 40 + 16 + 8 + 8 + 64;
    assert_eq!(&packet[rdnss..rdnss + 2], &[25, 255]);
    let dnssl = rdnss + 255 * 8;
    assert_eq!(packet[dnssl], 31);
    assert_eq!(packet.len(), dnssl + usize::from(packet[dnssl + 1]) * 8);
    assert!(packet.len() - dnssl > 255 * 8 - 24, "the option is nearly full");
}

#[test]
fn dad_solicitation_goes_to_the_solicited_node_group_without_an_address() {
    // The same fields from an independent implementation (scapy 2.8), checksum 0x4b5e.
    #[rustfmt::skip]
    let expected = [
        0x60, 0, 0, 0, 0, 24, 58, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0xc8,
        135, 0, 0x4b, 0x5e, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc8,
    ];
    let packet = neighbor_solicitation(Ipv6Addr::UNSPECIFIED, TARGET, Some(MAC));
    assert_eq!(packet, expected);
    let destination = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0xc8);
    assert_eq!(
        parse(&packet),
        Ok(Ndp::NeighborSolicitation {
            source: Ipv6Addr::UNSPECIFIED,
            destination,
            target: TARGET,
            source_mac: None
        })
    );
}

#[test]
fn solicitations_with_a_source_carry_its_link_layer_address() {
    let packet = neighbor_solicitation(GUEST_LL, TARGET, Some(MAC));
    assert!(sums_to_all_ones(&packet));
    assert_eq!(&packet[64..], &[1, 1, 2, 0, 0, 0, 0, 1]);
    let found = Ndp::NeighborSolicitation {
        source: GUEST_LL,
        destination: solicited_node(TARGET),
        target: TARGET,
        source_mac: Some(MAC),
    };
    assert_eq!(parse(&packet), Ok(found));
    let probe = unicast_neighbor_solicitation(GUEST_LL, TARGET, MAC);
    let found = Ndp::NeighborSolicitation {
        source: GUEST_LL,
        destination: TARGET,
        target: TARGET,
        source_mac: Some(MAC),
    };
    assert_eq!(parse(&probe), Ok(found));
    let without = neighbor_solicitation(GUEST_LL, TARGET, None);
    assert_eq!(without.len(), 64);
    assert!(matches!(parse(&without), Ok(Ndp::NeighborSolicitation { source_mac: None, .. })));
}

#[test]
fn neighbor_advertisement_round_trips() {
    // S and O from fe80::1 to fe80::2; checksum 0xe81b from an independent implementation.
    let flags = NaFlags { router: false, solicited: true, override_: true };
    let packet = neighbor_advertisement(ROUTER, GUEST_LL, TARGET, MAC, flags);
    assert_eq!(&packet[40..48], &[136, 0, 0xe8, 0x1b, 0x60, 0, 0, 0]);
    assert_eq!(&packet[64..], &[2, 1, 2, 0, 0, 0, 0, 1]);
    let found = Ndp::NeighborAdvertisement {
        source: ROUTER,
        destination: GUEST_LL,
        target: TARGET,
        target_mac: Some(MAC),
        router: false,
        solicited: true,
        override_: true,
    };
    assert_eq!(parse(&packet), Ok(found));
    let unsolicited = NaFlags { router: true, solicited: false, override_: false };
    let packet = neighbor_advertisement(TARGET, ALL_NODES, TARGET, MAC, unsolicited);
    assert!(matches!(parse(&packet), Ok(Ndp::NeighborAdvertisement { router: true, solicited: false, .. })));
}

#[test]
fn router_solicitation_is_read_with_or_without_an_address() {
    let mut packet = neighbor_solicitation(GUEST_LL, TARGET, Some(MAC));
    packet[24..40].copy_from_slice(&ALL_ROUTERS.octets());
    packet.drain(48..64); // an RS has 4 reserved octets and no target
    packet[40] = 133;
    reseal(&mut packet);
    assert_eq!(parse(&packet), Ok(Ndp::RouterSolicitation { source: GUEST_LL, source_mac: Some(MAC) }));
    packet[8..24].fill(0);
    reseal(&mut packet);
    assert_eq!(parse(&packet), Err(ParseError::BadSource(Ipv6Addr::UNSPECIFIED)));
    packet.truncate(48);
    reseal(&mut packet);
    let found = Ndp::RouterSolicitation { source: Ipv6Addr::UNSPECIFIED, source_mac: None };
    assert_eq!(parse(&packet), Ok(found));
}

#[test]
fn addresses_for_the_link() {
    assert_eq!(solicited_node(TARGET), "ff02::1:ff00:c8".parse::<Ipv6Addr>().unwrap());
    let group = solicited_node("2001:db8::12:3456:789a".parse().unwrap());
    assert_eq!(group, "ff02::1:ff56:789a".parse::<Ipv6Addr>().unwrap());
    assert_eq!(multicast_mac(group), [0x33, 0x33, 0xff, 0x56, 0x78, 0x9a]);
    assert_eq!(multicast_mac(ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(ALL_ROUTERS, "ff02::2".parse::<Ipv6Addr>().unwrap());
}

#[test]
fn router_link_local_is_stable_and_marked_per_prefix() {
    let home = prefix(1, 0, 0).prefix;
    let cafe = prefix(2, 0, 0).prefix;
    // Pinned: vmnetd's router address must not change between versions.
    assert_eq!(router_link_local(home), "fe80::766d:bf:8293:dbbc".parse::<Ipv6Addr>().unwrap());
    assert_eq!(router_link_local(home), router_link_local(home));
    let mut seen = std::collections::BTreeSet::new();
    for prefix in [home, cafe, Ipv6Addr::UNSPECIFIED, "2001:db8:ffff::".parse().unwrap()] {
        let address = router_link_local(prefix);
        assert!(address.is_unicast_link_local());
        assert_eq!(address.segments()[..5], [0xfe80, 0, 0, 0, 0x766d]);
        assert!(seen.insert(address), "{prefix} gives a new address");
    }
}

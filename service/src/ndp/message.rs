//! Neighbor Discovery messages (RFC 4861) as carried by an `AF_PACKET`/`SOCK_DGRAM` socket for
//! EtherType IPv6: a packet starts at the IPv6 header (the kernel adds and strips Ethernet).
//! [`parse`] validates what a guest or a LAN host sends (RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2);
//! the builders in [`encode`] write vmnetd's own messages.

use std::net::Ipv6Addr;

use crate::model::Mac;

#[path = "encode.rs"]
mod encode;
pub use encode::*;

pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

const HEADER_LEN: usize = 40;
const NEXT_HEADER_ICMPV6: u8 = 58;
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPTION_SOURCE_LINK_LAYER: u8 = 1;
const OPTION_TARGET_LINK_LAYER: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A Neighbor Discovery message that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ndp {
    RouterSolicitation {
        source: Ipv6Addr,
        source_mac: Option<Mac>,
    },
    NeighborSolicitation {
        source: Ipv6Addr,
        destination: Ipv6Addr,
        target: Ipv6Addr,
        source_mac: Option<Mac>,
    },
    NeighborAdvertisement {
        source: Ipv6Addr,
        destination: Ipv6Addr,
        target: Ipv6Addr,
        target_mac: Option<Mac>,
        router: bool,
        solicited: bool,
        override_: bool,
    },
    /// Only recognized: vmnetd never takes a guest's or the LAN's advertisement from here.
    RouterAdvertisement {
        source: Ipv6Addr,
    },
}

/// Why a packet is not a valid Neighbor Discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the packet is truncated (shorter than its headers or its payload length)")]
    TooShort,
    #[error("not an IPv6 packet (version {0})")]
    NotIpv6(u8),
    #[error("next header {0} is not ICMPv6 (extension headers are not followed)")]
    NotIcmpv6(u8),
    #[error("ICMPv6 type {0} is not Neighbor Discovery")]
    NotNdp(u8),
    #[error("hop limit {0}, not 255: the message was forwarded by a router")]
    HopLimitNot255(u8),
    #[error("the ICMPv6 checksum is wrong")]
    BadChecksum,
    #[error("ICMPv6 code {0}, not 0")]
    BadCode(u8),
    #[error("an option has length 0, runs past the end or has the wrong size")]
    BadOption,
    #[error("source address {0} is not allowed for this message")]
    BadSource(Ipv6Addr),
    #[error("destination address {0} is not allowed for this message")]
    BadDestination(Ipv6Addr),
    #[error("target address {0} is multicast")]
    MulticastTarget(Ipv6Addr),
}

/// Validates one IPv6 packet as a Neighbor Discovery message. Bytes past the IPv6 payload
/// length (link-layer padding) are ignored; options other than the link-layer address the
/// message type carries are checked for their length only.
pub fn parse(packet: &[u8]) -> Result<Ndp, ParseError> {
    let header: &[u8; HEADER_LEN] =
        packet.get(..HEADER_LEN).and_then(|header| header.try_into().ok()).ok_or(ParseError::TooShort)?;
    let version = header[0] >> 4;
    if version != 6 {
        return Err(ParseError::NotIpv6(version));
    }
    if header[6] != NEXT_HEADER_ICMPV6 {
        return Err(ParseError::NotIcmpv6(header[6]));
    }
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let source = address(&header[8..24]).ok_or(ParseError::TooShort)?;
    let destination = address(&header[24..40]).ok_or(ParseError::TooShort)?;
    let icmp = packet.get(HEADER_LEN..HEADER_LEN + payload_len).ok_or(ParseError::TooShort)?;
    let [kind, code, ..] = *icmp else { return Err(ParseError::TooShort) };
    let fixed_len = match kind {
        ROUTER_SOLICITATION => 8,
        ROUTER_ADVERTISEMENT => 16,
        NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT => 24,
        other => return Err(ParseError::NotNdp(other)),
    };
    if header[7] != 255 {
        return Err(ParseError::HopLimitNot255(header[7]));
    }
    let options = icmp.get(fixed_len..).ok_or(ParseError::TooShort)?;
    if checksum(source, destination, icmp) != 0 {
        return Err(ParseError::BadChecksum);
    }
    if code != 0 {
        return Err(ParseError::BadCode(code));
    }
    if source.is_multicast() {
        return Err(ParseError::BadSource(source));
    }
    let link_option =
        if kind == NEIGHBOR_ADVERTISEMENT { OPTION_TARGET_LINK_LAYER } else { OPTION_SOURCE_LINK_LAYER };
    let mac = link_layer_option(options, link_option)?;
    match kind {
        ROUTER_SOLICITATION => {
            if source.is_unspecified() && mac.is_some() {
                return Err(ParseError::BadSource(source));
            }
            Ok(Ndp::RouterSolicitation { source, source_mac: mac })
        }
        ROUTER_ADVERTISEMENT => {
            if !source.is_unicast_link_local() {
                return Err(ParseError::BadSource(source));
            }
            Ok(Ndp::RouterAdvertisement { source })
        }
        NEIGHBOR_SOLICITATION => {
            let target = target_at(icmp)?;
            if source.is_unspecified() {
                if mac.is_some() {
                    return Err(ParseError::BadSource(source));
                }
                if !is_solicited_node(destination) {
                    return Err(ParseError::BadDestination(destination));
                }
            }
            Ok(Ndp::NeighborSolicitation { source, destination, target, source_mac: mac })
        }
        _ => {
            let target = target_at(icmp)?;
            let flags = icmp.get(4).copied().unwrap_or_default();
            let solicited = flags & FLAG_SOLICITED != 0;
            if solicited && destination.is_multicast() {
                return Err(ParseError::BadDestination(destination));
            }
            Ok(Ndp::NeighborAdvertisement {
                source,
                destination,
                target,
                target_mac: mac,
                router: flags & FLAG_ROUTER != 0,
                solicited,
                override_: flags & FLAG_OVERRIDE != 0,
            })
        }
    }
}

/// The target address of an NS or NA (at offset 8 of the ICMPv6 message), not multicast.
fn target_at(icmp: &[u8]) -> Result<Ipv6Addr, ParseError> {
    let target = icmp.get(8..24).and_then(address).ok_or(ParseError::TooShort)?;
    if target.is_multicast() {
        return Err(ParseError::MulticastTarget(target));
    }
    Ok(target)
}

/// Walks the options: each has a length in 8-octet units, more than 0 and within `options`.
/// Returns the MAC of the (single, Ethernet-sized) link-layer address option of type `wanted`.
fn link_layer_option(mut options: &[u8], wanted: u8) -> Result<Option<Mac>, ParseError> {
    let mut found = None;
    while !options.is_empty() {
        let [kind, units, ..] = *options else { return Err(ParseError::BadOption) };
        let len = usize::from(units) * 8;
        let (option, rest) =
            options.split_at_checked(len).filter(|_| len > 0).ok_or(ParseError::BadOption)?;
        if kind == wanted {
            // Ethernet: exactly one unit, the MAC in the 6 octets after type and length.
            let &[_, 1, a, b, c, d, e, f] = option else { return Err(ParseError::BadOption) };
            if found.replace(Mac([a, b, c, d, e, f])).is_some() {
                return Err(ParseError::BadOption);
            }
        }
        options = rest;
    }
    Ok(found)
}

/// The ICMPv6 checksum (RFC 4443 2.3) of `icmp` under the pseudo-header for `source` and
/// `destination`: the value to write in a message whose checksum field is zero, and 0 for a
/// message whose checksum is right.
pub fn checksum(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += match *pair {
                [high, low] => u64::from(u16::from_be_bytes([high, low])),
                [high] => u64::from(high) << 8,
                _ => 0,
            };
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The solicited-node multicast group of `address` (RFC 4291 2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node(address: Ipv6Addr) -> Ipv6Addr {
    let [.., a, b, c] = address.octets();
    Ipv6Addr::from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a, b, c])
}

fn is_solicited_node(address: Ipv6Addr) -> bool {
    address.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// The Ethernet address of IPv6 multicast `group` (RFC 2464 7): 33:33 and its low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let [.., a, b, c, d] = group.octets();
    [0x33, 0x33, a, b, c, d]
}

/// The marker in the top 16 bits of the interface identifier of vmnetd's router address: "vm".
/// It keeps the identifier clear of zero and of the reserved ones (RFC 5453: 0200:5eff:fe…
/// and fdff:ffff:ffff:ff80 up).
const ROUTER_IID_MARKER: u16 = 0x766d;

/// The link-local address vmnetd advertises from on every tap while the uplink has `prefix`
/// (its network address): fe80::766d:XXXX:XXXX:XXXX, the low 48 bits of FNV-1a (64 bits) over
/// the prefix's 16 octets. The same prefix always gives the same address, in every version.
pub fn router_link_local(prefix: Ipv6Addr) -> Ipv6Addr {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = prefix
        .octets()
        .iter()
        .fold(FNV_OFFSET, |hash, &octet| (hash ^ u64::from(octet)).wrapping_mul(FNV_PRIME));
    let iid = u64::from(ROUTER_IID_MARKER) << 48 | hash & 0xffff_ffff_ffff;
    Ipv6Addr::from(0xfe80_u128 << 112 | u128::from(iid))
}

fn address(octets: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(octets).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "message_hostile_tests.rs"]
mod hostile_tests;

//! IPv6 frames as any guest or LAN host can send them (re-exported by [`crate::hostile`]):
//! ICMPv6 echo and UDP with any source address, Neighbor Advertisements and DAD probes. Send
//! them with [`crate::hostile::send_frames`].

use crate::hostile::{ethernet, internet_checksum, ETH_P_IPV6};
use std::net::Ipv6Addr;

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Neighbor Advertisement flags (RFC 4861 4.4).
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

const ICMPV6: u8 = 58;
const UDP: u8 = 17;

/// The solicited-node multicast group of `addr` (ff02::1:ffXX:XXXX).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low = u128::from(addr) & 0xff_ffff;
    Ipv6Addr::from(u128::from(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0)) | low)
}

/// The Ethernet and IPv6 headers of a frame: built by the methods below, which fill in the
/// lengths and checksums (any addresses go, spoofed ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip6Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub from: Ipv6Addr,
    pub to: Ipv6Addr,
    pub hop_limit: u8,
}

impl Ip6Frame {
    /// From `src_mac`/`from` to `to`, hop limit 64. A multicast `to` goes to its 33:33:…
    /// MAC; a unicast one to `dst_mac`.
    pub fn new(src_mac: [u8; 6], from: Ipv6Addr, to: Ipv6Addr, dst_mac: [u8; 6]) -> Ip6Frame {
        let dst_mac = if to.is_multicast() {
            let o = to.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        } else {
            dst_mac
        };
        Ip6Frame { src_mac, dst_mac, from, to, hop_limit: 64 }
    }

    /// The same with another hop limit (NDP requires 255).
    pub fn hop_limit(self, hop_limit: u8) -> Ip6Frame {
        Ip6Frame { hop_limit, ..self }
    }

    /// The frame with `payload` after an IPv6 header with next header `next_header`.
    pub fn packet(&self, next_header: u8, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        let mut header = vec![0x60, 0, 0, 0];
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&[next_header, self.hop_limit]);
        header.extend_from_slice(&self.from.octets());
        header.extend_from_slice(&self.to.octets());
        ethernet(self.dst_mac, self.src_mac, ETH_P_IPV6, &[&header[..], payload].concat())
    }

    /// The checksum over the pseudo-header and `upper` (whose checksum field is zero).
    fn checksum(&self, next_header: u8, upper: &[u8]) -> u16 {
        let length = u32::try_from(upper.len()).unwrap_or(u32::MAX);
        let pseudo =
            [&self.from.octets()[..], &self.to.octets(), &length.to_be_bytes(), &[0, 0, 0, next_header]]
                .concat();
        internet_checksum(&[&pseudo[..], upper].concat())
    }

    /// An ICMPv6 message (type, code, 2 checksum bytes, body...); its checksum is filled in
    /// (a message shorter than 4 bytes goes as it is, malformed).
    pub fn icmpv6(&self, message: &[u8]) -> Vec<u8> {
        let mut icmp = message.to_vec();
        if icmp.len() >= 4 {
            icmp[2..4].copy_from_slice(&[0, 0]);
            let checksum = self.checksum(ICMPV6, &icmp);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        self.packet(ICMPV6, &icmp)
    }

    /// A UDP datagram from port `sport` to `dport`, with its (in IPv6 mandatory) checksum.
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
        let mut udp =
            [&sport.to_be_bytes()[..], &dport.to_be_bytes(), &length.to_be_bytes(), &[0, 0], payload]
                .concat();
        let checksum = match self.checksum(UDP, &udp) {
            0 => 0xffff, // 0 means "no checksum", which IPv6 forbids
            sum => sum,
        };
        udp[6..8].copy_from_slice(&checksum.to_be_bytes());
        self.packet(UDP, &udp)
    }

    /// An ICMPv6 Echo Request.
    pub fn echo_request(&self, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        self.icmpv6(&[&[128, 0, 0, 0][..], &id.to_be_bytes(), &seq.to_be_bytes(), data].concat())
    }

    /// A Neighbor Advertisement for `target` with `flags` ([`NA_OVERRIDE`]...) and, if
    /// given, the target link-layer address option (hop limit 255).
    pub fn neighbor_advertisement(
        &self,
        target: Ipv6Addr,
        flags: u8,
        target_mac: Option<[u8; 6]>,
    ) -> Vec<u8> {
        let mut message = vec![136, 0, 0, 0, flags, 0, 0, 0];
        message.extend_from_slice(&target.octets());
        if let Some(mac) = target_mac {
            message.extend_from_slice(&[2, 1]);
            message.extend_from_slice(&mac);
        }
        self.hop_limit(255).icmpv6(&message)
    }

    /// A Router Solicitation, with the source link-layer address option if `source_mac` is
    /// given (not from ::) (hop limit 255): routers answer with an RA at once.
    pub fn router_solicitation(&self, source_mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut message = vec![133, 0, 0, 0, 0, 0, 0, 0];
        if let Some(mac) = source_mac {
            message.extend_from_slice(&[1, 1]);
            message.extend_from_slice(&mac);
        }
        self.hop_limit(255).icmpv6(&message)
    }

    /// A Neighbor Solicitation for `target`, with the source link-layer address option if
    /// `source_mac` is given (it must not be for DAD, from ::) (hop limit 255).
    pub fn neighbor_solicitation(&self, target: Ipv6Addr, source_mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut message = vec![135, 0, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&target.octets());
        if let Some(mac) = source_mac {
            message.extend_from_slice(&[1, 1]);
            message.extend_from_slice(&mac);
        }
        self.hop_limit(255).icmpv6(&message)
    }
}

/// An unsolicited Neighbor Advertisement from `mac` to all nodes: "`target` is at `mac`"
/// (override set), as a host announces a new address, or a spoofer takes one.
pub fn unsolicited_neighbor_advertisement(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    Ip6Frame::new(mac, target, ALL_NODES, [0; 6]).neighbor_advertisement(target, NA_OVERRIDE, Some(mac))
}

/// The Neighbor Solicitation of Duplicate Address Detection for `target`, from `mac`: source
/// ::, to `target`'s solicited-node group.
pub fn dad_probe(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    Ip6Frame::new(mac, Ipv6Addr::UNSPECIFIED, solicited_node(target), [0; 6])
        .neighbor_solicitation(target, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones_sum_is_valid(frame: &[u8], next_header: u8) -> bool {
        let ip = &frame[14..];
        let upper = &ip[40..];
        let length = u32::try_from(upper.len()).unwrap();
        let pseudo = [&ip[8..40], &length.to_be_bytes(), &[0, 0, 0, next_header]].concat();
        internet_checksum(&[&pseudo[..], upper].concat()) == 0
    }

    #[test]
    fn frames_carry_valid_lengths_and_checksums() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let spoofed: Ipv6Addr = "2001:db8:1::dead".parse().unwrap();
        let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let frame = Ip6Frame::new(mac, spoofed, router, [2; 6]);
        let echo = frame.echo_request(7, 1, b"ping");
        assert_eq!(&echo[..6], &[2; 6]);
        assert_eq!(u16::from_be_bytes([echo[18], echo[19]]), 12);
        assert!(ones_sum_is_valid(&echo, 58));
        let udp = frame.udp(5353, 9, b"junk");
        assert!(ones_sum_is_valid(&udp, 17));
        assert_eq!(u16::from_be_bytes([udp[58], udp[59]]), 12);
        let na = unsolicited_neighbor_advertisement(mac, spoofed);
        assert_eq!(&na[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!((na[21], na[54], na[58]), (255, 136, NA_OVERRIDE));
        assert!(ones_sum_is_valid(&na, 58));
        let dad = dad_probe(mac, spoofed);
        assert_eq!(&dad[..6], &[0x33, 0x33, 0xff, 0, 0xde, 0xad]);
        assert_eq!(solicited_node(spoofed), "ff02::1:ff00:dead".parse::<Ipv6Addr>().unwrap());
        assert!(ones_sum_is_valid(&dad, 58));
        let rs = Ip6Frame::new(mac, "fe80::5054:ff:fe12:3456".parse().unwrap(), ALL_ROUTERS, [0; 6])
            .router_solicitation(Some(mac));
        assert_eq!((&rs[..6], rs[54], rs.len()), (&[0x33, 0x33, 0, 0, 0, 2][..], 133, 14 + 40 + 16));
        assert!(ones_sum_is_valid(&rs, 58));
        let ra = crate::hostile::router_advertisement(mac, "fe80::1".parse().unwrap(), router);
        assert!(ones_sum_is_valid(&ra, 58));
    }
}

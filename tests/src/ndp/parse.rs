//! Router Advertisements out of Ethernet frames: every length is checked before it is used.

use std::net::Ipv6Addr;

/// A Router Advertisement as it was on the wire. Lifetimes in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvert {
    /// The Ethernet source and destination.
    pub source_mac: [u8; 6],
    pub destination_mac: [u8; 6],
    /// The IPv6 source (the router's link-local address) and destination.
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    /// The IPv6 hop limit (255 for a valid RA).
    pub hop_limit: u8,
    /// The ICMPv6 checksum is right.
    pub checksum_ok: bool,
    pub cur_hop_limit: u8,
    /// M and O flags (DHCPv6 for addresses / for other configuration).
    pub managed: bool,
    pub other_config: bool,
    /// 0: "I am not a default router" (also: "no longer").
    pub router_lifetime: u16,
    pub reachable_time: u32,
    pub retrans_timer: u32,
    pub prefixes: Vec<PrefixInfo>,
    pub rdnss: Vec<Rdnss>,
    pub dnssl: Vec<Dnssl>,
    pub mtu: Option<u32>,
    pub source_link_layer: Option<[u8; 6]>,
    /// The types of options not parsed above, in order.
    pub other_options: Vec<u8>,
    /// Captured as sent by the capturing netns (set by [`super::Capture`]; false from the parser).
    pub outgoing: bool,
}

/// A Prefix Information option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L: on-link.
    pub on_link: bool,
    /// A: autonomous address configuration (SLAAC).
    pub autonomous: bool,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

/// A Recursive DNS Server option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdnss {
    pub lifetime: u32,
    pub servers: Vec<Ipv6Addr>,
}

/// A DNS Search List option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnssl {
    pub lifetime: u32,
    pub domains: Vec<String>,
}

fn be16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or_else(|| format!("short at {at}"))
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    let s = b.get(at..at + 4).ok_or_else(|| format!("short at {at}"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn addr(b: &[u8], at: usize) -> Result<Ipv6Addr, String> {
    let s: [u8; 16] =
        b.get(at..at + 16).and_then(|s| s.try_into().ok()).ok_or_else(|| format!("short at {at}"))?;
    Ok(Ipv6Addr::from(s))
}

fn mac(b: &[u8], at: usize) -> Result<[u8; 6], String> {
    b.get(at..at + 6).and_then(|s| s.try_into().ok()).ok_or_else(|| format!("short at {at}"))
}

/// Parses `frame` (Ethernet, IPv6, optionally a hop-by-hop header, ICMPv6): `Ok(None)` if
/// it is no Router Advertisement, an error if it is a malformed one (or a malformed IPv6
/// packet).
pub fn parse_router_advert(frame: &[u8]) -> Result<Option<RouterAdvert>, String> {
    if be16(frame, 12)? != crate::hostile::ETH_P_IPV6 {
        return Ok(None);
    }
    let ip = &frame[14..];
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Err(format!("not an IPv6 header ({} bytes)", ip.len()));
    }
    let payload_len = usize::from(be16(ip, 4)?);
    let payload =
        ip.get(40..40 + payload_len).ok_or_else(|| format!("payload length {payload_len} too long"))?;
    let (mut next, mut upper) = (ip[6], payload);
    if next == 0 {
        // Hop-by-hop options: skip them.
        let len = (usize::from(*upper.get(1).ok_or("short hop-by-hop header")?) + 1) * 8;
        next = upper[0];
        upper = upper.get(len..).ok_or("hop-by-hop header too long")?;
    }
    if next != 58 || upper.first() != Some(&134) {
        return Ok(None);
    }
    let icmp = upper;
    if icmp.len() < 16 {
        return Err(format!("RA of {} bytes", icmp.len()));
    }
    if icmp[1] != 0 {
        return Err(format!("RA with code {}", icmp[1]));
    }
    let (source, destination) = (addr(ip, 8)?, addr(ip, 24)?);
    let mut ra = RouterAdvert {
        source_mac: mac(frame, 6)?,
        destination_mac: mac(frame, 0)?,
        source,
        destination,
        hop_limit: ip[7],
        checksum_ok: super::icmpv6_checksum_ok(source, destination, icmp),
        cur_hop_limit: icmp[4],
        managed: icmp[5] & 0x80 != 0,
        other_config: icmp[5] & 0x40 != 0,
        router_lifetime: be16(icmp, 6)?,
        reachable_time: be32(icmp, 8)?,
        retrans_timer: be32(icmp, 12)?,
        prefixes: Vec::new(),
        rdnss: Vec::new(),
        dnssl: Vec::new(),
        mtu: None,
        source_link_layer: None,
        other_options: Vec::new(),
        outgoing: false,
    };
    let mut rest = &icmp[16..];
    while !rest.is_empty() {
        let kind = rest[0];
        let len = usize::from(*rest.get(1).ok_or("option without a length")?) * 8;
        if len == 0 {
            return Err(format!("option {kind} with length 0"));
        }
        let option =
            rest.get(..len).ok_or_else(|| format!("option {kind} of {len} bytes runs past the end"))?;
        parse_option(&mut ra, kind, option)?;
        rest = &rest[len..];
    }
    Ok(Some(ra))
}

fn parse_option(ra: &mut RouterAdvert, kind: u8, option: &[u8]) -> Result<(), String> {
    match kind {
        1 => ra.source_link_layer = Some(mac(option, 2)?),
        3 => {
            if option.len() != 32 {
                return Err(format!("prefix information of {} bytes", option.len()));
            }
            ra.prefixes.push(PrefixInfo {
                len: option[2],
                on_link: option[3] & 0x80 != 0,
                autonomous: option[3] & 0x40 != 0,
                valid_lifetime: be32(option, 4)?,
                preferred_lifetime: be32(option, 8)?,
                prefix: addr(option, 16)?,
            });
        }
        5 => ra.mtu = Some(be32(option, 4)?),
        25 => {
            if option.len() < 24 || (option.len() - 8) % 16 != 0 {
                return Err(format!("RDNSS of {} bytes", option.len()));
            }
            let servers =
                (8..option.len()).step_by(16).map(|at| addr(option, at)).collect::<Result<_, _>>()?;
            ra.rdnss.push(Rdnss { lifetime: be32(option, 4)?, servers });
        }
        31 => {
            if option.len() < 16 {
                return Err(format!("DNSSL of {} bytes", option.len()));
            }
            ra.dnssl.push(Dnssl { lifetime: be32(option, 4)?, domains: domain_names(&option[8..])? });
        }
        other => ra.other_options.push(other),
    }
    Ok(())
}

/// Uncompressed DNS names (RFC 1035 3.1) up to the zero padding.
fn domain_names(mut b: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    while b.first().is_some_and(|&len| len != 0) {
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*b.first().ok_or("DNSSL name without its end")?);
            if len == 0 {
                b = &b[1..];
                break;
            }
            if len > 63 {
                return Err(format!("DNSSL label of {len} bytes"));
            }
            let label = b.get(1..1 + len).ok_or("DNSSL label runs past the end")?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            b = &b[1 + len..];
        }
        names.push(labels.join("."));
    }
    if b.iter().any(|&byte| byte != 0) {
        return Err("DNSSL padding is not zero".to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::{Ip6Frame, ALL_NODES};

    fn sample() -> Vec<u8> {
        let mac = [0x02, 0, 0, 0, 0, 1];
        let mut m = vec![134, 0, 0, 0, 64, 0x40, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        m.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]); // source link-layer address
        m.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]); // MTU 1500
        m.extend_from_slice(&[3, 4, 64, 0x40, 0, 0, 0x1c, 0x20, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&"2001:db8:2::".parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&[25, 3, 0, 0, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(&"2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&[31, 3, 0, 0, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(b"\x06office\x04test\x00\x01a\x00");
        m.extend_from_slice(&[99, 1, 0, 0, 0, 0, 0, 0]); // unknown
        Ip6Frame::new(mac, "fe80::1".parse().unwrap(), ALL_NODES, [0; 6]).hop_limit(255).icmpv6(&m)
    }

    #[test]
    fn a_full_router_advert_parses() {
        let ra = parse_router_advert(&sample()).unwrap().unwrap();
        assert!(ra.checksum_ok && !ra.managed && ra.other_config && !ra.outgoing);
        assert_eq!((ra.hop_limit, ra.cur_hop_limit, ra.router_lifetime), (255, 64, 0));
        assert_eq!((ra.reachable_time, ra.retrans_timer, ra.mtu), (1, 2, Some(1500)));
        assert_eq!(ra.source, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ra.destination_mac, [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(ra.source_link_layer, Some([2, 0, 0, 0, 0, 1]));
        let prefix = crate::ip6::Prefix6::parse("2001:db8:2::/64").unwrap();
        let info = ra.prefix(prefix).unwrap();
        assert!(!info.on_link && info.autonomous);
        assert_eq!((info.valid_lifetime, info.preferred_lifetime), (7200, 0));
        assert_eq!(ra.dns_servers(), ["2001:db8:2::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(ra.rdnss[0].lifetime, 3600);
        assert_eq!(ra.search_domains(), ["office.test", "a"]);
        assert_eq!(ra.other_options, [99]);
    }

    #[test]
    fn a_bad_checksum_is_reported_not_hidden() {
        let mut frame = sample();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert!(!parse_router_advert(&frame).unwrap().unwrap().checksum_ok);
    }

    #[test]
    fn truncated_and_malformed_frames_are_errors_never_panics() {
        let frame = sample();
        for len in 0..frame.len() {
            let _ = parse_router_advert(&frame[..len]); // must not panic
        }
        // The IPv6 payload length still claims the whole RA: every cut is an error.
        for len in 54..frame.len() {
            assert!(parse_router_advert(&frame[..len]).is_err(), "cut at {len}");
        }
        let mut zero_len = frame.clone();
        zero_len[14 + 40 + 16 + 1] = 0;
        assert!(parse_router_advert(&zero_len).unwrap_err().contains("length 0"));
        let mut long = frame.clone();
        long[14 + 40 + 16 + 1] = 200;
        assert!(parse_router_advert(&long).is_err());
        let not_ra =
            Ip6Frame::new([2; 6], "fe80::2".parse().unwrap(), ALL_NODES, [0; 6]).echo_request(1, 1, b"");
        assert_eq!(parse_router_advert(&not_ra), Ok(None));
        assert_eq!(parse_router_advert(&[0u8; 60]), Ok(None)); // not IPv6 at all
    }

    #[test]
    fn bad_dnssl_names_are_errors() {
        assert_eq!(domain_names(b"\x04home\x04test\x00\x00\x00").unwrap(), ["home.test"]);
        assert!(domain_names(b"\x04home\x04te").is_err());
        assert!(domain_names(b"\x40aaaa").is_err());
        assert!(domain_names(b"\x01a\x00\x00\x07").is_err());
    }
}

//! The Neighbor Discovery messages vmnetd sends, as whole IPv6 packets: traffic class and
//! flow label 0, hop limit 255, the payload length and the ICMPv6 checksum filled in.

use std::net::Ipv6Addr;

use super::*;

const OPTION_PREFIX_INFORMATION: u8 = 3;
const OPTION_MTU: u8 = 5;
const OPTION_RDNSS: u8 = 25;
const OPTION_DNSSL: u8 = 31;
const PREFIX_ON_LINK: u8 = 0x80;
const PREFIX_AUTONOMOUS: u8 = 0x40;
/// The longest option: its length is one octet of 8-octet units.
const MAX_OPTION_LEN: usize = 255 * 8;

/// A Router Advertisement (RFC 4861 4.2) with M = O = 0 (addresses by SLAAC only) and no
/// reachable time of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// The router's link-local address.
    pub source: Ipv6Addr,
    /// Sent in a Source Link-Layer Address option.
    pub source_mac: Mac,
    /// The hop limit hosts should use (0: unspecified).
    pub hop_limit: u8,
    /// Seconds; 0: not a default router.
    pub router_lifetime: u16,
    /// Milliseconds between a host's Neighbor Solicitations, its DAD's among them (0:
    /// unspecified, the host keeps its own, 1 s by default).
    pub retrans_timer: u32,
    pub prefixes: Vec<PrefixInfo>,
    pub mtu: Option<u32>,
    /// Lifetime in seconds and recursive DNS servers (RFC 8106); omitted when there are none.
    pub rdnss: Option<(u32, Vec<Ipv6Addr>)>,
    /// Lifetime in seconds and DNS search domains (RFC 8106). Names that are not valid host
    /// names (letters, digits, '-' and '_' in labels of 1 to 63 octets, 253 at most) are left
    /// out, and the option with them when none is left.
    pub dnssl: Option<(u32, Vec<String>)>,
}

/// A Prefix Information option (RFC 4861 4.6.2). Bits past `len` (at most 128) are sent as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub on_link: bool,
    pub autonomous: bool,
    /// Seconds (0xffffffff: infinity).
    pub valid: u32,
    pub preferred: u32,
}

/// The flags of a Neighbor Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NaFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

impl RouterAdvertisement {
    pub fn encode(&self, destination: Ipv6Addr) -> Vec<u8> {
        let mut icmp = vec![ROUTER_ADVERTISEMENT, 0, 0, 0, self.hop_limit, 0];
        icmp.extend(self.router_lifetime.to_be_bytes());
        icmp.extend([0; 4]); // reachable time
        icmp.extend(self.retrans_timer.to_be_bytes());
        push_link_layer_option(&mut icmp, OPTION_SOURCE_LINK_LAYER, self.source_mac);
        if let Some(mtu) = self.mtu {
            icmp.extend([OPTION_MTU, 1, 0, 0]);
            icmp.extend(mtu.to_be_bytes());
        }
        for prefix in &self.prefixes {
            push_prefix(&mut icmp, prefix);
        }
        if let Some((lifetime, servers)) = &self.rdnss {
            // 8 octets of header and 16 per server, within the longest option.
            let servers = &servers[..servers.len().min((MAX_OPTION_LEN - 8) / 16)];
            if !servers.is_empty() {
                push_lifetime_option(
                    &mut icmp,
                    OPTION_RDNSS,
                    *lifetime,
                    &servers.iter().flat_map(|server| server.octets()).collect::<Vec<u8>>(),
                );
            }
        }
        if let Some((lifetime, domains)) = &self.dnssl {
            let names = domain_names(domains);
            if !names.is_empty() {
                push_lifetime_option(&mut icmp, OPTION_DNSSL, *lifetime, &names);
            }
        }
        packet(self.source, destination, icmp)
    }
}

/// A Neighbor Solicitation for `target` to its solicited-node group. From `::` it is a
/// Duplicate Address Detection probe (RFC 4862 5.4.2) and carries no link-layer address, so
/// `source_mac` is then left out.
pub fn neighbor_solicitation(source: Ipv6Addr, target: Ipv6Addr, source_mac: Option<Mac>) -> Vec<u8> {
    let source_mac = source_mac.filter(|_| !source.is_unspecified());
    solicitation(source, solicited_node(target), target, source_mac)
}

/// A Neighbor Solicitation sent to `target` itself: a reachability probe (RFC 4861 7.3.3).
pub fn unicast_neighbor_solicitation(source: Ipv6Addr, target: Ipv6Addr, source_mac: Mac) -> Vec<u8> {
    solicitation(source, target, target, Some(source_mac))
}

fn solicitation(source: Ipv6Addr, destination: Ipv6Addr, target: Ipv6Addr, mac: Option<Mac>) -> Vec<u8> {
    let mut icmp = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend(target.octets());
    if let Some(mac) = mac {
        push_link_layer_option(&mut icmp, OPTION_SOURCE_LINK_LAYER, mac);
    }
    packet(source, destination, icmp)
}

/// A Neighbor Advertisement for `target` at `target_mac` (in a Target Link-Layer Address option).
pub fn neighbor_advertisement(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    target: Ipv6Addr,
    target_mac: Mac,
    flags: NaFlags,
) -> Vec<u8> {
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    let flags = flag(flags.router, FLAG_ROUTER)
        | flag(flags.solicited, FLAG_SOLICITED)
        | flag(flags.override_, FLAG_OVERRIDE);
    let mut icmp = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0];
    icmp.extend(target.octets());
    push_link_layer_option(&mut icmp, OPTION_TARGET_LINK_LAYER, target_mac);
    packet(source, destination, icmp)
}

/// The IPv6 header before `icmp`, whose checksum field (octets 2 and 3) is filled in.
fn packet(source: Ipv6Addr, destination: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let sum = checksum(source, destination, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let payload_len = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    let mut packet = Vec::with_capacity(HEADER_LEN + icmp.len());
    packet.extend([0x60, 0, 0, 0]);
    packet.extend(payload_len.to_be_bytes());
    packet.extend([NEXT_HEADER_ICMPV6, 255]);
    packet.extend(source.octets());
    packet.extend(destination.octets());
    packet.extend(icmp);
    packet
}

fn push_link_layer_option(icmp: &mut Vec<u8>, kind: u8, mac: Mac) {
    icmp.extend([kind, 1]);
    icmp.extend(mac.0);
}

fn push_prefix(icmp: &mut Vec<u8>, prefix: &PrefixInfo) {
    let len = prefix.len.min(128);
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    let mut flags = 0;
    if prefix.on_link {
        flags |= PREFIX_ON_LINK;
    }
    if prefix.autonomous {
        flags |= PREFIX_AUTONOMOUS;
    }
    icmp.extend([OPTION_PREFIX_INFORMATION, 4, len, flags]);
    icmp.extend(prefix.valid.to_be_bytes());
    icmp.extend(prefix.preferred.to_be_bytes());
    icmp.extend([0; 4]);
    icmp.extend((u128::from(prefix.prefix) & mask).to_be_bytes());
}

/// An RFC 8106 option: type, length, 2 reserved octets, the lifetime, then `body` padded
/// with zeros to a multiple of 8 octets (`body` fits in the longest option).
fn push_lifetime_option(icmp: &mut Vec<u8>, kind: u8, lifetime: u32, body: &[u8]) {
    let len = (8 + body.len()).div_ceil(8) * 8;
    icmp.extend([kind, (len / 8) as u8, 0, 0]);
    icmp.extend(lifetime.to_be_bytes());
    icmp.extend(body);
    icmp.resize(icmp.len() + len - 8 - body.len(), 0);
}

/// The valid names among `domains` in DNS wire format (RFC 1035 3.1), as many as fit in one
/// option. A trailing dot (the root) is allowed.
fn domain_names(domains: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for domain in domains {
        let name = domain.strip_suffix('.').unwrap_or(domain);
        let valid_label = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            continue;
        }
        // Each label's length octet and the root's zero octet: one more octet than the text.
        if 8 + wire.len() + name.len() + 2 > MAX_OPTION_LEN {
            break;
        }
        for label in name.split('.') {
            wire.push(label.len() as u8);
            wire.extend(label.as_bytes());
        }
        wire.push(0);
    }
    wire
}

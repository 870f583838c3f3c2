//! The uplink's IPv6 as vmnetd uses it: a /64 prefix the guests autoconfigure in.

use std::fmt;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

/// The only prefix length stateless autoconfiguration works with (RFC 4862 over Ethernet).
pub const SLAAC_PREFIX_LEN: u8 = 64;

/// An IPv6 prefix, stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix6 {
    network: Ipv6Addr,
    len: u8,
}

impl Prefix6 {
    /// The prefix of `address/len`; `None` for a length above 128.
    pub fn containing(address: Ipv6Addr, len: u8) -> Option<Self> {
        let mask = Self::mask(len)?;
        Some(Self { network: Ipv6Addr::from(u128::from(address) & mask), len })
    }

    fn mask(len: u8) -> Option<u128> {
        match len {
            0 => Some(0),
            1..=128 => Some(u128::MAX << (128 - u32::from(len))),
            _ => None,
        }
    }

    pub fn network(&self) -> Ipv6Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn contains(&self, address: Ipv6Addr) -> bool {
        Self::containing(address, self.len) == Some(*self)
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl TryFrom<String> for Prefix6 {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let (address, len) = text.split_once('/').ok_or_else(|| format!("{text:?} is not in CIDR form"))?;
        let address: Ipv6Addr = address.parse().map_err(|_| format!("bad address in {text:?}"))?;
        let len: u8 = len.parse().map_err(|_| format!("bad prefix length in {text:?}"))?;
        Self::containing(address, len).ok_or_else(|| format!("bad prefix length in {text:?}"))
    }
}

impl From<Prefix6> for String {
    fn from(prefix: Prefix6) -> String {
        prefix.to_string()
    }
}

/// The uplink's IPv6, when it has an address in a /64 guests can share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink6 {
    pub prefix: Prefix6,
    /// The host's own address in `prefix`.
    pub address: Ipv6Addr,
    /// The default router (usually link-local), if any.
    pub gateway: Option<Ipv6Addr>,
    pub nameservers: Vec<Ipv6Addr>,
}

/// Whether a guest may be routed at `address`: a unicast address that is neither link-local,
/// loopback nor unspecified (global or unique-local).
pub fn is_routable(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || first & 0xffc0 == 0xfe80
        || address.to_ipv4_mapped().is_some())
}

/// The uplink's IPv6 from its global addresses (`(address, prefix length)`, preferred ones
/// first): the first in a /64.
pub fn from_addresses(
    addresses: impl IntoIterator<Item = (Ipv6Addr, u8)>,
    gateway: Option<Ipv6Addr>,
    nameservers: Vec<Ipv6Addr>,
) -> Option<Uplink6> {
    let (address, len) =
        addresses.into_iter().find(|&(address, len)| len == SLAAC_PREFIX_LEN && is_routable(address))?;
    Some(Uplink6 { prefix: Prefix6::containing(address, len)?, address, gateway, nameservers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn prefixes_keep_the_network_bits_only() {
        let prefix = Prefix6::containing(ip("2001:db8:1::5:6"), 64).unwrap();
        assert_eq!(prefix.to_string(), "2001:db8:1::/64");
        assert!(prefix.contains(ip("2001:db8:1::ffff")));
        assert!(!prefix.contains(ip("2001:db8:2::1")));
        assert!(Prefix6::containing(ip("::"), 129).is_none());
        assert_eq!(Prefix6::try_from("2001:db8:2::9/64".to_string()).unwrap().to_string(), "2001:db8:2::/64");
        assert!(Prefix6::try_from("2001:db8:2::9".to_string()).is_err());
    }

    #[test]
    fn only_a_global_or_unique_local_address_in_a_64_makes_an_ipv6_uplink() {
        assert!(from_addresses([(ip("fe80::1"), 64), (ip("2001:db8:1::7"), 128)], None, vec![]).is_none());
        let up =
            from_addresses([(ip("2001:db8:1::7"), 128), (ip("2001:db8:1::8"), 64)], None, vec![]).unwrap();
        assert_eq!((up.address, up.prefix.to_string()), (ip("2001:db8:1::8"), "2001:db8:1::/64".into()));
        for bad in ["::", "::1", "ff02::1", "fe80::1", "::ffff:198.51.100.1"] {
            assert!(!is_routable(ip(bad)), "{bad}");
        }
        assert!(is_routable(ip("fd00::1")) && is_routable(ip("2001:db8::1")));
    }
}

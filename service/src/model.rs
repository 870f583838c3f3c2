//! The service's view of the world: the uplink it follows and the guests it serves.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use crate::model6::{Prefix6, Uplink6};

/// An IPv4 subnet, always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Subnet {
    /// The subnet of `address/prefix_len`; `None` for a prefix longer than 32.
    pub fn containing(address: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        let mask = Self::mask_bits(prefix_len)?;
        Some(Self { network: Ipv4Addr::from(u32::from(address) & mask), prefix_len })
    }

    fn mask_bits(prefix_len: u8) -> Option<u32> {
        match prefix_len {
            0 => Some(0),
            1..=32 => Some(u32::MAX << (32 - prefix_len)),
            _ => None,
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix_len).unwrap_or(u32::MAX))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !u32::from(self.netmask()))
    }

    /// Number of addresses in the subnet, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        Self::containing(address, self.prefix_len) == Some(*self)
    }

    /// The address `number` places after the network address, if inside the subnet.
    pub fn host(&self, number: u32) -> Option<Ipv4Addr> {
        (u64::from(number) < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + number))
    }

    /// How many places `address` lies after the network address, if inside the subnet.
    pub fn host_number(&self, address: Ipv4Addr) -> Option<u32> {
        self.contains(address).then(|| u32::from(address) - u32::from(self.network))
    }

    /// Whether `number` names an address a guest may use: not the network address and, on
    /// subnets with a broadcast address (/30 and larger), not the broadcast address.
    pub fn is_assignable(&self, number: u32) -> bool {
        let size = self.size();
        if size <= 2 {
            return false; // a /31 or /32 has no room for a guest beside the host
        }
        number != 0 && u64::from(number) < size - 1
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let (addr, len) = text.split_once('/').ok_or_else(|| format!("{text:?} is not in CIDR form"))?;
        let address: Ipv4Addr = addr.parse().map_err(|_| format!("bad address in {text:?}"))?;
        let prefix_len: u8 = len.parse().map_err(|_| format!("bad prefix in {text:?}"))?;
        Self::containing(address, prefix_len).ok_or_else(|| format!("bad prefix in {text:?}"))
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        subnet.to_string()
    }
}

/// The uplink as last read from its source: where guests are homed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    pub nameservers: Vec<Ipv4Addr>,
    /// DNS search domains, most specific first.
    pub domains: Vec<String>,
    /// The network's identity as the source knows it (NetworkManager: the connection profile's
    /// UUID); another one means another network even in the same subnet.
    pub connection: Option<String>,
    /// Its IPv6, when it has an address in a /64 (and IPv6 is not turned off).
    pub ipv6: Option<Uplink6>,
}

impl Uplink {
    pub fn subnet(&self) -> Subnet {
        // prefix_len comes from the kernel or NM and is ≤ 32; fall back to a host route.
        Subnet::containing(self.address, self.prefix_len)
            .unwrap_or(Subnet { network: self.address, prefix_len: 32 })
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{} is not a MAC address like 52:54:00:12:34:56", crate::names::quoted(text));
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            // from_str_radix alone would also take a sign ("+f").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(bytes))
    }
}

impl TryFrom<String> for Mac {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Mac> for String {
    fn from(mac: Mac) -> String {
        mac.to_string()
    }
}

/// A guest as vmnetd keeps it (and persists it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    pub name: String,
    pub tap: String,
    pub mac: Mac,
    pub owner: u32,
    /// Path of the guest's QMP socket, if it registered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qmp: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_arithmetic() {
        let s = Subnet::containing("198.51.100.77".parse().unwrap(), 24).unwrap();
        assert_eq!(s.to_string(), "198.51.100.0/24");
        assert_eq!(s.host(200), Some("198.51.100.200".parse().unwrap()));
        assert_eq!(s.host(256), None);
        assert_eq!(s.host_number("198.51.100.9".parse().unwrap()), Some(9));
        assert_eq!(s.host_number("203.0.113.9".parse().unwrap()), None);
        assert!(!s.is_assignable(0) && !s.is_assignable(255) && s.is_assignable(254));
        assert!(Subnet::containing("1.2.3.4".parse().unwrap(), 33).is_none());
        let tiny = Subnet::containing("1.2.3.4".parse().unwrap(), 31).unwrap();
        assert!(!tiny.is_assignable(1));
    }

    #[test]
    fn subnet_round_trips_as_text() {
        let s: Subnet = String::from("203.0.113.9/24").try_into().unwrap();
        assert_eq!(String::from(s), "203.0.113.0/24");
        assert!(Subnet::try_from(String::from("203.0.113.9")).is_err());
    }

    #[test]
    fn mac_parsing() {
        let mac: Mac = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert!(mac.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<Mac>().unwrap().is_unicast());
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:00", "5:54:00:ab:cd:0f", "zz:54:00:ab:cd:0f"] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}

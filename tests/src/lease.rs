//! DHCP leases as the test guests report them. Both kinds print the same text after their
//! prefix (`dhcp ` from tapguest, `GUEST-DHCP ` on a QEMU guest's console):
//!
//! ```text
//! bound 198.51.100.200/24 via 198.51.100.10 dns 198.51.100.1,198.51.100.3 domain example.test mtu 1500 lease 90 server 198.51.100.10
//! ```
//!
//! `bound` or `renew`, then the address, then key-value pairs; `-` marks an option the server
//! did not send. Other events are a single word: `deconfig`, `leasefail`, `nak`.

use crate::cmd::error;
use std::io;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `bound` (a new lease) or `renew` (the same lease, extended).
    pub event: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub mtu: Option<u32>,
    /// Lease time in seconds.
    pub lease: Option<u32>,
    /// The DHCP server identifier.
    pub server: Option<Ipv4Addr>,
}

impl Lease {
    /// `address/prefix`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }

    /// Parses the text after the prefix (see the module doc).
    pub fn parse(text: &str) -> io::Result<Lease> {
        let bad = |what: &str| error(format!("bad DHCP event ({what}): {text}"));
        let mut words = text.split_whitespace();
        let event = words.next().filter(|e| ["bound", "renew"].contains(e)).ok_or_else(|| bad("event"))?;
        let (address, prefix) = words.next().and_then(|c| c.split_once('/')).ok_or_else(|| bad("address"))?;
        let mut lease = Lease {
            event: event.to_string(),
            address: address.parse().map_err(|_| bad("address"))?,
            prefix: prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| bad("prefix"))?,
            router: None,
            dns: Vec::new(),
            domain: None,
            mtu: None,
            lease: None,
            server: None,
        };
        while let Some(key) = words.next() {
            let value = words.next().ok_or_else(|| bad(key))?;
            if value == "-" {
                continue;
            }
            let ip = |v: &str| v.parse::<Ipv4Addr>().map_err(|_| bad(key));
            let number = |v: &str| v.parse::<u32>().map_err(|_| bad(key));
            match key {
                "via" => lease.router = Some(ip(value)?),
                "dns" => lease.dns = value.split(',').map(ip).collect::<io::Result<_>>()?,
                "domain" => lease.domain = Some(value.to_string()),
                "mtu" => lease.mtu = Some(number(value)?),
                "lease" => lease.lease = Some(number(value)?),
                "server" => lease.server = Some(ip(value)?),
                _ => {} // newer fields: ignored
            }
        }
        Ok(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_lease() {
        let text = "bound 198.51.100.200/24 via 198.51.100.10 dns 198.51.100.1,198.51.100.3 \
                    domain example.test mtu 1500 lease 90 server 198.51.100.10";
        let lease = Lease::parse(text).expect("parse");
        assert_eq!(lease.cidr(), "198.51.100.200/24");
        assert_eq!(lease.router, Some(Ipv4Addr::new(198, 51, 100, 10)));
        assert_eq!(lease.dns, [Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 3)]);
        assert_eq!(lease.domain.as_deref(), Some("example.test"));
        assert_eq!((lease.mtu, lease.lease), (Some(1500), Some(90)));
        assert_eq!(lease.server, Some(Ipv4Addr::new(198, 51, 100, 10)));
    }

    #[test]
    fn dashes_are_missing_options_and_garbage_is_an_error() {
        let lease =
            Lease::parse("renew 203.0.113.5/32 via - dns - domain - mtu - lease - server -").expect("parse");
        assert_eq!((lease.event.as_str(), lease.prefix, lease.router), ("renew", 32, None));
        assert!(lease.dns.is_empty() && lease.domain.is_none() && lease.mtu.is_none());
        for bad in [
            "deconfig",
            "bound 1.2.3.4",
            "bound 1.2.3.4/33",
            "bound 1.2.3.4/24 via x",
            "bound 1.2.3.4/24 mtu",
        ] {
            assert!(Lease::parse(bad).is_err(), "{bad}");
        }
    }
}

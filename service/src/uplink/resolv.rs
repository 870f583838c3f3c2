//! Nameservers and search domains from a resolv.conf file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<Ipv4Addr>,
    pub nameservers6: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
}

/// The `nameserver` lines (IPv4 and IPv6 apart; a zone index makes a line unusable) and the `search` (or `domain`) domains of a resolv.conf; none
/// when the file is missing or unreadable.
pub fn read(path: &Path) -> Resolv {
    std::fs::read_to_string(path).map(|text| parse(&text)).unwrap_or_default()
}

fn parse(text: &str) -> Resolv {
    let mut resolv = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => match words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                Some(IpAddr::V4(server)) => resolv.nameservers.push(server),
                Some(IpAddr::V6(server)) => resolv.nameservers6.push(server),
                None => {}
            },
            // The last of `search` and `domain` wins, as in the resolver.
            Some("search" | "domain") => resolv.domains = words.map(str::to_owned).collect(),
            _ => {}
        }
    }
    resolv
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_nameservers_and_search_domains() {
        let text = "# x\nsearch lan example.test\nnameserver 198.51.100.1\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver  203.0.113.53 \n";
        let resolv = super::parse(text);
        assert_eq!(
            resolv.nameservers,
            ["198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap(), "203.0.113.53".parse().unwrap()]
        );
        assert_eq!(resolv.nameservers6, ["2001:db8::53".parse::<std::net::Ipv6Addr>().unwrap()]);
        assert_eq!(resolv.domains, ["lan", "example.test"]);
    }
}

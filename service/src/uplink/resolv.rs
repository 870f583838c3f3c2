//! Nameservers and search domains from a resolv.conf file.

use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<Ipv4Addr>,
    pub domains: Vec<String>,
}

/// The IPv4 `nameserver` lines and the `search` (or `domain`) domains of a resolv.conf; none
/// when the file is missing or unreadable.
pub fn read(path: &Path) -> Resolv {
    std::fs::read_to_string(path).map(|text| parse(&text)).unwrap_or_default()
}

fn parse(text: &str) -> Resolv {
    let mut resolv = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                resolv.nameservers.extend(words.next().and_then(|w| w.parse::<Ipv4Addr>().ok()))
            }
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
    fn parses_ipv4_nameservers_and_search_domains() {
        let text = "# x\nsearch lan example.test\nnameserver 198.51.100.1\nnameserver ::1\nnameserver  203.0.113.53 \n";
        let resolv = super::parse(text);
        assert_eq!(
            resolv.nameservers,
            ["198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap(), "203.0.113.53".parse().unwrap()]
        );
        assert_eq!(resolv.domains, ["lan", "example.test"]);
    }
}

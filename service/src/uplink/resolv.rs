//! Nameservers from a resolv.conf file.

use std::net::Ipv4Addr;
use std::path::Path;

/// The IPv4 `nameserver` lines of a resolv.conf; none when the file is missing or unreadable.
pub fn nameservers(path: &Path) -> Vec<Ipv4Addr> {
    std::fs::read_to_string(path).map(|text| parse(&text)).unwrap_or_default()
}

fn parse(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_ipv4_nameservers_only() {
        let text = "# x\nsearch lan\nnameserver 198.51.100.1\nnameserver ::1\nnameserver  203.0.113.53 \n";
        assert_eq!(
            super::parse(text),
            ["198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap(), "203.0.113.53".parse().unwrap()]
        );
    }
}

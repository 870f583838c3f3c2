//! `/etc/vmnet/vmnetd.toml`. Every key is optional except what the chosen uplink source needs;
//! unknown keys and bad values are refused at start with a message naming the key.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cli::DEFAULT_CONFIG;
use serde::Deserialize;

use crate::address_book::Pool;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub uplink: UplinkConfig,
    pub pool: Pool,
    pub dhcp: DhcpConfig,
    pub arp: ArpConfig,
    pub limits: LimitsConfig,
    pub ipv6: Ipv6Config,
}

/// Guests on the uplink's IPv6 prefix: Router Advertisements on their taps, their addresses
/// learned and defended on the uplink, /128 routes and proxy NDP entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ipv6Config {
    pub enabled: bool,
    /// How long Duplicate Address Detection on the uplink waits for a LAN host that holds a
    /// guest's new address before the address is routed; 0 turns it off. It stays under the
    /// guests' own DAD time (750 ms, as advertised) so a conflict reaches the guest in time.
    pub dad_ms: u32,
    /// A learned address the guest stops answering for is forgotten (its route and proxy
    /// entry removed) after this long.
    pub forget_unused_seconds: u32,
}

impl Default for Ipv6Config {
    fn default() -> Self {
        Self { enabled: true, dad_ms: 400, forget_unused_seconds: 300 }
    }
}

/// What one user may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Guests one owner may have (root's are not counted); 0: no limit.
    pub guests_per_owner: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { guests_per_owner: 32 }
    }
}

/// The DHCP server vmnetd runs on every tap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhcpConfig {
    pub enabled: bool,
    /// Lease time handed to guests. Guests renew after half of it, and a guest without a QMP
    /// socket learns about a roam at its next renewal.
    pub lease_seconds: u32,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        Self { enabled: true, lease_seconds: 90 }
    }
}

/// Conflict detection on the uplink (RFC 5227, with shorter timings).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArpConfig {
    /// How long to listen for an answer to the probes of an address before giving it to a
    /// guest; 0 turns probing off.
    pub probe_ms: u32,
    /// Announce (gratuitous ARP) each address when it is given.
    pub announce: bool,
}

impl Default for ArpConfig {
    fn default() -> Self {
        Self { probe_ms: 200, announce: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Follow NetworkManager's active connection over D-Bus.
    #[default]
    NetworkManager,
    /// Follow one interface's IPv4 address through rtnetlink.
    Kernel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    pub source: SourceKind,
    /// The uplink interface: required for "kernel", an optional pin for "networkmanager".
    pub interface: Option<String>,
    /// NetworkManager connection types to follow.
    pub connection_types: Vec<String>,
    /// DNS servers handed to guests; empty: from the source (NM) or `resolv_conf`.
    pub nameservers: Vec<Ipv4Addr>,
    /// DNS search domains handed to guests; empty: from the source (NM) or `resolv_conf`.
    pub domains: Vec<String>,
    /// Where the "kernel" source reads nameservers and domains from when they are not set.
    pub resolv_conf: PathBuf,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::default(),
            interface: None,
            connection_types: vec!["802-11-wireless".into()],
            nameservers: Vec::new(),
            domains: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and checks `path`. A missing file at the default path means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG) => {
                String::new()
            }
            Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.into(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let up = &self.uplink;
        if up.source == SourceKind::Kernel && up.interface.is_none() {
            return Err("uplink.interface is required when uplink.source = \"kernel\"".into());
        }
        if let Some(name) = &up.interface {
            // The kernel's rule (dev_valid_name), and no control characters.
            let bad_char = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
            if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.contains(bad_char) {
                return Err(format!("uplink.interface: {name:?} is not an interface name"));
            }
        }
        if up.connection_types.is_empty() {
            return Err("uplink.connection_types must name at least one connection type".into());
        }
        if let Some(bad) = up.domains.iter().find(|d| !is_domain_name(d)) {
            return Err(format!("uplink.domains: {bad:?} is not a domain name"));
        }
        if !(10..=86_400).contains(&self.dhcp.lease_seconds) {
            return Err(format!(
                "dhcp.lease_seconds ({}) must be between 10 and 86400",
                self.dhcp.lease_seconds
            ));
        }
        if self.arp.probe_ms > 10_000 {
            return Err(format!("arp.probe_ms ({}) must be at most 10000", self.arp.probe_ms));
        }
        if self.ipv6.dad_ms > 600 {
            return Err(format!(
                "ipv6.dad_ms ({}) must be at most 600: guests end their own DAD after 750 ms",
                self.ipv6.dad_ms
            ));
        }
        if !(3..=86_400).contains(&self.ipv6.forget_unused_seconds) {
            return Err(format!(
                "ipv6.forget_unused_seconds ({}) must be between 3 and 86400",
                self.ipv6.forget_unused_seconds
            ));
        }
        let pool = &self.pool;
        if pool.first == 0 || pool.last == 0 || pool.first == -1 || pool.last == -1 {
            return Err("pool.first and pool.last cannot be the network (0) or broadcast (-1) address".into());
        }
        if pool.first.signum() == pool.last.signum() && pool.first > pool.last {
            return Err(format!("pool.first ({}) is after pool.last ({})", pool.first, pool.last));
        }
        Ok(())
    }
}

fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.uplink.source, SourceKind::NetworkManager);
        assert_eq!(c.uplink.connection_types, ["802-11-wireless"]);
        assert_eq!(c.pool, Pool::default());
    }

    #[test]
    fn shipped_example_is_valid_and_all_defaults() {
        let example = Config::parse(include_str!("../../packaging/vmnetd.toml")).unwrap();
        let defaults = Config::parse("").unwrap();
        assert_eq!(example.uplink.source, defaults.uplink.source);
        assert_eq!(example.uplink.connection_types, defaults.uplink.connection_types);
        assert_eq!(example.pool, defaults.pool);
        assert_eq!(example.dhcp, defaults.dhcp);
        assert_eq!(example.arp, defaults.arp);
        assert_eq!(example.limits, defaults.limits);
        assert_eq!(example.ipv6, defaults.ipv6);
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            r#"
            [uplink]
            source = "kernel"
            interface = "wlan0"
            nameservers = ["198.51.100.1"]
            [pool]
            first = -20
            last = -2
            "#,
        )
        .unwrap();
        assert_eq!(c.uplink.interface.as_deref(), Some("wlan0"));
        assert_eq!(c.pool, Pool { first: -20, last: -2 });
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[uplink]\nsource = \"kernel\"", "uplink.interface"),
            ("[uplink]\nsource = \"carrier-pigeon\"", "source"),
            ("[uplink]\nbogus = 1", "bogus"),
            ("[pol]\nfirst = 1", "pol"),
            ("[pool]\nfirst = 10\nlast = 5", "pool.first"),
            ("[pool]\nfirst = 0\nlast = 5", "pool.first"),
            ("[pool]\nfirst = \"x\"", "first"),
            ("[uplink]\nnameservers = [\"dns.example\"]", "nameservers"),
            ("[uplink]\ninterface = \"a/b\"", "uplink.interface"),
            ("[uplink]\ninterface = \"..\"", "uplink.interface"),
            ("[uplink]\ninterface = \"wl\\tan0\"", "uplink.interface"),
            ("[uplink]\ninterface = \"wl\\u0000\"", "uplink.interface"),
            ("[uplink]\ninterface = \"a-very-long-name0\"", "uplink.interface"),
            ("[uplink]\nconnection_types = []", "uplink.connection_types"),
            ("[uplink]\ndomains = [\"bad domain\"]", "uplink.domains"),
            ("[dhcp]\nlease_seconds = 5", "dhcp.lease_seconds"),
            ("[dhcp]\nleases = 5", "leases"),
            ("[arp]\nprobe_ms = 100000", "arp.probe_ms"),
            ("[ipv6]\ndad_ms = 700", "ipv6.dad_ms"),
            ("[ipv6]\nforget_unused_seconds = 1", "ipv6.forget_unused_seconds"),
            ("[ipv6]\nenable = false", "enable"),
        ];
        for (text, key) in cases {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }
}

//! IPv6 addresses as the kernel reports them (`ip -6 -j addr`, `ip -6 -j route`), and /N
//! prefixes, for the IPv6 helpers of guests and the NM world.

use crate::cmd::{error, in_netns, ip, output, wait_until};
use serde_json::Value;
use std::fmt;
use std::io;
use std::net::Ipv6Addr;
use std::process::Stdio;
use std::time::Duration;

/// An IPv6 prefix such as 2001:db8:1::/64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix6 {
    pub network: Ipv6Addr,
    pub len: u8,
}

impl Prefix6 {
    /// Parses "2001:db8:1::/64"; host bits must be zero.
    pub fn parse(text: &str) -> io::Result<Prefix6> {
        let bad = || error(format!("not an IPv6 prefix: {text:?}"));
        let (addr, len) = text.trim().split_once('/').ok_or_else(bad)?;
        let network: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let prefix = Prefix6 { network, len };
        if len > 128 || prefix.mask() & u128::from(network) != u128::from(network) {
            return Err(bad());
        }
        Ok(prefix)
    }

    fn mask(self) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0)
    }

    /// Whether `addr` lies in this prefix.
    pub fn contains(self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & self.mask() == u128::from(self.network)
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// One IPv6 address of an interface, with the kernel's flags. Lifetimes in seconds, `None` for
/// "forever".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr6 {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// "global", "link" or "host".
    pub scope: String,
    /// DAD still runs.
    pub tentative: bool,
    /// DAD found a duplicate: the address is not used.
    pub dadfailed: bool,
    /// Preferred lifetime 0: kept for existing connections only.
    pub deprecated: bool,
    /// A privacy (RFC 8981) address.
    pub temporary: bool,
    /// Temporary addresses are made from this one's prefix (kernel 6.18 sets it on every
    /// SLAAC address, whatever `use_tempaddr`).
    pub mngtmpaddr: bool,
    /// Has lifetimes (SLAAC, DHCPv6), as opposed to a static address.
    pub dynamic: bool,
    pub valid_lifetime: Option<u32>,
    pub preferred_lifetime: Option<u32>,
}

impl Addr6 {
    /// Usable as a source: DAD is done and passed, and it is not deprecated.
    pub fn usable(&self) -> bool {
        !self.tentative && !self.dadfailed && !self.deprecated
    }

    /// Whether the address lies in `prefix`.
    pub fn in_prefix(&self, prefix: Prefix6) -> bool {
        prefix.contains(self.address)
    }
}

impl fmt::Display for Addr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)?;
        for (set, name) in [
            (self.temporary, "temporary"),
            (self.tentative, "tentative"),
            (self.dadfailed, "dadfailed"),
            (self.deprecated, "deprecated"),
        ] {
            if set {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

fn lifetime(info: &Value, key: &str) -> Option<u32> {
    let secs = u32::try_from(info.get(key)?.as_u64()?).ok()?;
    (secs != u32::MAX).then_some(secs)
}

/// The addresses in the output of `ip -6 -j addr show ...`.
pub fn parse_addresses(json: &str) -> io::Result<Vec<Addr6>> {
    let links: Value =
        serde_json::from_str(json).map_err(|e| error(format!("bad `ip -j addr` output: {e}: {json}")))?;
    let mut out = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        for info in link.get("addr_info").and_then(Value::as_array).into_iter().flatten() {
            if info.get("family").and_then(Value::as_str) != Some("inet6") {
                continue;
            }
            let text = info.get("local").and_then(Value::as_str).unwrap_or_default();
            let address = text.parse().map_err(|_| error(format!("bad address {text:?} in {json}")))?;
            let flag = |key: &str| info.get(key).and_then(Value::as_bool).unwrap_or(false);
            out.push(Addr6 {
                address,
                prefix_len: info.get("prefixlen").and_then(Value::as_u64).map_or(128, |n| n.min(128) as u8),
                scope: info.get("scope").and_then(Value::as_str).unwrap_or_default().to_string(),
                tentative: flag("tentative"),
                dadfailed: flag("dadfailed"),
                deprecated: flag("deprecated"),
                temporary: flag("temporary"),
                mngtmpaddr: flag("mngtmpaddr"),
                dynamic: flag("dynamic"),
                valid_lifetime: lifetime(info, "valid_life_time"),
                preferred_lifetime: lifetime(info, "preferred_life_time"),
            });
        }
    }
    Ok(out)
}

/// The IPv6 addresses of `dev` in netns `ns` with scope `scope` ("global", "link").
pub fn addresses(ns: &str, dev: &str, scope: &str) -> io::Result<Vec<Addr6>> {
    parse_addresses(&ip(ns, &["-6", "-j", "addr", "show", "dev", dev, "scope", scope])?)
}

/// The gateways of the IPv6 default routes in netns `ns` (on any device), in the kernel's order.
pub fn default_routers(ns: &str) -> io::Result<Vec<Ipv6Addr>> {
    let json = ip(ns, &["-6", "-j", "route", "show", "default"])?;
    let routes: Value =
        serde_json::from_str(&json).map_err(|e| error(format!("bad `ip -j route` output: {e}: {json}")))?;
    let gateways = routes.as_array().into_iter().flatten().filter_map(|r| r.get("gateway")?.as_str());
    Ok(gateways.filter_map(|g| g.parse().ok()).collect())
}

/// `busybox ping -6` from netns `ns` (from `source` if given) to `addr`, once a try, for up to
/// about 3 s.
pub fn ping(ns: &str, source: Option<&str>, addr: &str) -> bool {
    let mut argv = vec!["busybox", "ping", "-6", "-c1", "-W1", "-q"];
    if let Some(source) = source {
        argv.extend(["-I", source]);
    }
    argv.push(addr);
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        in_netns(ns, &argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `socat` over TCP6 from netns `ns` (bound to `source` if given) to `[addr]:port`: what the
/// server sent (trimmed), None if that failed or nothing came within 3 s.
pub fn tcp(ns: &str, source: Option<&str>, addr: &str, port: u16) -> Option<String> {
    let mut target = format!("TCP6:[{addr}]:{port},connect-timeout=3");
    if let Some(source) = source {
        target.push_str(&format!(",bind=[{source}]"));
    }
    let out = output(in_netns(ns, &["socat", "-T3", "-", &target]).stdin(Stdio::null())).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

impl crate::World {
    /// A TCP server in netns `ns` on `[bind]:port` (IPv6 only) that sends `reply` to each
    /// connection; waits until it listens. Stopped on Drop.
    pub fn start_tcp_server6(&self, ns: &str, bind: Ipv6Addr, port: u16, reply: &str) -> io::Result<()> {
        let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=1,bind=[{bind}]");
        let reply = format!("SYSTEM:echo {reply}");
        self.spawn_in(ns, &format!("tcp6-{ns}-{port}"), &["socat", &listen, &reply])?;
        crate::guest::wait_listening(ns, port, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_contain() {
        let home = Prefix6::parse("2001:db8:1::/64").unwrap();
        assert!(home.contains("2001:db8:1:0:8cc1:98ff:fe36:a264".parse().unwrap()));
        assert!(!home.contains("2001:db8:2::1".parse().unwrap()));
        assert_eq!(home.to_string(), "2001:db8:1::/64");
        assert!(Prefix6::parse("::/0").unwrap().contains(Ipv6Addr::LOCALHOST));
        for bad in ["2001:db8:1::1/64", "2001:db8::/129", "2001:db8::", "x/64", "2001:db8::/x"] {
            assert!(Prefix6::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_parse_with_flags() {
        let json = r#"[{"ifname":"v1","addr_info":[
            {"family":"inet6","local":"2001:db8:1:0:e385:a750:8f7c:87f2","prefixlen":64,"scope":"global",
             "temporary":true,"tentative":true,"dynamic":true,"valid_life_time":7199,"preferred_life_time":0,
             "deprecated":true},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link",
             "valid_life_time":4294967295,"preferred_life_time":4294967295},
            {"family":"inet","local":"198.51.100.2","prefixlen":24}]}]"#;
        let addrs = parse_addresses(json).unwrap();
        assert_eq!(addrs.len(), 2);
        let temp = &addrs[0];
        assert!(temp.temporary && temp.tentative && temp.deprecated && temp.dynamic && !temp.dadfailed);
        assert_eq!((temp.valid_lifetime, temp.preferred_lifetime), (Some(7199), Some(0)));
        assert!(!temp.usable());
        assert_eq!(temp.to_string(), "2001:db8:1:0:e385:a750:8f7c:87f2/64 temporary tentative deprecated");
        assert_eq!((addrs[1].scope.as_str(), addrs[1].valid_lifetime), ("link", None));
        assert!(addrs[1].usable());
        assert!(parse_addresses("not json").is_err());
        assert!(parse_addresses(r#"[{"addr_info":[{"family":"inet6","local":"zz"}]}]"#).is_err());
    }
}

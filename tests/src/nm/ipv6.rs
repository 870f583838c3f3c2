//! The LANs' IPv6 side (with [`super::NmOptions::ipv6`]): each `br0` also has a /64 with the
//! router at `::1` and the LAN client at `::2`, and dnsmasq sends Router Advertisements for
//! SLAAC (A=1, L=1, no DHCPv6) with RDNSS (the router) and DNSSL (`home.test`,
//! `office.test`) every 10 s, router lifetime 30 min. NM's profile then has `ipv6.method=auto`
//! (stable-privacy addresses, no temporary ones), so the uplink holds a SLAAC address of the
//! current LAN and a default route via the router's link-local; a roam moves both.

use super::{Lan, NmWorld, BRIDGE};
use crate::cmd::{error, wait_until};
use crate::ip6::{self, Addr6, Prefix6};
use crate::world::UPLINK;
use std::io;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// dnsmasq's RA interval and router lifetime, seconds (`--ra-param`).
pub const RA_INTERVAL: u32 = 10;
pub const RA_ROUTER_LIFETIME: u32 = 1800;

impl Lan {
    /// "2001:db8:1::/64" (home) or "2001:db8:2::/64" (office).
    pub fn prefix6(self) -> &'static str {
        match self {
            Lan::Home => "2001:db8:1::/64",
            Lan::Office => "2001:db8:2::/64",
        }
    }

    /// [`Lan::prefix6`], parsed.
    pub fn prefix6_net(self) -> Prefix6 {
        let net = match self {
            Lan::Home => Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
            Lan::Office => Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0),
        };
        Prefix6 { network: net, len: 64 }
    }

    /// `::1`: the router, RA sender and DNS server.
    pub fn router6(self) -> Ipv6Addr {
        self.host6(1)
    }

    /// `::2`: the LAN client that `ping6_from`/`tcp6_from` send from.
    pub fn client6(self) -> Ipv6Addr {
        self.host6(2)
    }

    /// Host `n` of the /64.
    pub fn host6(self, n: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.prefix6_net().network) | u128::from(n))
    }

    /// The search domain the RAs carry (DNSSL): "home.test" or "office.test".
    pub fn search_domain(self) -> String {
        format!("{}.test", self.name())
    }

    /// Whether `addr` (with or without `/len`) is in this LAN's /64.
    pub fn contains6(self, addr: &str) -> bool {
        let ip = addr.split_once('/').map_or(addr, |(ip, _)| ip);
        ip.parse().is_ok_and(|ip| self.prefix6_net().contains(ip))
    }
}

/// An address NM's uplink got by SLAAC, and how long that took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slaac {
    pub address: Addr6,
    pub lan: Lan,
    /// From the call (or the roam's link-up) until the address was usable.
    pub elapsed: Duration,
}

impl NmWorld {
    /// Router `::1` and client `::2` on `br0` (no DAD; the bridge takes no RAs) and dnsmasq's
    /// RA options for the LAN in netns `ns`.
    pub(super) fn setup_lan6(&self, lan: Lan, ns: &str) -> io::Result<Vec<String>> {
        for key in ["accept_dad", "accept_ra"] {
            self.set_sysctl(ns, &format!("net.ipv6.conf.{BRIDGE}.{key}"), "0")?;
        }
        for host in [lan.router6(), lan.client6()] {
            self.ip(ns, &["-6", "addr", "add", &format!("{host}/64"), "dev", BRIDGE, "nodad"])?;
        }
        let network = lan.prefix6_net().network;
        Ok(vec![
            "--enable-ra".to_string(),
            format!("--dhcp-range={network},ra-only,64,2h"),
            format!("--ra-param={BRIDGE},{RA_INTERVAL},{RA_ROUTER_LIFETIME}"),
            format!("--dhcp-option=option6:dns-server,[{}]", lan.router6()),
            format!("--dhcp-option=option6:domain-search,{}", lan.search_domain()),
        ])
    }

    /// The uplink's global IPv6 addresses (with their flags), from the kernel.
    pub fn uplink_addresses6(&self) -> io::Result<Vec<Addr6>> {
        ip6::addresses(self.host_ns(), UPLINK, "global")
    }

    /// The gateways of the host netns's IPv6 default routes (NM's, from RAs).
    pub fn uplink_default_routers6(&self) -> io::Result<Vec<Ipv6Addr>> {
        ip6::default_routers(self.host_ns())
    }

    /// The link-local address of `lan`'s router (br0's), the source of its RAs.
    pub fn router_link_local6(&self, lan: Lan) -> io::Result<Ipv6Addr> {
        let addrs = ip6::addresses(self.lan_ns(lan), BRIDGE, "link")?;
        let found = addrs.into_iter().find(Addr6::usable).map(|a| a.address);
        found.ok_or_else(|| error(format!("{BRIDGE} of {lan} has no usable link-local address")))
    }

    /// Waits up to `timeout` until the uplink has a usable (DAD done, not deprecated) global
    /// address in `lan`'s /64, as NM configures it from the RAs.
    pub fn wait_for_address6(&self, lan: Lan, timeout: Duration) -> io::Result<Slaac> {
        let t0 = Instant::now();
        let prefix = lan.prefix6_net();
        let mut found = None;
        let usable = || {
            found = self.uplink_addresses6().ok().and_then(|addrs| {
                addrs.into_iter().find(|a| a.usable() && a.in_prefix(prefix) && !a.temporary)
            });
            found.is_some()
        };
        if !wait_until(timeout, Duration::from_millis(10), usable) {
            return Err(error(format!(
                "no {prefix} address on {UPLINK} within {timeout:?}: {:?}",
                self.uplink_addresses6()
            )));
        }
        let address = found.ok_or_else(|| error("lost the address"))?;
        Ok(Slaac { address, lan, elapsed: t0.elapsed() })
    }

    /// Pings `addr` (IPv6) from `lan`'s client (`::2`), once a try, for up to about 3 s.
    pub fn ping6_from(&self, lan: Lan, addr: &str) -> bool {
        ip6::ping(self.lan_ns(lan), Some(&lan.client6().to_string()), addr)
    }

    /// Connects over TCP6 from `lan`'s client (`::2`) to `[addr]:port` and returns what the
    /// server sent (trimmed), or None if that failed or nothing came within 3 s.
    pub fn tcp6_from(&self, lan: Lan, addr: &str, port: u16) -> Option<String> {
        ip6::tcp(self.lan_ns(lan), Some(&lan.client6().to_string()), addr, port)
    }

    /// A LAN host on `lan` takes `addr` (/64 on br0, no DAD): it answers DAD and neighbour
    /// solicitations for it from then on, as a host that already holds the address would.
    pub fn claim_address6(&self, lan: Lan, addr: Ipv6Addr) -> io::Result<()> {
        let cidr = format!("{addr}/64");
        self.ip(self.lan_ns(lan), &["-6", "addr", "add", &cidr, "dev", BRIDGE, "nodad"]).map(drop)
    }

    /// Undoes [`NmWorld::claim_address6`].
    pub fn release_address6(&self, lan: Lan, addr: Ipv6Addr) -> io::Result<()> {
        let cidr = format!("{addr}/64");
        self.ip(self.lan_ns(lan), &["-6", "addr", "del", &cidr, "dev", BRIDGE]).map(drop)
    }

    /// A TCP server on `lan`'s client `[::2]:port` that sends `"<lan>"` ("home") to each
    /// connection; waits until it listens.
    pub fn start_lan_tcp_server6(&self, lan: Lan, port: u16) -> io::Result<()> {
        self.start_tcp_server6(self.lan_ns(lan), lan.client6(), port, lan.name())
    }
}

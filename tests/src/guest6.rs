//! IPv6 in netns guests: the settings of a stock Linux guest, and what its eth0 got (SLAAC
//! addresses with their flags, default routers); pings and TCP over IPv6 from the guest.

use crate::cmd::{error, wait_until};
use crate::guest::GuestHandle;
use crate::ip6::{self, Addr6, Prefix6};
use std::io;
use std::net::Ipv6Addr;
use std::time::Duration;

/// IPv6 in a guest, as the kernel sets it up by default for a host (not a router): RAs
/// accepted, SLAAC, DAD with one probe, EUI-64 interface identifiers; optionally privacy
/// (temporary) addresses, preferred as sources, as desktop distributions configure them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ipv6Guest {
    /// `use_tempaddr=2`: temporary addresses too, and preferred as source.
    pub temporary_addresses: bool,
}

impl Ipv6Guest {
    /// The guest netns's sysctls, written before eth0 exists (it copies `default`).
    pub(crate) fn sysctls(self) -> Vec<(&'static str, &'static str)> {
        let tempaddr = if self.temporary_addresses { "2" } else { "0" };
        vec![
            ("net.ipv6.conf.all.forwarding", "0"),
            ("net.ipv6.conf.default.disable_ipv6", "0"),
            ("net.ipv6.conf.default.accept_ra", "1"),
            ("net.ipv6.conf.default.autoconf", "1"),
            ("net.ipv6.conf.default.accept_dad", "1"),
            ("net.ipv6.conf.default.dad_transmits", "1"),
            ("net.ipv6.conf.default.addr_gen_mode", "0"),
            ("net.ipv6.conf.default.use_tempaddr", tempaddr),
        ]
    }
}

impl GuestHandle<'_> {
    /// eth0's global IPv6 addresses with their flags (tentative, dadfailed, deprecated,
    /// temporary...).
    pub fn addresses6(&self) -> io::Result<Vec<Addr6>> {
        ip6::addresses(self.ns(), "eth0", "global")
    }

    /// eth0's link-local address, once DAD is done.
    pub fn link_local6(&self) -> io::Result<Option<Ipv6Addr>> {
        let addrs = ip6::addresses(self.ns(), "eth0", "link")?;
        Ok(addrs.into_iter().find(Addr6::usable).map(|a| a.address))
    }

    /// The gateways of the guest's IPv6 default routes (link-local router addresses from
    /// RAs), in the kernel's order.
    pub fn default_routers6(&self) -> io::Result<Vec<Ipv6Addr>> {
        ip6::default_routers(self.ns())
    }

    /// The first of [`GuestHandle::default_routers6`].
    pub fn default_router6(&self) -> io::Result<Option<Ipv6Addr>> {
        Ok(self.default_routers6()?.into_iter().next())
    }

    /// Waits up to `timeout` for a usable (DAD passed, not deprecated) stable, i.e. not
    /// temporary, SLAAC address in `prefix` ("2001:db8:1::/64").
    pub fn wait_for_global6(&self, prefix: &str, timeout: Duration) -> io::Result<Addr6> {
        self.wait_for_address6("a stable", prefix, timeout, |a| a.usable() && !a.temporary)
    }

    /// As [`GuestHandle::wait_for_global6`], for a temporary address.
    pub fn wait_for_temporary6(&self, prefix: &str, timeout: Duration) -> io::Result<Addr6> {
        self.wait_for_address6("a temporary", prefix, timeout, |a| a.usable() && a.temporary)
    }

    /// Waits up to `timeout` for an address in `prefix` that satisfies `wanted` (which sees
    /// every address in the prefix, tentative, dadfailed and deprecated ones too).
    pub fn wait_for_address6_where(
        &self,
        prefix: &str,
        timeout: Duration,
        wanted: impl Fn(&Addr6) -> bool,
    ) -> io::Result<Addr6> {
        self.wait_for_address6("a matching", prefix, timeout, wanted)
    }

    fn wait_for_address6(
        &self,
        what: &str,
        prefix: &str,
        timeout: Duration,
        wanted: impl Fn(&Addr6) -> bool,
    ) -> io::Result<Addr6> {
        let prefix = Prefix6::parse(prefix)?;
        let mut found = None;
        let present = || {
            found = self
                .addresses6()
                .ok()
                .and_then(|all| all.into_iter().find(|a| a.in_prefix(prefix) && wanted(a)));
            found.is_some()
        };
        if !wait_until(timeout, Duration::from_millis(10), present) {
            let now: Vec<String> =
                self.addresses6().unwrap_or_default().iter().map(Addr6::to_string).collect();
            return Err(error(format!(
                "{}: no {what} address in {prefix} within {timeout:?}; eth0 has {now:?}",
                self.ns()
            )));
        }
        found.ok_or_else(|| error("lost the address"))
    }

    /// Pings `addr` over IPv6 from the guest (from `source` if given, else the kernel's
    /// choice), once a try, for up to about 3 s.
    pub fn ping6_from_guest(&self, addr: &str, source: Option<&str>) -> bool {
        ip6::ping(self.ns(), source, addr)
    }

    /// Connects over TCP6 from the guest (from `source` if given) to `[addr]:port` and returns
    /// what the server sent (trimmed), or None if that failed or nothing came within 3 s.
    pub fn tcp6_from_guest(&self, addr: &str, port: u16, source: Option<&str>) -> Option<String> {
        ip6::tcp(self.ns(), source, addr, port)
    }
}

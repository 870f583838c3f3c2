//! The pure planner: from the model to the kernel state vmnetd wants. No I/O here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::firewall::{FilterPlan, GuestFilter};
use crate::model::{Guest, Prefix6, Subnet, Uplink};
use crate::ndp::message::router_link_local;

/// A guest's IPv6 addresses as learned from its own Neighbor Discovery and defended on the
/// uplink.
pub type Learned6 = BTreeSet<Ipv6Addr>;

/// A persistent tap for one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    pub name: String,
    pub owner: u32,
    /// The uplink's MTU; `None` while offline (the tap keeps what it has).
    pub mtu: Option<u32>,
    /// Settings of the tap itself: written, never restored (the tap is vmnetd's).
    pub sysctls: Vec<Sysctl>,
    /// The router link-local address the tap holds while the uplink has IPv6 (Router
    /// Advertisements come from it); other link-local addresses are removed.
    pub router6: Option<Ipv6Addr>,
}

/// `<address>/32 (or /128) dev <tap> proto vmnet`, and the uplink's proxy neighbour entry for
/// `address` (`ip neigh add proxy <address> dev <uplink> protocol vmnet`): the uplink answers
/// ARP or Neighbor Solicitations for the guest's addresses, and only for guests' addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostRoute {
    pub address: IpAddr,
    pub tap: String,
    pub uplink: String,
}

/// A sysctl under /proc/sys, by its path relative to it, e.g. `net/ipv4/ip_forward`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sysctl {
    pub key: String,
    pub value: &'static str,
    /// Written only over this value (a host setting left alone when it is anything else).
    pub only_over: Option<&'static str>,
}

impl Sysctl {
    fn conf(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv4/conf/{interface}/{name}"), value, only_over: None }
    }

    fn conf6(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv6/conf/{interface}/{name}"), value, only_over: None }
    }

    fn neigh(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv4/neigh/{interface}/{name}"), value, only_over: None }
    }

    /// An IPv6 setting: absent when IPv6 is off (on the host or the link), which is as locked
    /// down as it gets.
    pub fn is_ipv6(&self) -> bool {
        self.key.starts_with("net/ipv6/")
    }
}

/// Everything vmnetd wants in the kernel. What it owns and is not listed here is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub taps: Vec<TapSpec>,
    pub routes: Vec<HostRoute>,
    /// Settings of the host (ip_forward, the uplink's proxy_delay): their previous values are
    /// recorded before the first write and restored once they are no longer wanted.
    pub host_sysctls: Vec<Sysctl>,
    /// The uplink's subnet while there are guests (`None`: offline, or no guest).
    pub subnet: Option<Subnet>,
    /// The uplink's IPv6 prefix while there are guests (`None`: no IPv6, or no guest).
    pub prefix6: Option<Prefix6>,
    /// What vmnetd's nftables tables hold; without guests they are deleted.
    pub filter: FilterPlan,
}

/// What one guest wants: its tap and, online, the host routes to its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlan {
    pub tap: TapSpec,
    /// Its IPv4 address's route first, then its IPv6 addresses'.
    pub routes: Vec<HostRoute>,
    pub filter: GuestFilter,
}

/// A guest's addresses: the IPv4 one it was given and the IPv6 ones it was found using.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'a> {
    pub v4: Option<Ipv4Addr>,
    pub v6: &'a Learned6,
}

/// No IPv6 address.
pub static NO_ADDRESSES6: Learned6 = BTreeSet::new();

impl Addresses<'static> {
    pub fn v4_only(v4: Option<Ipv4Addr>) -> Self {
        Self { v4, v6: &NO_ADDRESSES6 }
    }
}

/// Plans the kernel state for `guests`, each with its addresses, behind `uplink` (`None`:
/// offline): every guest's [`plan_guest`], and the [`host_sysctls`].
pub fn plan<'a>(
    uplink: Option<&Uplink>,
    guests: impl IntoIterator<Item = (&'a Guest, Addresses<'a>)>,
) -> Desired {
    let mut desired = Desired::default();
    for (guest, addresses) in guests {
        let GuestPlan { tap, routes, filter } = plan_guest(uplink, guest, addresses);
        desired.taps.push(tap);
        desired.routes.extend(routes);
        desired.filter.guests.push(filter);
    }
    let any_guest = !desired.taps.is_empty();
    desired.host_sysctls = host_sysctls(uplink, any_guest);
    desired.subnet = uplink.map(Uplink::subnet).filter(|_| any_guest);
    desired.prefix6 = uplink.and_then(|up| Some(up.ipv6.as_ref()?.prefix)).filter(|_| any_guest);
    desired.filter.uplink = uplink.map(|up| up.interface.clone());
    // Known before the first guest: its tables are written with the IPv6 rules from the start.
    desired.filter.ipv6 = uplink.is_some_and(|up| up.ipv6.is_some());
    desired
}

/// One guest's tap and, online, its host routes (with the uplink's proxy entries): its IPv4
/// address's and those of its learned IPv6 addresses inside the uplink's prefix. The tap: the
/// host answers the guest's ARP for LAN hosts (proxy_arp, at once), checks its source
/// addresses (rp_filter), takes no ICMP redirect from it, and makes no IPv6 address of its own
/// nor takes a Router Advertisement or redirect (a guest cannot become the host's IPv6
/// router); while the uplink has IPv6 it holds vmnetd's router link-local for the prefix.
pub fn plan_guest(uplink: Option<&Uplink>, guest: &Guest, addresses: Addresses<'_>) -> GuestPlan {
    let tap = &guest.tap;
    let ipv6 = uplink.and_then(|up| up.ipv6.as_ref());
    let spec = TapSpec {
        name: tap.clone(),
        owner: guest.owner,
        mtu: uplink.map(|u| u.mtu),
        sysctls: vec![
            Sysctl::conf(tap, "proxy_arp", "1"),
            Sysctl::conf(tap, "rp_filter", "1"),
            Sysctl::conf(tap, "accept_redirects", "0"),
            // The guest is the tap's only neighbour: answer its ARP for LAN hosts at once
            // instead of after a random delay of up to 0.8 s.
            Sysctl::neigh(tap, "proxy_delay", "0"),
            Sysctl::conf6(tap, "accept_ra", "0"),
            Sysctl::conf6(tap, "autoconf", "0"),
            Sysctl::conf6(tap, "accept_redirects", "0"),
            // No link-local of the kernel's making: only vmnetd's router address, if any.
            Sysctl::conf6(tap, "addr_gen_mode", "1"),
        ],
        router6: ipv6.map(|v6| router_link_local(v6.prefix.network())),
    };
    let address = addresses.v4.filter(|_| uplink.is_some());
    let addresses6: Vec<Ipv6Addr> = match ipv6 {
        Some(v6) => addresses.v6.iter().copied().filter(|a| v6.prefix.contains(*a)).collect(),
        None => Vec::new(),
    };
    let routes = match uplink {
        Some(up) => address
            .map(IpAddr::V4)
            .into_iter()
            .chain(addresses6.iter().copied().map(IpAddr::V6))
            .map(|address| HostRoute { address, tap: tap.clone(), uplink: up.interface.clone() })
            .collect(),
        None => Vec::new(),
    };
    // The guest sends from (and is forwarded to) the addresses it is routed at, and only those.
    let filter = GuestFilter { tap: tap.clone(), mac: guest.mac, address, addresses6 };
    GuestPlan { tap: spec, routes, filter }
}

/// The host's settings while any guest exists: ip_forward, and online no delay before the
/// uplink answers ARP for a guest (its proxy entries otherwise wait 0–0.8 s at random). The
/// uplink's own proxy_arp is left as it is: proxy entries answer for guests only. While the
/// uplink has IPv6: IPv6 forwarding, the uplink answering for its proxy NDP entries and still
/// taking Router Advertisements if the kernel takes them there.
pub fn host_sysctls(uplink: Option<&Uplink>, any_guest: bool) -> Vec<Sysctl> {
    if !any_guest {
        return Vec::new();
    }
    let mut sysctls = vec![Sysctl { key: "net/ipv4/ip_forward".into(), value: "1", only_over: None }];
    if let Some(up) = uplink {
        sysctls.push(Sysctl::neigh(&up.interface, "proxy_delay", "0"));
        if up.ipv6.is_some() {
            // A forwarding host ignores Router Advertisements where accept_ra is 1, and turning
            // forwarding on drops the routers they gave: the kernel's own SLAAC on the uplink
            // (no NetworkManager) would lose its router and addresses. So 2 first.
            let keep_taking_ras = Sysctl::conf6(&up.interface, "accept_ra", "2");
            sysctls.push(Sysctl { only_over: Some("1"), ..keep_taking_ras });
            sysctls.push(Sysctl { key: IPV6_FORWARDING.into(), value: "1", only_over: None });
            sysctls.push(Sysctl::conf6(&up.interface, "proxy_ndp", "1"));
        }
    }
    sysctls
}

/// IPv6 forwarding: only the `all` switch forwards (per-interface ones set router behaviour).
pub const IPV6_FORWARDING: &str = "net/ipv6/conf/all/forwarding";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mac;

    fn uplink(addr: &str) -> Uplink {
        Uplink {
            interface: "wlan0".into(),
            address: addr.parse().unwrap(),
            prefix_len: 24,
            gateway: None,
            mtu: 1400,
            nameservers: vec![],
            domains: vec![],
            connection: None,
            ipv6: None,
        }
    }

    fn guest(name: &str) -> Guest {
        Guest {
            name: name.into(),
            tap: format!("vmt-{name}"),
            mac: Mac([0x0a, 0x76, 0x6d, 0, 0, 1]),
            owner: 1000,
            qmp: None,
        }
    }

    fn at(address: &str) -> Addresses<'static> {
        Addresses::v4_only(address.parse().ok())
    }

    const NONE: Addresses<'static> = Addresses { v4: None, v6: &NO_ADDRESSES6 };

    fn dual_stack(addr: &str, prefix: &str) -> Uplink {
        let address6: Ipv6Addr = format!("{prefix}10").parse().unwrap();
        Uplink {
            ipv6: Some(crate::model::Uplink6 {
                prefix: Prefix6::containing(address6, 64).unwrap(),
                address: address6,
                gateway: "fe80::1".parse().ok(),
                nameservers: vec![],
            }),
            ..uplink(addr)
        }
    }

    #[test]
    fn nothing_wanted_without_guests() {
        let online = plan(Some(&uplink("198.51.100.10")), []);
        assert_eq!(Desired { filter: FilterPlan::default(), ..online }, Desired::default());
        assert_eq!(plan(None, []), Desired::default());
    }

    #[test]
    fn online_guests_are_routed_and_proxied() {
        let (a, b) = (guest("a"), guest("b"));
        let d = plan(Some(&uplink("198.51.100.10")), [(&a, at("198.51.100.200")), (&b, NONE)]);
        assert_eq!(d.taps.len(), 2);
        assert_eq!((d.taps[0].name.as_str(), d.taps[0].owner, d.taps[0].mtu), ("vmt-a", 1000, Some(1400)));
        let route = HostRoute {
            address: "198.51.100.200".parse::<Ipv4Addr>().unwrap().into(),
            tap: "vmt-a".into(),
            uplink: "wlan0".into(),
        };
        assert_eq!(d.routes, [route]);
        let keys: Vec<_> = d.host_sysctls.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            ["net/ipv4/ip_forward", "net/ipv4/neigh/wlan0/proxy_delay"],
            "not the uplink's proxy_arp"
        );
        let tap: Vec<_> = d.taps[1].sysctls.iter().map(|s| format!("{}={}", s.key, s.value)).collect();
        assert_eq!(
            tap,
            [
                "net/ipv4/conf/vmt-b/proxy_arp=1",
                "net/ipv4/conf/vmt-b/rp_filter=1",
                "net/ipv4/conf/vmt-b/accept_redirects=0",
                "net/ipv4/neigh/vmt-b/proxy_delay=0",
                "net/ipv6/conf/vmt-b/accept_ra=0",
                "net/ipv6/conf/vmt-b/autoconf=0",
                "net/ipv6/conf/vmt-b/accept_redirects=0",
                "net/ipv6/conf/vmt-b/addr_gen_mode=1",
            ]
        );
        assert_eq!(d.taps[1].router6, None, "no IPv6 on the uplink, none on the tap");
        assert_eq!(d.prefix6, None);
        assert!(d.taps[1]
            .sysctls
            .iter()
            .filter(|s| s.is_ipv6())
            .all(|s| s.key.starts_with("net/ipv6/conf/vmt-b/")));
    }

    #[test]
    fn rehome_moves_routes_with_the_subnet() {
        let a = guest("a");
        let d = plan(Some(&uplink("203.0.113.9")), [(&a, at("203.0.113.200"))]);
        assert_eq!(d.routes[0].address, "203.0.113.200".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn learned_ipv6_addresses_inside_the_prefix_are_routed_and_the_host_forwards_ipv6() {
        let a = guest("a");
        let learned: Learned6 =
            ["2001:db8:1::a", "2001:db8:1::b", "2001:db8:9::c"].iter().map(|a| a.parse().unwrap()).collect();
        let addresses = Addresses { v4: "198.51.100.200".parse().ok(), v6: &learned };
        let d = plan(Some(&dual_stack("198.51.100.10", "2001:db8:1::")), [(&a, addresses)]);
        let routed: Vec<String> = d.routes.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(routed, ["198.51.100.200", "2001:db8:1::a", "2001:db8:1::b"], "not the old prefix's");
        assert_eq!(d.prefix6.map(|p| p.to_string()).as_deref(), Some("2001:db8:1::/64"));
        assert_eq!(d.taps[0].router6, Some(router_link_local("2001:db8:1::".parse().unwrap())));
        let keys: Vec<_> = d.host_sysctls.iter().map(|s| format!("{}={}", s.key, s.value)).collect();
        assert_eq!(
            keys,
            [
                "net/ipv4/ip_forward=1",
                "net/ipv4/neigh/wlan0/proxy_delay=0",
                "net/ipv6/conf/wlan0/accept_ra=2",
                "net/ipv6/conf/all/forwarding=1",
                "net/ipv6/conf/wlan0/proxy_ndp=1"
            ]
        );
        // The roam: the new prefix's router, none of the old addresses.
        let d = plan(Some(&dual_stack("203.0.113.9", "2001:db8:2::")), [(&a, addresses)]);
        assert_eq!(d.routes.len(), 1);
        assert_eq!(d.taps[0].router6, Some(router_link_local("2001:db8:2::".parse().unwrap())));
        // Offline: nothing routed, no router address.
        let d = plan(None, [(&a, addresses)]);
        assert!(d.routes.is_empty() && d.taps[0].router6.is_none() && d.prefix6.is_none());
    }

    #[test]
    fn offline_keeps_taps_and_withdraws_routes_and_proxy_entries() {
        let a = guest("a");
        let d = plan(None, [(&a, at("198.51.100.200"))]);
        assert_eq!(d.taps[0].mtu, None);
        assert!(d.routes.is_empty());
        let keys: Vec<_> = d.host_sysctls.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["net/ipv4/ip_forward"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn guests() -> impl Strategy<Value = Vec<(Guest, Option<Ipv4Addr>, Learned6)>> {
            let learned = proptest::collection::btree_set(any::<u16>(), 0..4);
            proptest::collection::btree_map(
                "[a-z][a-z0-9]{0,7}",
                (proptest::option::of(any::<u32>()), learned),
                0..12,
            )
            .prop_map(|map| {
                map.into_iter()
                    .map(|(name, (address, hosts))| {
                        // Some inside the uplink's prefix, some outside.
                        let v6 = hosts
                            .into_iter()
                            .map(|h| Ipv6Addr::new(0x2001, 0xdb8, 1 + (h & 1), 0, 0, 0, 0, h))
                            .collect();
                        (guest(&name), address.map(Ipv4Addr::from), v6)
                    })
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn the_plan_is_a_pure_function_of_its_inputs(online in any::<bool>(), guests in guests()) {
                let up = dual_stack("198.51.100.10", "2001:db8:1::");
                let up = online.then_some(&up);
                let addressed = || guests.iter().map(|(g, v4, v6)| (g, Addresses { v4: *v4, v6 }));
                let first = plan(up, addressed());
                // Planned again from the same inputs: the same plan, so applying it changes nothing.
                prop_assert_eq!(&first, &plan(up, addressed()));
                // The whole plan is each guest's plan plus the host's settings.
                let taps: Vec<_> = addressed().map(|(g, a)| plan_guest(up, g, a).tap).collect();
                prop_assert_eq!(&first.taps, &taps);
                let routes: Vec<_> = addressed().flat_map(|(g, a)| plan_guest(up, g, a).routes).collect();
                prop_assert_eq!(&first.routes, &routes);
                prop_assert_eq!(first.host_sysctls.is_empty(), guests.is_empty());
                prop_assert!(online || first.routes.is_empty(), "no route offline");
                // Only addresses inside the uplink's prefix are routed.
                let prefix = up.and_then(|u| Some(u.ipv6.as_ref()?.prefix));
                let inside = |r: &HostRoute| match r.address {
                    IpAddr::V6(v6) => prefix.is_some_and(|p| p.contains(v6)),
                    IpAddr::V4(_) => true,
                };
                prop_assert!(first.routes.iter().all(inside));
                // Every guest is filtered; its IPv4 address is the one it is routed at.
                let filtered: Vec<_> = first.filter.guests.iter().filter_map(|f| Some((IpAddr::V4(f.address?), f.tap.clone()))).collect();
                let routed: Vec<_> = first.routes.iter().filter(|r| r.address.is_ipv4()).map(|r| (r.address, r.tap.clone())).collect();
                prop_assert_eq!(first.filter.guests.len(), guests.len());
                prop_assert_eq!(filtered, routed);
            }
        }
    }
}

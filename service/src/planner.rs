//! The pure planner: from the model to the kernel state vmnetd wants. No I/O here.

use std::net::Ipv4Addr;

use crate::firewall::{FilterPlan, GuestFilter};
use crate::model::{Guest, Subnet, Uplink};

/// A persistent tap for one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    pub name: String,
    pub owner: u32,
    /// The uplink's MTU; `None` while offline (the tap keeps what it has).
    pub mtu: Option<u32>,
    /// Settings of the tap itself: written, never restored (the tap is vmnetd's).
    pub sysctls: Vec<Sysctl>,
}

/// `<address>/32 dev <tap> proto vmnet`, and the uplink's proxy neighbour entry for
/// `address` (`ip neigh add proxy <address> dev <uplink> protocol vmnet`): the uplink answers
/// ARP for the guest's address, and only for guests' addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostRoute {
    pub address: Ipv4Addr,
    pub tap: String,
    pub uplink: String,
}

/// A sysctl under /proc/sys, by its path relative to it, e.g. `net/ipv4/ip_forward`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sysctl {
    pub key: String,
    pub value: &'static str,
}

impl Sysctl {
    fn conf(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv4/conf/{interface}/{name}"), value }
    }

    fn conf6(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv6/conf/{interface}/{name}"), value }
    }

    fn neigh(interface: &str, name: &str, value: &'static str) -> Self {
        Sysctl { key: format!("net/ipv4/neigh/{interface}/{name}"), value }
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
    /// What vmnetd's nftables tables hold; without guests they are deleted.
    pub filter: FilterPlan,
}

/// What one guest wants: its tap and, with an address, the host route to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlan {
    pub tap: TapSpec,
    pub route: Option<HostRoute>,
    pub filter: GuestFilter,
}

/// Plans the kernel state for `guests`, each with its address (if it has one), behind `uplink`
/// (`None`: offline): every guest's [`plan_guest`], and the [`host_sysctls`].
pub fn plan<'a>(
    uplink: Option<&Uplink>,
    guests: impl IntoIterator<Item = (&'a Guest, Option<Ipv4Addr>)>,
) -> Desired {
    let mut desired = Desired::default();
    for (guest, address) in guests {
        let GuestPlan { tap, route, filter } = plan_guest(uplink, guest, address);
        desired.taps.push(tap);
        desired.routes.extend(route);
        desired.filter.guests.push(filter);
    }
    desired.host_sysctls = host_sysctls(uplink, !desired.taps.is_empty());
    desired.subnet = uplink.map(Uplink::subnet).filter(|_| !desired.taps.is_empty());
    desired.filter.uplink = uplink.map(|up| up.interface.clone());
    desired
}

/// One guest's tap and, online with an address, its host route (with the uplink's proxy
/// entry). The tap: the host answers the guest's ARP for LAN hosts (proxy_arp, at once), checks
/// its source addresses (rp_filter), takes no ICMP redirect from it, and has no IPv6 but a
/// link-local address (no Router Advertisement or redirect accepted: a guest cannot become the
/// host's IPv6 router).
pub fn plan_guest(uplink: Option<&Uplink>, guest: &Guest, address: Option<Ipv4Addr>) -> GuestPlan {
    let tap = &guest.tap;
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
        ],
    };
    let address = address.filter(|_| uplink.is_some());
    let route = address.zip(uplink).map(|(address, up)| HostRoute {
        address,
        tap: tap.clone(),
        uplink: up.interface.clone(),
    });
    // The guest sends from (and is forwarded to) the address it is routed at, and only that.
    let filter = GuestFilter { tap: tap.clone(), mac: guest.mac, address, addresses6: Vec::new() };
    GuestPlan { tap: spec, route, filter }
}

/// The host's settings while any guest exists: ip_forward, and online no delay before the
/// uplink answers ARP for a guest (its proxy entries otherwise wait 0–0.8 s at random). The
/// uplink's own proxy_arp is left as it is: proxy entries answer for guests only.
pub fn host_sysctls(uplink: Option<&Uplink>, any_guest: bool) -> Vec<Sysctl> {
    if !any_guest {
        return Vec::new();
    }
    let mut sysctls = vec![Sysctl { key: "net/ipv4/ip_forward".into(), value: "1" }];
    if let Some(up) = uplink {
        sysctls.push(Sysctl::neigh(&up.interface, "proxy_delay", "0"));
    }
    sysctls
}

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

    fn at(address: &str) -> Option<Ipv4Addr> {
        address.parse().ok()
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
        let d = plan(Some(&uplink("198.51.100.10")), [(&a, at("198.51.100.200")), (&b, None)]);
        assert_eq!(d.taps.len(), 2);
        assert_eq!((d.taps[0].name.as_str(), d.taps[0].owner, d.taps[0].mtu), ("vmt-a", 1000, Some(1400)));
        let route = HostRoute {
            address: "198.51.100.200".parse().unwrap(),
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
            ]
        );
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

        fn guests() -> impl Strategy<Value = Vec<(Guest, Option<Ipv4Addr>)>> {
            proptest::collection::btree_map("[a-z][a-z0-9]{0,7}", proptest::option::of(any::<u32>()), 0..12)
                .prop_map(|map| {
                    map.into_iter()
                        .map(|(name, address)| (guest(&name), address.map(Ipv4Addr::from)))
                        .collect()
                })
        }

        proptest! {
            #[test]
            fn the_plan_is_a_pure_function_of_its_inputs(online in any::<bool>(), guests in guests()) {
                let up = uplink("198.51.100.10");
                let up = online.then_some(&up);
                let first = plan(up, guests.iter().map(|(g, a)| (g, *a)));
                // Planned again from the same inputs: the same plan, so applying it changes nothing.
                prop_assert_eq!(&first, &plan(up, guests.iter().map(|(g, a)| (g, *a))));
                // The whole plan is each guest's plan plus the host's settings.
                let taps: Vec<_> = guests.iter().map(|(g, a)| plan_guest(up, g, *a).tap).collect();
                prop_assert_eq!(&first.taps, &taps);
                let routes: Vec<_> = guests.iter().filter_map(|(g, a)| plan_guest(up, g, *a).route).collect();
                prop_assert_eq!(&first.routes, &routes);
                prop_assert_eq!(first.host_sysctls.is_empty(), guests.is_empty());
                prop_assert!(online || first.routes.is_empty(), "no route offline");
                // Every guest is filtered; its address is the one it is routed at.
                let filtered: Vec<_> = first.filter.guests.iter().filter_map(|f| Some((f.address?, f.tap.clone()))).collect();
                let routed: Vec<_> = first.routes.iter().map(|r| (r.address, r.tap.clone())).collect();
                prop_assert_eq!(first.filter.guests.len(), guests.len());
                prop_assert_eq!(filtered, routed);
            }
        }
    }
}

//! The guests' IPv6 addresses: learned from the Neighbor Discovery task, routed while inside
//! the uplink's prefix, forgotten when unused. Those of another prefix are kept (up to the
//! guest's limit) and routed again when the laptop comes back to that network: the guest takes
//! its old address up again without a new DAD, so nothing else would tell vmnetd about it. And
//! what that task advertises and defends, published for it.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::{Notifier, Reconciler};
use crate::address_book::Prober;
use crate::executor::Kernel;
use crate::model::{Guest, Prefix6};
use crate::ndp::{Found, Routers, TapPort, UplinkPort, MAX_ADDRESSES_PER_GUEST};
use crate::planner;
use crate::uplink::UplinkSource;

impl<S: UplinkSource, K: Kernel, P: Prober, N: Notifier> Reconciler<S, K, P, N> {
    /// The uplink's IPv6 prefix, if it has one.
    fn prefix6(&self) -> Option<Prefix6> {
        Some(self.uplink.as_ref()?.ipv6.as_ref()?.prefix)
    }

    /// A guest's learned addresses inside the uplink's prefix: those routed.
    pub(super) fn routed6(&self, name: &str) -> Vec<Ipv6Addr> {
        let (Some(prefix), Some(learned)) = (self.prefix6(), self.learned6.get(name)) else {
            return Vec::new();
        };
        learned.iter().copied().filter(|a| prefix.contains(*a)).collect()
    }

    /// A guest uses, or stopped using, an address: its routes follow.
    pub(super) async fn found6(&mut self, found: Found) {
        let (name, address, in_use) = match found {
            Found::InUse { guest, address } => (guest, address, true),
            Found::Unused { guest, address } => (guest, address, false),
        };
        let Some(guest) = self.guests.get(&name).cloned() else { return };
        let name = name.as_str();
        let before = planner::plan_guest(self.uplink.as_ref(), &guest, self.addresses(name)).routes;
        let prefix = self.prefix6();
        let learned = self.learned6.entry(name.to_owned()).or_default();
        let changed = if in_use {
            let inside = |a: &Ipv6Addr| prefix.is_some_and(|p| p.contains(*a));
            if !inside(&address) || learned.contains(&address) {
                false
            } else if learned.iter().filter(|a| inside(a)).count() >= MAX_ADDRESSES_PER_GUEST {
                tracing::warn!("guest {name} uses more than {MAX_ADDRESSES_PER_GUEST} IPv6 addresses: {address} is not routed");
                false
            } else {
                // Room made by forgetting an address of another prefix first.
                if learned.len() >= MAX_ADDRESSES_PER_GUEST {
                    let other = learned.iter().copied().find(|a| !inside(a));
                    other.map(|other| learned.remove(&other));
                }
                learned.insert(address)
            }
        } else {
            learned.remove(&address)
        };
        if learned.is_empty() {
            self.learned6.remove(name);
        }
        if !changed {
            return;
        }
        self.unsaved.guest(name);
        let _ = self.save();
        let plan = planner::plan_guest(self.uplink.as_ref(), &guest, self.addresses(name));
        let outcome = self.kernel.ensure_guest(&plan, &before).await;
        self.after_apply(&outcome);
        self.tap_indexes.extend(outcome.tap_indexes);
        match in_use {
            true => tracing::info!("guest {name} uses {address}: routed"),
            false => tracing::info!("guest {name} no longer uses {address}: forgotten"),
        }
        self.publish_guest(name, &guest.tap).await;
    }

    fn uplink_port(&self) -> Option<UplinkPort> {
        let up = self.uplink.as_ref()?;
        let v6 = up.ipv6.as_ref()?;
        Some(UplinkPort {
            interface: up.interface.clone(),
            prefix: v6.prefix,
            router: crate::ndp::message::router_link_local(v6.prefix.network()),
            host: v6.address,
            mtu: up.mtu,
            nameservers: v6.nameservers.clone(),
            domains: up.domains.clone(),
        })
    }

    fn tap_port(&self, guest: &Guest) -> Option<TapPort> {
        let tap = guest.tap.as_str();
        Some(TapPort {
            ifindex: *self.tap_indexes.get(tap)?,
            guest: guest.name.clone(),
            guest_mac: guest.mac,
            routed: self.routed6(&guest.name).into_iter().collect(),
        })
    }

    /// Publishes the entry of guest `name`'s tap after a change of that guest alone. Without
    /// IPv6 on the uplink the task serves no tap, and costs nothing.
    pub(super) fn publish_router_tap(&mut self, name: &str, tap: &str) {
        let ipv6 = self.prefix6().is_some();
        let port = self.guests.get(name).filter(|_| ipv6).and_then(|g| self.tap_port(g));
        self.outputs.routers.send_if_modified(|routers| match port {
            Some(port) if routers.taps.get(tap) != Some(&port) => {
                routers.taps.insert(tap.to_owned(), port);
                true
            }
            Some(_) => false,
            None => routers.taps.remove(tap).is_some(),
        });
    }

    /// Publishes the uplink and every tap after a full sync.
    pub(super) fn publish_routers(&mut self) {
        let uplink = self.uplink_port();
        let taps: BTreeMap<String, TapPort> =
            self.guests.values().filter_map(|g| Some((g.tap.clone(), self.tap_port(g)?))).collect();
        let fresh = Routers { uplink, taps };
        self.outputs.routers.send_if_modified(|routers| {
            let changed = *routers != fresh;
            if changed {
                *routers = fresh;
            }
            changed
        });
    }
}

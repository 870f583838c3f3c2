//! The uplink's proxy neighbour entries, one per routed guest address: added and removed with
//! the guest's route, converged (and swept) with the routes.

use std::collections::{BTreeMap, HashSet};

use super::{run_all, Executor, Outcome, Sweep};
use crate::netlink::Proxy;
use crate::planner::{Desired, HostRoute};

impl Executor {
    /// The index of the uplink `name`, looked up each time (the link may be recreated).
    async fn uplink_index(&self, name: &str) -> Result<u32, String> {
        match self.netlink.link_by_name(name).await {
            Ok(Some(link)) => Ok(link.index),
            Ok(None) => Err(format!("uplink {name} does not exist")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn proxy_of(&self, route: &HostRoute) -> Result<Proxy, String> {
        Ok(Proxy { address: route.address, ifindex: self.uplink_index(&route.uplink).await? })
    }

    pub(super) async fn add_proxy(&self, route: &HostRoute, outcome: &mut Outcome) {
        let added = match self.proxy_of(route).await {
            Ok(proxy) => self.netlink.add_proxy(proxy).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match added {
            Ok(()) => outcome.proxies_set += 1,
            Err(e) => outcome.error(e),
        }
    }

    /// Removes the proxy entry of `route`; with its uplink gone, so is the entry.
    pub(super) async fn delete_proxy(&self, route: &HostRoute, outcome: &mut Outcome) {
        let Ok(proxy) = self.proxy_of(route).await else { return };
        match self.netlink.delete_proxy(proxy).await {
            Ok(()) => outcome.proxies_removed += 1,
            Err(e) => outcome.error(e),
        }
    }

    /// vmnetd's proxy entries read back (on every link) and converged to `desired.routes`;
    /// those no longer wanted are removed as `sweep` says.
    pub(super) async fn converge_proxies(&self, desired: &Desired, sweep: Sweep, outcome: &mut Outcome) {
        let present: HashSet<Proxy> = match self.netlink.vmnet_proxies().await {
            Ok(proxies) => proxies.into_iter().collect(),
            Err(e) => return outcome.error(e),
        };
        let mut uplinks: BTreeMap<&str, Option<u32>> = BTreeMap::new();
        for route in &desired.routes {
            if !uplinks.contains_key(route.uplink.as_str()) {
                let index = self.uplink_index(&route.uplink).await.map_err(|e| outcome.error(e)).ok();
                uplinks.insert(&route.uplink, index);
            }
        }
        let wanted: HashSet<Proxy> = desired
            .routes
            .iter()
            .filter_map(|r| {
                Some(Proxy { address: r.address, ifindex: uplinks.get(r.uplink.as_str()).copied()?? })
            })
            .collect();
        let netlink = &self.netlink;
        let missing = wanted.difference(&present).map(|proxy| netlink.add_proxy(*proxy));
        outcome.proxies_set += run_all(missing, outcome).await;
        let stale = present.difference(&wanted).filter(|p| sweep.covers(p.address));
        outcome.proxies_removed += run_all(stale.map(|proxy| netlink.delete_proxy(*proxy)), outcome).await;
    }
}

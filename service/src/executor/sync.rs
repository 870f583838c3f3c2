//! The full sync: every tap and route vmnetd owns read back, converged to the plan, and what is
//! no longer wanted swept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use super::{host, run_all, Executor, Outcome, SavedSysctls, Sweep};
use crate::names::TAP_PREFIX;
use crate::netlink::{Link, Route};
use crate::planner::Desired;

impl Executor {
    pub(super) async fn full_sync(&mut self, desired: &Desired, saved: &mut SavedSysctls) -> Outcome {
        let mut outcome = Outcome::default();
        let being_deleted = self.reap_deletions(&mut outcome);
        // Wanted taps that are still being deleted are created anew once that is done.
        for spec in &desired.taps {
            if being_deleted.contains(&spec.name) {
                self.finish_deleting(&spec.name, &mut outcome).await;
            }
        }
        let started = std::time::Instant::now();
        // The filter first: a tap is never up without its guest's filter in place.
        self.sync_filter(desired, saved, &mut outcome);
        let links = match self.netlink.tun_links().await {
            Ok(links) => links,
            Err(e) => {
                outcome.error(e);
                return outcome;
            }
        };
        let dumped = started.elapsed();
        let mut by_name: HashMap<String, Link> = links.into_iter().map(|l| (l.name.clone(), l)).collect();
        let current: HashSet<(String, u32)> = desired
            .taps
            .iter()
            .filter_map(|tap| by_name.get(&tap.name).map(|l| (tap.name.clone(), l.index)))
            .collect();
        self.verified_taps.retain(|key| current.contains(key));
        for spec in &desired.taps {
            let existing = by_name.remove(&spec.name);
            self.ensure_tap(spec, existing, &mut outcome).await;
        }
        host::sync(&self.sysctls, self.filtered(&desired.host_sysctls), saved, &mut outcome);
        let taps = started.elapsed();
        let indexes = std::mem::take(&mut outcome.tap_indexes);
        self.converge_routes(desired, &indexes, Sweep::All, &mut outcome).await;
        self.converge_router_addresses(desired, &indexes, &mut outcome).await;
        outcome.tap_indexes = indexes;
        let routes = started.elapsed();
        // What is left in `by_name` is not wanted.
        for link in by_name.values() {
            if link.name.starts_with(TAP_PREFIX) && !being_deleted.contains(&link.name) {
                if let Err(e) = self.netlink.set_down(link.index, &link.name).await {
                    outcome.error(e);
                }
                self.start_deleting(link.index, &link.name);
            }
        }
        // With no guest left, the tables go once forwarding is restored.
        self.sweep_filter(desired, &mut outcome);
        tracing::debug!(?dumped, ?taps, ?routes, "full sync: links dumped, taps verified, routes synced");
        outcome
    }

    /// vmnetd's routes and proxy entries read back and converged to `desired`, with the taps'
    /// `indexes`; those no longer wanted are removed as `sweep` says.
    pub(super) async fn converge_routes(
        &self,
        desired: &Desired,
        indexes: &BTreeMap<String, u32>,
        sweep: Sweep,
        outcome: &mut Outcome,
    ) {
        let started = std::time::Instant::now();
        let ours = match self.netlink.vmnet_routes().await {
            Ok(routes) => routes,
            Err(e) => return outcome.error(e),
        };
        let present: HashSet<(IpAddr, u32)> =
            ours.iter().filter(|r| r.is_host_route()).filter_map(|r| Some((r.destination, r.oif?))).collect();
        // A route whose tap failed has no index: that failure is reported already.
        let wanted: HashSet<(IpAddr, u32)> =
            desired.routes.iter().filter_map(|r| Some((r.address, *indexes.get(&r.tap)?))).collect();
        let missing: Vec<(IpAddr, u32)> = wanted.difference(&present).copied().collect();
        let wanted_addresses: BTreeSet<IpAddr> = wanted.iter().map(|(address, _)| *address).collect();
        // A replaced route (same /32 or /128, other tap) is gone once the replacement is in.
        let stale: Vec<&Route> = ours
            .iter()
            .filter(|r| {
                let host = r.is_host_route();
                let keep = host && r.oif.is_some_and(|oif| wanted.contains(&(r.destination, oif)));
                let replaced = host && wanted_addresses.contains(&r.destination);
                !keep && !replaced && sweep.covers(r.destination)
            })
            .collect();
        let netlink = &self.netlink;
        let missing = missing.into_iter().map(|(address, oif)| netlink.replace_host_route(address, oif));
        outcome.routes_set += run_all(missing, outcome).await;
        outcome.routes_removed += run_all(stale.into_iter().map(|r| netlink.delete_route(r)), outcome).await;
        let routes = started.elapsed();
        self.converge_proxies(desired, sweep, outcome).await;
        tracing::debug!(?routes, proxies = ?started.elapsed(), "routes and proxy entries converged");
    }

    /// Every tap holds exactly its planned router link-local (none without IPv6): one dump of
    /// the link-local addresses of every link.
    pub(super) async fn converge_router_addresses(
        &self,
        desired: &Desired,
        indexes: &BTreeMap<String, u32>,
        outcome: &mut Outcome,
    ) {
        let wanted: HashMap<u32, Option<Ipv6Addr>> =
            desired.taps.iter().filter_map(|tap| Some((*indexes.get(&tap.name)?, tap.router6))).collect();
        let present = match self.netlink.link_local_addresses().await {
            Ok(present) => present,
            Err(e) => return outcome.error(e),
        };
        let present: HashSet<(u32, Ipv6Addr)> =
            present.into_iter().filter(|(index, _)| wanted.contains_key(index)).collect();
        let netlink = &self.netlink;
        let missing = wanted
            .iter()
            .filter_map(|(index, router)| Some((*index, (*router)?)))
            .filter(|key| !present.contains(key))
            .map(|(index, router)| netlink.replace_link_local(index, router));
        run_all(missing, outcome).await;
        let stale = present
            .iter()
            .filter(|(index, address)| wanted.get(index).is_some_and(|router| *router != Some(*address)))
            .map(|(index, address)| netlink.delete_link_local(*index, *address));
        run_all(stale, outcome).await;
    }
}

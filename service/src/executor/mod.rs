//! Applies a [`Desired`] state to the kernel: reads first, changes only what differs, sweeps
//! what vmnetd owns and no longer wants, and keeps going past errors (collecting them).

pub mod netlink;
pub mod sysctl;
pub mod tun;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::names::TAP_PREFIX;
use crate::planner::{Desired, TapSpec};
use netlink::{Link, Netlink, VMNET_ROUTE_PROTOCOL};
use sysctl::Sysctls;

/// Previous values of host sysctls vmnetd changed, by key: restored when no longer wanted.
pub type SavedSysctls = BTreeMap<String, String>;

/// What one `apply` did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub taps_created: usize,
    pub taps_removed: usize,
    pub routes_set: usize,
    pub routes_removed: usize,
    pub sysctls_written: usize,
    /// Every operation that failed; the others were still carried out.
    pub errors: Vec<String>,
    /// Taps that could not be set up.
    pub failed_taps: BTreeSet<String>,
}

pub struct Executor {
    netlink: Netlink,
    sysctls: Sysctls,
    /// Taps (name, ifindex) whose own sysctls were verified. A tap's sysctls only reset when
    /// the tap is recreated, and then it has a new index; [`Executor::forget`] drops the cache.
    verified_taps: HashSet<(String, u32)>,
}

impl Executor {
    pub fn new(netlink: Netlink, sysctls: Sysctls) -> Self {
        Self { netlink, sysctls, verified_taps: HashSet::new() }
    }

    /// Verifies everything again on the next `apply` (for an explicit resync).
    pub fn forget(&mut self) {
        self.verified_taps.clear();
    }

    /// Records the current value of each host sysctl `desired` is about to change for the first
    /// time, so it can be restored later. Returns whether `saved` grew (persist it before
    /// `apply` writes anything).
    pub fn record_originals(&self, desired: &Desired, saved: &mut SavedSysctls) -> Result<bool, String> {
        let mut grew = false;
        for setting in &desired.host_sysctls {
            if saved.contains_key(&setting.key) {
                continue;
            }
            let current = self.sysctls.read(&setting.key).map_err(|e| e.to_string())?;
            if current != setting.value {
                saved.insert(setting.key.clone(), current);
                grew = true;
            }
        }
        Ok(grew)
    }

    pub async fn apply(&mut self, desired: &Desired, saved: &mut SavedSysctls) -> Outcome {
        let mut outcome = Outcome::default();
        let links = match self.netlink.links().await {
            Ok(links) => links,
            Err(e) => {
                outcome.errors.push(e.to_string());
                return outcome;
            }
        };
        let mut by_name: HashMap<String, Link> = links.into_iter().map(|l| (l.name.clone(), l)).collect();
        self.ensure_taps(desired, &mut by_name, &mut outcome).await;
        self.ensure_tap_sysctls(desired, &by_name, &mut outcome);
        self.ensure_host_sysctls(desired, saved, &mut outcome);
        self.ensure_routes(desired, &by_name, &mut outcome).await;
        self.sweep_taps(desired, &by_name, &mut outcome).await;
        outcome
    }

    async fn ensure_taps(&self, desired: &Desired, links: &mut HashMap<String, Link>, outcome: &mut Outcome) {
        for spec in &desired.taps {
            match self.ensure_tap(spec, links).await {
                Ok(created) => outcome.taps_created += usize::from(created),
                Err(e) => {
                    outcome.errors.push(e);
                    outcome.failed_taps.insert(spec.name.clone());
                }
            }
        }
    }

    /// Creates the tap (or fixes its owner), then sets it up with the wanted MTU. Returns
    /// whether it was created.
    async fn ensure_tap(&self, spec: &TapSpec, links: &mut HashMap<String, Link>) -> Result<bool, String> {
        let existing = links.get(&spec.name);
        if existing.is_some_and(|l| !l.is_tun) {
            return Err(format!("{} exists and is not a tap: left alone", spec.name));
        }
        let created = existing.is_none();
        if existing.is_none_or(|l| l.tun_owner != Some(spec.owner)) {
            tun::ensure_persistent_tap(&spec.name, spec.owner).map_err(|e| e.to_string())?;
            let link = self
                .netlink
                .link_by_name(&spec.name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} vanished after creation", spec.name))?;
            links.insert(spec.name.clone(), link);
        }
        let link = links.get(&spec.name).ok_or_else(|| format!("{} is missing", spec.name))?;
        let mtu = spec.mtu.filter(|&mtu| mtu != link.mtu);
        if !link.up || mtu.is_some() {
            self.netlink.set_up(link, mtu).await.map_err(|e| e.to_string())?;
        }
        Ok(created)
    }

    fn ensure_tap_sysctls(
        &mut self,
        desired: &Desired,
        links: &HashMap<String, Link>,
        outcome: &mut Outcome,
    ) {
        let current: HashSet<(String, u32)> = desired
            .taps
            .iter()
            .filter_map(|tap| links.get(&tap.name).map(|l| (tap.name.clone(), l.index)))
            .collect();
        self.verified_taps.retain(|key| current.contains(key));
        for tap in &desired.taps {
            let Some(link) = links.get(&tap.name) else { continue };
            let key = (tap.name.clone(), link.index);
            if self.verified_taps.contains(&key) {
                continue;
            }
            let mut verified = true;
            for setting in &tap.sysctls {
                match self.sysctls.ensure(&setting.key, setting.value) {
                    Ok(wrote) => outcome.sysctls_written += usize::from(wrote),
                    Err(e) => {
                        outcome.errors.push(e.to_string());
                        verified = false;
                    }
                }
            }
            if verified {
                self.verified_taps.insert(key);
            }
        }
    }

    fn ensure_host_sysctls(&self, desired: &Desired, saved: &mut SavedSysctls, outcome: &mut Outcome) {
        for setting in &desired.host_sysctls {
            match self.sysctls.ensure(&setting.key, setting.value) {
                Ok(wrote) => outcome.sysctls_written += usize::from(wrote),
                Err(e) => outcome.errors.push(e.to_string()),
            }
        }
        let wanted: BTreeSet<&str> = desired.host_sysctls.iter().map(|s| s.key.as_str()).collect();
        saved.retain(|key, original| {
            if wanted.contains(key.as_str()) {
                return true;
            }
            match self.sysctls.ensure(key, original) {
                Ok(wrote) => {
                    outcome.sysctls_written += usize::from(wrote);
                    false
                }
                Err(e) if e.is_missing() => false, // its interface is gone: nothing to restore
                Err(e) => {
                    outcome.errors.push(format!("restoring: {e}"));
                    true
                }
            }
        });
    }

    async fn ensure_routes(&self, desired: &Desired, links: &HashMap<String, Link>, outcome: &mut Outcome) {
        let current = match self.netlink.main_routes().await {
            Ok(routes) => routes,
            Err(e) => {
                outcome.errors.push(e.to_string());
                return;
            }
        };
        let ours: Vec<_> = current.into_iter().filter(|r| r.protocol == VMNET_ROUTE_PROTOCOL).collect();
        let present: HashSet<(Ipv4Addr, u32)> = ours
            .iter()
            .filter(|r| r.prefix_len == 32)
            .filter_map(|r| Some((r.destination, r.oif?)))
            .collect();
        let mut wanted: HashSet<(Ipv4Addr, u32)> = HashSet::new();
        for route in &desired.routes {
            let Some(tap) = links.get(&route.tap) else { continue }; // its tap failed: reported
            wanted.insert((route.address, tap.index));
            if !present.contains(&(route.address, tap.index)) {
                match self.netlink.replace_host_route(route.address, tap.index).await {
                    Ok(()) => outcome.routes_set += 1,
                    Err(e) => outcome.errors.push(e.to_string()),
                }
            }
        }
        let wanted_addresses: HashSet<Ipv4Addr> = wanted.iter().map(|(addr, _)| *addr).collect();
        for route in &ours {
            let keep = route.prefix_len == 32
                && route.oif.is_some_and(|oif| wanted.contains(&(route.destination, oif)));
            if keep {
                continue;
            }
            // A replaced route (same /32, other tap) is already gone.
            let replaced = route.prefix_len == 32 && wanted_addresses.contains(&route.destination);
            if replaced {
                continue;
            }
            match self.netlink.delete_route(route).await {
                Ok(()) => outcome.routes_removed += 1,
                Err(e) => outcome.errors.push(e.to_string()),
            }
        }
    }

    async fn sweep_taps(&self, desired: &Desired, links: &HashMap<String, Link>, outcome: &mut Outcome) {
        let wanted: BTreeSet<&str> = desired.taps.iter().map(|t| t.name.as_str()).collect();
        for link in links.values() {
            if link.is_tun && link.name.starts_with(TAP_PREFIX) && !wanted.contains(link.name.as_str()) {
                match self.netlink.delete_link(link).await {
                    Ok(()) => outcome.taps_removed += 1,
                    Err(e) => outcome.errors.push(e.to_string()),
                }
            }
        }
    }
}

//! Applies planned state to the kernel: reads first, changes only what differs, sweeps what
//! vmnetd owns and no longer wants, and keeps going past errors (collecting them).
//!
//! Two kinds of step: [`Kernel::sync_all`] reads everything back and sweeps (at start, on
//! uplink changes, on resync and on a slow timer); the per-guest steps touch one guest's tap,
//! sysctls and route only, so that adding or removing a guest costs the same with 1000 guests
//! as with one.

mod filter;
mod guest;
mod host;
mod proxy;
mod sync;
pub mod sysctl;
pub mod tun;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;

use futures::{stream, FutureExt, StreamExt};
use tokio::task::JoinHandle;

use crate::firewall::{Blocking, Firewall};
use crate::model::{Prefix6, Subnet};
use crate::netlink::{self, Netlink};
use crate::planner::{Desired, GuestPlan, HostRoute, Sysctl};
use sysctl::Sysctls;

/// Previous values of host sysctls vmnetd changed, by key: restored when no longer wanted.
pub type SavedSysctls = BTreeMap<String, String>;

/// What one step did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub taps_created: usize,
    pub taps_removed: usize,
    pub routes_set: usize,
    pub routes_removed: usize,
    pub proxies_set: usize,
    pub proxies_removed: usize,
    pub sysctls_written: usize,
    /// Every operation that failed; the others were still carried out.
    pub errors: Vec<String>,
    /// Taps that could not be set up.
    pub failed_taps: BTreeSet<String>,
    /// The interface index of every tap set up (or verified) by the step.
    pub tap_indexes: BTreeMap<String, u32>,
}

impl Outcome {
    fn error(&mut self, error: impl ToString) {
        self.errors.push(error.to_string());
    }

    /// What the step did, in a line (the tap indexes left out: one per guest).
    pub fn summary(&self) -> String {
        format!(
            "taps +{} -{}, routes +{} -{}, proxy entries +{} -{}, sysctls {}, errors {}",
            self.taps_created,
            self.taps_removed,
            self.routes_set,
            self.routes_removed,
            self.proxies_set,
            self.proxies_removed,
            self.sysctls_written,
            self.errors.len()
        )
    }
}

/// Which of vmnetd's routes and proxy entries that are no longer wanted a step removes.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    All,
    /// Only those for addresses inside the uplink's subnet and IPv6 prefix, where a stale one
    /// would answer for, or route away, a LAN host's address; the others (the old network's,
    /// after a re-home) wait for the full sync that follows.
    Inside(Subnet, Option<Prefix6>),
}

impl Sweep {
    fn covers(self, address: IpAddr) -> bool {
        match (self, address) {
            (Sweep::All, _) => true,
            (Sweep::Inside(subnet, _), IpAddr::V4(v4)) => subnet.contains(v4),
            (Sweep::Inside(_, prefix), IpAddr::V6(v6)) => prefix.is_some_and(|p| p.contains(v6)),
        }
    }
}

/// Requests (routes, proxy entries) in flight at once: the connection task batches them into
/// fewer wake-ups.
const IN_FLIGHT: usize = 64;

/// Runs netlink `requests`, [`IN_FLIGHT`] at a time; returns how many succeeded and records the
/// failures in `outcome`.
async fn run_all<F>(requests: impl IntoIterator<Item = F>, outcome: &mut Outcome) -> usize
where
    F: Future<Output = netlink::Result<()>>,
{
    let results: Vec<_> = stream::iter(requests).buffer_unordered(IN_FLIGHT).collect().await;
    let mut done = 0;
    for result in results {
        match result {
            Ok(()) => done += 1,
            Err(e) => outcome.error(e),
        }
    }
    done
}

/// The kernel operations the reconciler asks for (faked in its unit tests).
pub trait Kernel {
    /// Records the current value of each of `wanted`'s host sysctls that is about to change
    /// for the first time, so it can be restored later. Returns whether `saved` grew (persist
    /// it before anything is written).
    fn record_originals(&self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Result<bool, String>;

    /// Reads everything back and converges it to `desired`, sweeping what vmnetd owns and no
    /// longer wants; restores saved host sysctls that are no longer wanted.
    fn sync_all(&mut self, desired: &Desired, saved: &mut SavedSysctls) -> impl Future<Output = Outcome>;

    /// The routes and host sysctls alone, with the taps as last set up (`taps`: name →
    /// index): what an uplink change moves, before the full sync that follows it.
    fn sync_routes(
        &mut self,
        desired: &Desired,
        saved: &mut SavedSysctls,
        taps: &BTreeMap<String, u32>,
    ) -> impl Future<Output = Outcome>;

    /// One guest's tap, tap sysctls, routes and proxy entries. `previous` are the routes it
    /// had: those not planned any more go (with their proxy entries).
    fn ensure_guest(&mut self, plan: &GuestPlan, previous: &[HostRoute]) -> impl Future<Output = Outcome>;

    /// Removes one guest's routes and proxy entries and takes its tap down (no frames pass
    /// from then on); the tap itself is deleted in the background.
    fn remove_guest(&mut self, tap: &str, routes: &[HostRoute]) -> impl Future<Output = Outcome>;

    /// Writes the host sysctls `wanted` and restores the saved ones that are not.
    fn sync_host(&mut self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Outcome;

    /// Waits until the taps being deleted are gone.
    fn settle(&mut self) -> impl Future<Output = Outcome>;

    /// Verifies every tap's sysctls again at the next full sync.
    fn forget(&mut self);
}

pub struct Executor {
    netlink: Netlink,
    sysctls: Sysctls,
    /// Taps (name, ifindex) whose own sysctls were verified. A tap's sysctls only reset when
    /// the tap is recreated, and then it has a new index.
    verified_taps: HashSet<(String, u32)>,
    /// Taps being deleted on the netlink thread, by name.
    deleting: HashMap<String, JoinHandle<netlink::Result<()>>>,
    /// vmnetd's nftables tables.
    firewall: Firewall,
    /// Per IP version, the host did not forward before vmnetd (as last seen in the saved sysctls).
    blocking: Blocking,
}

impl Executor {
    pub fn new(netlink: Netlink, sysctls: Sysctls) -> Self {
        Self {
            netlink,
            sysctls,
            verified_taps: HashSet::new(),
            deleting: HashMap::new(),
            firewall: Firewall::default(),
            blocking: Blocking::default(),
        }
    }

    /// Deletes a tap in the background (the kernel takes tens of ms for it).
    fn start_deleting(&mut self, index: u32, name: &str) {
        let netlink = self.netlink.clone();
        let owned = name.to_owned();
        let task = tokio::spawn(async move { netlink.delete_link(index, &owned).await });
        self.verified_taps.retain(|(tap, _)| tap != name);
        self.deleting.insert(name.to_owned(), task);
    }

    /// Waits for the deletion of tap `name`, if one is under way, so it can be created anew.
    async fn finish_deleting(&mut self, name: &str, outcome: &mut Outcome) {
        if let Some(task) = self.deleting.remove(name) {
            collect_deletion(name, task.await, outcome);
        }
    }

    /// Collects the deletions that have finished; returns the names still being deleted.
    fn reap_deletions(&mut self, outcome: &mut Outcome) -> BTreeSet<String> {
        let done: Vec<String> = self
            .deleting
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in done {
            // Finished, so it is ready at the first poll.
            if let Some(result) = self.deleting.remove(&name).and_then(|task| task.now_or_never()) {
                collect_deletion(&name, result, outcome);
            }
        }
        self.deleting.keys().cloned().collect()
    }
}

fn collect_deletion(
    name: &str,
    result: Result<netlink::Result<()>, tokio::task::JoinError>,
    outcome: &mut Outcome,
) {
    match result {
        Ok(Ok(())) => outcome.taps_removed += 1,
        Ok(Err(e)) => outcome.error(e),
        Err(e) => outcome.error(format!("deleting {name}: {e}")),
    }
}

impl Kernel for Executor {
    fn record_originals(&self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Result<bool, String> {
        host::record_originals(&self.sysctls, wanted, saved)
    }

    async fn sync_all(&mut self, desired: &Desired, saved: &mut SavedSysctls) -> Outcome {
        self.full_sync(desired, saved).await
    }

    async fn sync_routes(
        &mut self,
        desired: &Desired,
        saved: &mut SavedSysctls,
        taps: &BTreeMap<String, u32>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        self.sync_filter(desired, saved, &mut outcome);
        host::sync(&self.sysctls, self.filtered(&desired.host_sysctls), saved, &mut outcome);
        let sweep = desired.subnet.map_or(Sweep::All, |subnet| Sweep::Inside(subnet, desired.prefix6));
        self.converge_routes(desired, taps, sweep, &mut outcome).await;
        // The new prefix's router address before its advertisements; an old one left on a
        // tap (the uplink lost IPv6) goes with the full sync that follows.
        if desired.prefix6.is_some() {
            self.converge_router_addresses(desired, taps, &mut outcome).await;
        }
        self.sweep_filter(desired, &mut outcome);
        outcome
    }

    async fn ensure_guest(&mut self, plan: &GuestPlan, previous: &[HostRoute]) -> Outcome {
        let mut outcome = Outcome::default();
        self.finish_deleting(&plan.tap.name, &mut outcome).await;
        self.set_up_guest(plan, previous, &mut outcome).await;
        outcome
    }

    async fn remove_guest(&mut self, tap: &str, routes: &[HostRoute]) -> Outcome {
        let mut outcome = Outcome::default();
        self.take_down_guest(tap, routes, &mut outcome).await;
        outcome
    }

    fn sync_host(&mut self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Outcome {
        let mut outcome = Outcome::default();
        self.filter_before_forwarding(wanted, saved, &mut outcome);
        host::sync(&self.sysctls, self.filtered(wanted), saved, &mut outcome);
        self.filter_after_forwarding(wanted, &mut outcome);
        outcome
    }

    async fn settle(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        for (name, task) in std::mem::take(&mut self.deleting) {
            collect_deletion(&name, task.await, &mut outcome);
        }
        outcome
    }

    fn forget(&mut self) {
        self.verified_taps.clear();
    }
}

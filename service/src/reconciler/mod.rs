//! The one task that owns all state. It selects over typed inputs that their producers own —
//! the uplink source's `watch` of the latest uplink, D-Bus commands with their reply channels,
//! DHCP decline notices — and over two timers: a retry after failed kernel operations and a
//! slow full sync that catches changes made from outside.
//!
//! Adding, removing or moving one guest changes only that guest's kernel state ([`guests`]);
//! the full read-back-and-sweep ([`converge`]) runs at start, on every uplink change, on
//! resync and on the timer.

mod converge;
mod guests;
mod ipv6;
pub mod notify;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::address_book::{AddressBook, NetworkChange, Prober};
use crate::bus::Command;
use crate::carrier::{TapFeed, TapUpdate};
use crate::config::Config;
use crate::deadline::sleep_until;
use crate::dhcp::{Declined, LeaseParams, Leases, ServedTap, TapLease};
use crate::executor::{Kernel, Outcome, SavedSysctls};
use crate::model::{Guest, Subnet, Uplink};
use crate::ndp::{Found, Routers};
use crate::planner::{Addresses, Learned6, NO_ADDRESSES6};
use crate::state::{ChangeRef, HostRef, State, StateFile, StateRef, StoredGuestRef};
use crate::uplink::UplinkSource;
use crate::view::{GuestView, ManagerView};
use converge::Scope;
use notify::Notifier;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often everything is read back and swept even when nothing asked for it.
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(60);
/// Problems kept for `Problems`, the latest.
const MAX_PROBLEMS: usize = 16;

/// What the reconciler listens to; each producer owns its sending side.
pub struct Inputs {
    pub uplink: watch::Receiver<Option<Uplink>>,
    pub commands: mpsc::Receiver<Command>,
    pub declines: mpsc::Receiver<Declined>,
    /// Guests' IPv6 addresses found in use or unused, from the Neighbor Discovery task.
    pub ndp: mpsc::Receiver<Found>,
    /// The taps that exist (with their carrier) and their changes, from rtnetlink link events.
    pub taps: TapFeed,
}

/// What the reconciler publishes for readers (D-Bus objects, the DHCP server).
pub struct Outputs<N> {
    pub view: watch::Sender<ManagerView>,
    /// Set once the first full view is published: D-Bus reads wait for it.
    pub ready: watch::Sender<bool>,
    pub leases: watch::Sender<Leases>,
    /// What the Neighbor Discovery task advertises and defends.
    pub routers: watch::Sender<Routers>,
    pub notifier: N,
}

pub struct Reconciler<S, K, P, N> {
    config: Config,
    source: S,
    kernel: K,
    book: AddressBook<P>,
    state_file: StateFile,
    uplink: Option<Uplink>,
    guests: BTreeMap<String, Guest>,
    saved: SavedSysctls,
    last_subnet: Option<Subnet>,
    /// What changed since the state was written.
    unsaved: Unsaved,
    outputs: Outputs<N>,
    /// The index of every guest's tap as last set up (DHCP serves a tap by it).
    tap_indexes: BTreeMap<String, u32>,
    retry: Option<(Instant, Duration)>,
    /// The address each guest was last given: a different one means re-home (QMP flap).
    given: BTreeMap<String, Ipv4Addr>,
    /// The IPv6 addresses each guest was found using (routed while inside the uplink's prefix).
    learned6: BTreeMap<String, Learned6>,
    /// The uplink moved to another network since the last full sync.
    new_network: bool,
    /// Kernel operations that failed since the last clean full sync (published as `Problems`).
    problems: Vec<String>,
}

/// Why a change could not be kept.
#[derive(Debug)]
struct SaveFailed(String);

/// The guests (added, changed or removed) and whether the host part changed since the state
/// was last written.
#[derive(Debug, Default)]
struct Unsaved {
    guests: BTreeSet<String>,
    host: bool,
}

impl Unsaved {
    fn guest(&mut self, name: &str) {
        self.guests.insert(name.to_owned());
    }

    fn is_empty(&self) -> bool {
        self.guests.is_empty() && !self.host
    }
}

impl<S: UplinkSource, K: Kernel, P: Prober, N: Notifier> Reconciler<S, K, P, N> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        source: S,
        kernel: K,
        prober: P,
        state_file: StateFile,
        state: State,
        uplink: Option<Uplink>,
        outputs: Outputs<N>,
    ) -> Self {
        let window = Duration::from_millis(config.arp.probe_ms.into());
        let mut book = AddressBook::new(config.pool, window, prober);
        let numbers = state.guests.iter().filter_map(|g| Some((g.guest.name.clone(), g.host_number?)));
        book.restore(numbers, state.last_subnet, uplink.as_ref());
        let given = state
            .guests
            .iter()
            .filter_map(|g| Some((g.guest.name.clone(), state.last_subnet?.host(g.host_number?)?)))
            .collect();
        let learned6 = state
            .guests
            .iter()
            .filter(|g| !g.addresses6.is_empty())
            .map(|g| (g.guest.name.clone(), g.addresses6.clone()))
            .collect();
        Self {
            config,
            source,
            kernel,
            book,
            state_file,
            uplink,
            guests: state.guests.into_iter().map(|g| (g.guest.name.clone(), g.guest)).collect(),
            saved: state.saved_sysctls,
            last_subnet: state.last_subnet,
            unsaved: Unsaved::default(),
            outputs,
            tap_indexes: BTreeMap::new(),
            retry: None,
            given,
            learned6,
            new_network: false,
            problems: Vec::new(),
        }
    }

    /// The first full sync: restores every guest and sweeps leftovers, and waits until the
    /// swept taps are gone.
    pub async fn start(&mut self) {
        let _ = self.converge().await;
        let outcome = self.kernel.settle().await;
        self.after_apply(&outcome);
    }

    /// Runs until an input closes: the uplink source or the bus going away ends vmnetd.
    pub async fn run(mut self, mut inputs: Inputs) {
        let mut full_sync = tokio::time::interval_at(Instant::now() + FULL_SYNC_PERIOD, FULL_SYNC_PERIOD);
        full_sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut declines_open = true;
        let mut ndp_open = true;
        loop {
            let retry_at = self.retry.map(|(at, _)| at);
            tokio::select! {
                changed = inputs.uplink.changed() => {
                    if changed.is_err() {
                        return tracing::error!("the uplink source stopped");
                    }
                    let uplink = inputs.uplink.borrow_and_update().clone();
                    if uplink != self.uplink {
                        self.set_uplink(uplink).await;
                        // The routes move first and the re-home is published; then everything
                        // is read back.
                        let _ = self.converge_with(Scope::Routes).await;
                        let _ = self.converge().await;
                    }
                }
                command = inputs.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return tracing::error!("the D-Bus interface stopped"),
                },
                declined = inputs.declines.recv(), if declines_open => match declined {
                    Some(declined) => self.declined(declined).await,
                    None => declines_open = false, // DHCP is off
                },
                found = inputs.ndp.recv(), if ndp_open => match found {
                    Some(found) => self.found6(found).await,
                    None => ndp_open = false, // IPv6 is off
                },
                update = inputs.taps.next() => match update {
                    Some(TapUpdate::Changed(change)) if change.after.is_none() => {
                        self.recreate_vanished_tap(&change.tap).await;
                    }
                    Some(TapUpdate::Changed(_)) => {}
                    Some(TapUpdate::Lost) => {
                        let present = inputs.taps.now.borrow().clone();
                        self.recreate_vanished_taps(&present).await;
                    }
                    None => return tracing::error!("the tap watcher stopped"),
                },
                () = sleep_until(retry_at) => {
                    tracing::info!("retrying after earlier errors");
                    let _ = self.converge().await;
                }
                _ = full_sync.tick() => {
                    let _ = self.converge().await;
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::AddGuest(request, reply) => {
                let _ = reply.send(self.add_guest(request).await);
            }
            Command::RemoveGuest(name, reply) => {
                let _ = reply.send(self.remove_guest(&name).await);
            }
            Command::Resync(reply) => {
                let _ = reply.send(self.resync().await);
            }
        }
    }

    async fn set_uplink(&mut self, uplink: Option<Uplink>) {
        match &uplink {
            Some(up) => tracing::info!(
                "uplink {} is {}/{} (gateway {:?}, mtu {})",
                up.interface,
                up.address,
                up.prefix_len,
                up.gateway,
                up.mtu
            ),
            None => tracing::info!("uplink offline"),
        }
        if self.book.set_uplink(uplink.as_ref()).await == NetworkChange::NewNetwork {
            self.new_network = true;
        }
        self.uplink = uplink;
    }

    /// Persists what changed: the guests, their addresses, the saved sysctls.
    fn save(&mut self) -> Result<(), SaveFailed> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let (guests, book, unsaved, learned6) = (&self.guests, &self.book, &self.unsaved, &self.learned6);
        let stored = |guest| stored_guest(guest, book, learned6);
        let host = HostRef { saved_sysctls: &self.saved, last_subnet: self.last_subnet };
        let change = || ChangeRef {
            guests: unsaved.guests.iter().filter_map(|name| guests.get(name)).map(stored).collect(),
            removed: unsaved
                .guests
                .iter()
                .filter(|name| !guests.contains_key(*name))
                .map(String::as_str)
                .collect(),
            host: unsaved.host.then_some(host),
        };
        let whole = || StateRef { guests: guests.values().map(stored).collect(), host };
        self.state_file.save(change, whole).map_err(|e| {
            tracing::error!("cannot save state: {e}");
            SaveFailed(format!("cannot save state: {e}"))
        })?;
        self.unsaved = Unsaved::default();
        Ok(())
    }

    /// Logs what failed, keeps it for `Problems` and schedules a full sync with back-off.
    fn after_apply(&mut self, outcome: &Outcome) {
        if outcome.errors.is_empty() {
            return;
        }
        for error in &outcome.errors {
            tracing::warn!("{error}");
            if !self.problems.contains(error) {
                self.problems.push(error.clone());
            }
        }
        let excess = self.problems.len().saturating_sub(MAX_PROBLEMS);
        self.problems.drain(..excess);
        let delay = self.retry.map_or(RETRY_FIRST, |(_, last)| (last * 2).min(RETRY_MAX));
        tracing::warn!("{} operations failed; retrying in {delay:?}", outcome.errors.len());
        self.retry = Some((Instant::now() + delay, delay));
    }

    /// The lease DHCP hands to `guest`'s tap, if the tap exists.
    fn served_tap(&self, guest: &Guest) -> Option<ServedTap> {
        let ifindex = *self.tap_indexes.get(&guest.tap)?;
        let lease =
            TapLease { guest: guest.name.clone(), mac: guest.mac, address: self.book.address(&guest.name) };
        Some(ServedTap { ifindex, lease })
    }

    fn guest_view(&self, name: &str) -> Option<GuestView> {
        self.guests.get(name).map(|g| GuestView::new(g, self.book.status(name), self.routed6(name)))
    }

    /// A guest's addresses as planned: the IPv4 one it was given, the IPv6 ones it uses.
    fn addresses(&self, name: &str) -> Addresses<'_> {
        Addresses { v4: self.book.address(name), v6: self.learned6.get(name).unwrap_or(&NO_ADDRESSES6) }
    }

    /// Publishes one guest's lease and view after a change of that guest alone.
    async fn publish_guest(&mut self, name: &str, tap: &str) {
        let served = self.guests.get(name).and_then(|g| self.served_tap(g));
        self.outputs.leases.send_modify(|leases| match served {
            Some(served) => drop(leases.taps.insert(tap.to_owned(), served)),
            None => drop(leases.taps.remove(tap)),
        });
        let new = self.guest_view(name);
        let mut old = None;
        self.outputs.view.send_modify(|view| {
            old = match &new {
                Some(guest) => view.guests.insert(name.to_owned(), guest.clone()),
                None => view.guests.remove(name),
            }
        });
        self.outputs.notifier.publish_guest(name, old.as_ref(), new.as_ref()).await;
        self.publish_router_tap(name, tap);
        self.publish_problems().await;
    }

    /// Publishes `Problems` when a step changed them.
    async fn publish_problems(&mut self) {
        let changed = self.outputs.view.send_if_modified(|view| {
            let changed = view.problems != self.problems;
            if changed {
                view.problems = self.problems.clone();
            }
            changed
        });
        if changed {
            self.outputs.notifier.problems_changed().await;
        }
    }

    /// Publishes every lease and the whole view after a full sync. Both are updated in place,
    /// entry by entry: what did not change is neither copied nor signalled (and a long-lived
    /// copy of every guest is not scattered over the memory a full sync just freed).
    async fn publish_all(&mut self, rehomed: Option<(Subnet, Subnet)>) {
        let params = LeaseParams::new(&self.config.dhcp, self.uplink.as_ref());
        let served: BTreeMap<&str, ServedTap> =
            self.guests.values().filter_map(|g| Some((g.tap.as_str(), self.served_tap(g)?))).collect();
        self.outputs.leases.send_if_modified(|leases| {
            let mut changed = leases.params != params;
            if changed {
                leases.params = params;
            }
            let before = leases.taps.len();
            leases.taps.retain(|tap, _| served.contains_key(tap.as_str()));
            changed |= leases.taps.len() != before;
            for (tap, entry) in served {
                if leases.taps.get(tap) != Some(&entry) {
                    leases.taps.insert(tap.to_owned(), entry);
                    changed = true;
                }
            }
            changed
        });
        let mut header = ManagerView::new(self.uplink.as_ref(), std::iter::empty());
        header.problems = self.problems.clone();
        let mut old_header = ManagerView::default();
        let mut changes = Vec::new();
        self.outputs.view.send_modify(|view| {
            old_header = view.without_guests();
            view.set_header(&header);
            view.guests.retain(|name, old| {
                let keep = self.guests.contains_key(name);
                if !keep {
                    changes.push((name.clone(), Some(old.clone()), None));
                }
                keep
            });
            for guest in self.guests.values() {
                let fresh = GuestView::new(guest, self.book.status(&guest.name), self.routed6(&guest.name));
                match view.guests.get_mut(&guest.name) {
                    Some(old) if *old == fresh => {}
                    Some(old) => changes.push((
                        guest.name.clone(),
                        Some(std::mem::replace(old, fresh.clone())),
                        Some(fresh),
                    )),
                    None => {
                        view.guests.insert(guest.name.clone(), fresh.clone());
                        changes.push((guest.name.clone(), None, Some(fresh)));
                    }
                }
            }
        });
        self.outputs.ready.send_replace(true);
        self.publish_routers();
        // The manager first: `Rehomed` tells clients the kernel has converged.
        self.outputs.notifier.publish(&old_header, &header, rehomed).await;
        for (name, old, new) in changes {
            self.outputs.notifier.publish_guest(&name, old.as_ref(), new.as_ref()).await;
        }
    }

    /// Announces the addresses given since they were last told, and asks guests that moved to
    /// renew their lease; on a new network (`everyone`) all of them.
    fn tell_guests<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, everyone: bool) {
        let Some(network) = self.book.network() else { return };
        let interface = network.interface.clone();
        let mut fresh = Vec::new();
        for name in names {
            let (Some(guest), Some(address)) = (self.guests.get(name), self.book.address(name)) else {
                continue;
            };
            let previous = self.given.insert(name.to_owned(), address);
            if previous == Some(address) && !everyone {
                continue;
            }
            fresh.push(address);
            if let Some(old) = previous {
                self.outputs.notifier.ask_to_renew(guest, old, address);
            }
        }
        if !fresh.is_empty() {
            self.outputs.notifier.announce(&interface, fresh);
        }
    }
}

/// A guest as the state file keeps it.
fn stored_guest<'a, P: Prober>(
    guest: &'a Guest,
    book: &AddressBook<P>,
    learned6: &'a BTreeMap<String, Learned6>,
) -> StoredGuestRef<'a> {
    StoredGuestRef {
        guest,
        host_number: book.number(&guest.name),
        addresses6: learned6.get(&guest.name).unwrap_or(&NO_ADDRESSES6),
    }
}

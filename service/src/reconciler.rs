//! The one task that owns all state. Everything that changes something arrives here as an
//! [`Event`]; after each one the reconciler converges the kernel to the plan and publishes the
//! new view.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use vmnet_dbus::Error;
use zbus::OwnedObjectPath;

use crate::allocator::{self, Occupancy};
use crate::arp;
use crate::bus::publish::Publisher;
use crate::config::Config;
use crate::dhcp::Leases;
use crate::executor::{Executor, Outcome, SavedSysctls};
use crate::model::{Guest, Mac, Subnet, Uplink};
use crate::names::{default_mac, tap_name};
use crate::planner;
use crate::qmp;
use crate::state::{State, StateFile, FORMAT_VERSION};
use crate::uplink::UplinkSource;
use crate::view::ManagerView;

/// A request to add a guest, already checked for syntax and authorized.
#[derive(Debug)]
pub struct NewGuest {
    pub name: String,
    pub owner: u32,
    pub mac: Option<Mac>,
    pub address: Option<Ipv4Addr>,
    pub qmp: Option<String>,
}

pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

#[derive(Debug)]
pub enum Event {
    /// The uplink source saw a change (`None`: offline).
    Uplink(Option<Uplink>),
    AddGuest(NewGuest, Reply<OwnedObjectPath>),
    RemoveGuest(String, Reply<()>),
    /// Re-read the uplink and converge.
    Resync(Reply<()>),
    /// A guest's DHCP client found its address in use on the LAN.
    Declined {
        guest: String,
        address: Ipv4Addr,
    },
}

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Rounds of probing in one converge: each round moves the guests whose address answered.
const PROBE_ROUNDS: usize = 4;
/// Pool addresses probed at once for a new guest.
const PROBE_BATCH: usize = 4;

pub struct Reconciler<S> {
    config: Config,
    source: S,
    executor: Executor,
    state_file: StateFile,
    uplink: Option<Uplink>,
    guests: BTreeMap<String, Guest>,
    saved: SavedSysctls,
    last_subnet: Option<Subnet>,
    /// The guests or saved values changed since the state file was written.
    unsaved: bool,
    view: watch::Sender<ManagerView>,
    publisher: Publisher,
    leases: watch::Sender<Leases>,
    retry: Option<(Instant, Duration)>,
    /// Addresses of the current subnet found in use on the LAN (ARP answer or DHCP decline),
    /// with who holds them; forgotten at the next uplink change or Resync.
    in_use: BTreeMap<Ipv4Addr, String>,
    /// Addresses of the current subnet that passed a probe (or were ours before a restart).
    probed: BTreeSet<Ipv4Addr>,
    /// The address each guest was last given: a different one means re-home (QMP flap).
    given: BTreeMap<String, Ipv4Addr>,
}

/// Why a converge could not keep a change.
struct ConvergeFailure(String);

impl<S: UplinkSource> Reconciler<S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        source: S,
        executor: Executor,
        state_file: StateFile,
        state: State,
        uplink: Option<Uplink>,
        view: watch::Sender<ManagerView>,
        publisher: Publisher,
        leases: watch::Sender<Leases>,
    ) -> Self {
        let given: BTreeMap<String, Ipv4Addr> = state
            .guests
            .iter()
            .filter_map(|g| Some((g.name.clone(), state.last_subnet?.host(g.host_number?)?)))
            .collect();
        // After a restart in the same subnet the guests keep addresses that were probed then.
        let probed = match &uplink {
            Some(up) if state.last_subnet == Some(up.subnet()) => given.values().copied().collect(),
            _ => BTreeSet::new(),
        };
        Self {
            config,
            source,
            executor,
            state_file,
            uplink,
            guests: state.guests.into_iter().map(|g| (g.name.clone(), g)).collect(),
            saved: state.saved_sysctls,
            last_subnet: state.last_subnet,
            unsaved: false,
            view,
            publisher,
            leases,
            retry: None,
            in_use: BTreeMap::new(),
            probed,
            given,
        }
    }

    /// The first converge at start: restores every guest and sweeps leftovers.
    pub async fn start(&mut self) {
        let _ = self.converge().await;
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        loop {
            let retry_at = self.retry.map(|(at, _)| at);
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => Some(event),
                    None => return,
                },
                () = sleep_until(retry_at) => None,
            };
            match event {
                None => {
                    tracing::info!("retrying after earlier errors");
                    let _ = self.converge().await;
                }
                Some(Event::Uplink(uplink)) => {
                    // A burst of uplink changes: only the latest matters.
                    let mut latest = uplink;
                    let mut others = Vec::new();
                    while let Ok(next) = events.try_recv() {
                        match next {
                            Event::Uplink(u) => latest = u,
                            other => others.push(other),
                        }
                    }
                    self.set_uplink(latest);
                    let _ = self.converge().await;
                    for other in others {
                        self.handle(other).await;
                    }
                }
                Some(event) => self.handle(event).await,
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Uplink(uplink) => {
                self.set_uplink(uplink);
                let _ = self.converge().await;
            }
            Event::AddGuest(request, reply) => {
                let _ = reply.send(self.add_guest(request).await);
            }
            Event::RemoveGuest(name, reply) => {
                let _ = reply.send(self.remove_guest(&name).await);
            }
            Event::Declined { guest, address } => {
                let holds = self.guests.get(&guest).and_then(|g| self.address_of(g)) == Some(address);
                if holds {
                    self.in_use.insert(address, format!("declined by guest {guest}'s DHCP client"));
                    self.probed.remove(&address);
                    let _ = self.converge().await;
                }
            }
            Event::Resync(reply) => {
                self.executor.forget();
                self.in_use.clear();
                let result = match self.source.read().await {
                    Ok(uplink) => {
                        self.set_uplink(uplink);
                        self.converge().await.map(|_| ()).map_err(|ConvergeFailure(m)| Error::Failed(m))
                    }
                    Err(e) => Err(Error::Failed(format!("reading the uplink: {e}"))),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn set_uplink(&mut self, uplink: Option<Uplink>) {
        if uplink != self.uplink {
            // A conflict is retried at the next change; probes only hold within one subnet.
            self.in_use.clear();
            if uplink.as_ref().map(Uplink::subnet) != self.uplink.as_ref().map(Uplink::subnet) {
                self.probed.clear();
            }
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
            self.uplink = uplink;
        }
    }

    async fn add_guest(&mut self, request: NewGuest) -> Result<OwnedObjectPath, Error> {
        let requested = request.address;
        let mut guest = self.admit(request)?;
        guest.host_number = self.choose_address(requested).await?;
        let name = guest.name.clone();
        let tap = guest.tap.clone();
        self.guests.insert(name.clone(), guest);
        self.unsaved = true;
        match self.converge().await {
            Ok(outcome) if !outcome.failed_taps.contains(&tap) => {
                tracing::info!("added guest {name} on {tap}");
                Ok(vmnet_dbus::guest_object_path(&name))
            }
            result => {
                let reason = match result {
                    Ok(outcome) => outcome.errors.join("; "),
                    Err(ConvergeFailure(message)) => message,
                };
                self.guests.remove(&name);
                self.unsaved = true;
                let _ = self.converge().await;
                Err(Error::Failed(format!("could not set up guest {name}: {reason}")))
            }
        }
    }

    /// Checks a new guest against the others and gives it a tap, a MAC and an address.
    fn admit(&self, request: NewGuest) -> Result<Guest, Error> {
        if self.guests.contains_key(&request.name) {
            return Err(Error::AlreadyExists(format!("a guest named {:?} already exists", request.name)));
        }
        let mac = match request.mac {
            Some(mac) => {
                if let Some(other) = self.guests.values().find(|g| g.mac == mac) {
                    return Err(Error::AlreadyExists(format!("MAC {mac} is used by guest {:?}", other.name)));
                }
                mac
            }
            None => (0..)
                .map(|attempt| default_mac(&request.name, attempt))
                .find(|mac| self.guests.values().all(|g| g.mac != *mac))
                .unwrap_or_else(|| default_mac(&request.name, 0)),
        };
        let tap = (0..)
            .map(|attempt| tap_name(&request.name, attempt))
            .find(|tap| self.guests.values().all(|g| g.tap != *tap))
            .unwrap_or_else(|| tap_name(&request.name, 0));
        if let (None, Some(address)) = (&self.uplink, request.address) {
            return Err(Error::AddressUnavailable(format!(
                "cannot give {address}: the uplink is offline, so there is no subnet to check it against"
            )));
        }
        let host_number = None; // chosen and probed by choose_address
        Ok(Guest { name: request.name, tap, mac, owner: request.owner, host_number, qmp: request.qmp })
    }

    /// An address for a new guest: the requested one, or the first free one of the pool that
    /// nobody on the LAN answers for (probed in batches).
    async fn choose_address(&mut self, requested: Option<Ipv4Addr>) -> Result<Option<u32>, Error> {
        let Some(uplink) = self.uplink.clone() else { return Ok(None) };
        let subnet = uplink.subnet();
        if let Some(address) = requested {
            // Asked for by name: look again rather than trust an earlier answer.
            self.in_use.remove(&address);
        }
        loop {
            let in_use: BTreeSet<Ipv4Addr> = self.in_use.keys().copied().collect();
            let mut occupancy = Occupancy::new(&uplink, &in_use);
            for number in self.guests.values().filter_map(|g| g.host_number) {
                occupancy.take(number);
            }
            let candidates: Vec<u32> = match requested {
                Some(address) => vec![occupancy.take_address(address).map_err(Error::AddressUnavailable)?],
                None => (0..PROBE_BATCH).map_while(|_| occupancy.take_from(&self.config.pool)).collect(),
            };
            if candidates.is_empty() {
                return Err(Error::AddressUnavailable(format!(
                    "no free address left in the pool ({} to {}) of {subnet}{}; remove a guest or widen [pool] in vmnetd.toml",
                    self.config.pool.first,
                    self.config.pool.last,
                    self.in_use_note(),
                )));
            }
            let addresses: Vec<Ipv4Addr> = candidates.iter().filter_map(|&n| subnet.host(n)).collect();
            self.probe(&uplink, &addresses).await;
            if let Some(&number) =
                candidates.iter().find(|&&n| subnet.host(n).is_some_and(|a| !self.in_use.contains_key(&a)))
            {
                return Ok(Some(number));
            }
            if let Some(address) = requested {
                let why = self.in_use.get(&address).cloned().unwrap_or_default();
                return Err(Error::AddressUnavailable(format!("{address} is in use on the LAN: {why}")));
            }
        }
    }

    fn in_use_note(&self) -> String {
        match self.in_use.len() {
            0 => String::new(),
            n => format!(" ({n} of its addresses are in use on the LAN)"),
        }
    }

    /// Probes the addresses not probed yet in this subnet and records those in use.
    async fn probe(&mut self, uplink: &Uplink, addresses: &[Ipv4Addr]) {
        let fresh: Vec<Ipv4Addr> = addresses.iter().copied().filter(|a| !self.probed.contains(a)).collect();
        if fresh.is_empty() {
            return;
        }
        let window = Duration::from_millis(self.config.arp.probe_ms.into());
        match arp::probe(&uplink.interface, &fresh, window).await {
            Ok(found) => {
                for address in fresh {
                    match found.get(&address) {
                        Some(mac) => {
                            tracing::warn!("{address} is in use on the LAN ({mac} answered): not giving it");
                            self.in_use.insert(address, format!("{mac} answered an ARP probe for it"));
                        }
                        None => {
                            self.probed.insert(address);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot probe addresses on {}: {e}; giving them unprobed", uplink.interface);
                self.probed.extend(fresh);
            }
        }
    }

    /// Gives every guest an address in `uplink`'s subnet, probing the new ones; guests whose
    /// address answered move on to the next free one.
    async fn assign_addresses(&mut self, uplink: &Uplink) {
        let subnet = uplink.subnet();
        for round in 0..=PROBE_ROUNDS {
            let in_use: BTreeSet<Ipv4Addr> = self.in_use.keys().copied().collect();
            let host_numbers = self.guests.values_mut().map(|g| &mut g.host_number);
            self.unsaved |= allocator::assign(uplink, &self.config.pool, &in_use, host_numbers);
            let unprobed: Vec<Ipv4Addr> = self
                .guests
                .values()
                .filter_map(|g| subnet.host(g.host_number?))
                .filter(|a| !self.probed.contains(a))
                .collect();
            if unprobed.is_empty() {
                return;
            }
            if round == PROBE_ROUNDS {
                // Still moving after several rounds: these wait for the next change.
                for guest in self.guests.values_mut() {
                    if guest.host_number.and_then(|n| subnet.host(n)).is_some_and(|a| unprobed.contains(&a)) {
                        guest.host_number = None;
                        self.unsaved = true;
                    }
                }
                return;
            }
            self.probe(uplink, &unprobed).await;
        }
    }

    fn address_of(&self, guest: &Guest) -> Option<Ipv4Addr> {
        self.uplink.as_ref()?.subnet().host(guest.host_number?)
    }

    /// Announces the addresses given since the last converge, and asks guests that were
    /// re-homed to renew their lease (QMP link flap).
    fn tell_guests(&mut self) {
        let Some(uplink) = &self.uplink else { return };
        let subnet = uplink.subnet();
        let mut fresh = Vec::new();
        for guest in self.guests.values() {
            let Some(address) = guest.host_number.and_then(|n| subnet.host(n)) else { continue };
            let previous = self.given.insert(guest.name.clone(), address);
            if previous == Some(address) {
                continue;
            }
            fresh.push(address);
            if let (Some(old), Some(socket)) = (previous, &guest.qmp) {
                ask_to_renew(guest.name.clone(), socket.clone(), guest.owner, guest.mac, old, address);
            }
        }
        self.given.retain(|name, _| self.guests.contains_key(name));
        if self.config.arp.announce {
            arp::announce(uplink.interface.clone(), fresh);
        }
    }

    async fn remove_guest(&mut self, name: &str) -> Result<(), Error> {
        let Some(guest) = self.guests.remove(name) else {
            return Err(Error::NotFound(format!("no guest named {name:?}")));
        };
        // Someone on the LAN may take the address from now on.
        if let Some(address) = self.uplink.as_ref().and_then(|up| up.subnet().host(guest.host_number?)) {
            self.probed.remove(&address);
        }
        self.unsaved = true;
        tracing::info!("removed guest {name}");
        self.converge().await.map(|_| ()).map_err(|ConvergeFailure(m)| Error::Failed(m))
    }

    /// Assigns addresses, plans, persists, applies, publishes.
    async fn converge(&mut self) -> Result<Outcome, ConvergeFailure> {
        let started = Instant::now();
        let mut rehomed = None;
        if let Some(uplink) = self.uplink.clone() {
            self.assign_addresses(&uplink).await;
            let subnet = uplink.subnet();
            if self.last_subnet != Some(subnet) {
                rehomed = self.last_subnet.map(|old| (old, subnet));
                self.last_subnet = Some(subnet);
                self.unsaved = true;
            }
        }
        let desired = planner::plan(self.uplink.as_ref(), self.guests.values());
        match self.executor.record_originals(&desired, &mut self.saved) {
            Ok(grew) => self.unsaved |= grew,
            Err(e) => tracing::warn!("cannot record a sysctl before changing it: {e}"),
        }
        let saved_before = self.saved.clone();
        self.save()?;
        let outcome = self.executor.apply(&desired, &mut self.saved).await;
        if self.saved != saved_before {
            self.unsaved = true;
            self.save()?;
        }
        self.after_apply(&outcome);
        let leases = Leases::new(&self.config.dhcp, self.uplink.as_ref(), self.guests.values());
        self.leases.send_if_modified(|old| {
            let changed = *old != leases;
            *old = leases;
            changed
        });
        self.tell_guests();
        let view = ManagerView::new(self.uplink.as_ref(), self.guests.values(), self.in_use.len());
        let old = self.view.send_replace(view.clone());
        tracing::debug!(elapsed = ?started.elapsed(), ?outcome, "converged");
        if let Some((old_subnet, new_subnet)) = rehomed {
            tracing::info!("re-homed {} guests from {old_subnet} to {new_subnet}", self.guests.len());
        }
        self.publisher.publish(&old, &view, rehomed).await;
        Ok(outcome)
    }

    fn save(&mut self) -> Result<(), ConvergeFailure> {
        if !self.unsaved {
            return Ok(());
        }
        let state = State {
            version: FORMAT_VERSION,
            guests: self.guests.values().cloned().collect(),
            saved_sysctls: self.saved.clone(),
            last_subnet: self.last_subnet,
        };
        self.state_file.save(&state).map_err(|e| {
            tracing::error!("cannot save state: {e}");
            ConvergeFailure(format!("cannot save state: {e}"))
        })?;
        self.unsaved = false;
        Ok(())
    }

    fn after_apply(&mut self, outcome: &Outcome) {
        if outcome.errors.is_empty() {
            self.retry = None;
            return;
        }
        for error in &outcome.errors {
            tracing::warn!("{error}");
        }
        let delay = self.retry.map_or(RETRY_FIRST, |(_, last)| (last * 2).min(RETRY_MAX));
        tracing::warn!("{} operations failed; retrying in {delay:?}", outcome.errors.len());
        self.retry = Some((Instant::now() + delay, delay));
    }
}

/// Flaps the guest's link over its QMP socket in the background: a dead or slow QEMU delays
/// nobody else.
fn ask_to_renew(name: String, socket: String, owner: u32, mac: Mac, old: Ipv4Addr, new: Ipv4Addr) {
    tokio::spawn(async move {
        match qmp::flap_link(Path::new(&socket), owner, mac).await {
            Ok(nic) => {
                tracing::info!("guest {name} moved from {old} to {new}: flapped its NIC {nic} over QMP")
            }
            Err(e) => tracing::warn!("guest {name} moved from {old} to {new}, but QMP {socket} failed: {e}"),
        }
    });
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

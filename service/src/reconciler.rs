//! The one task that owns all state. Everything that changes something arrives here as an
//! [`Event`]; after each one the reconciler converges the kernel to the plan and publishes the
//! new view.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use vmnet_dbus::Error;
use zbus::OwnedObjectPath;

use crate::allocator::{self, Occupancy};
use crate::bus::publish::Publisher;
use crate::config::Config;
use crate::executor::{Executor, Outcome, SavedSysctls};
use crate::model::{Guest, Mac, Subnet, Uplink};
use crate::names::{default_mac, tap_name};
use crate::planner;
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
}

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

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
    retry: Option<(Instant, Duration)>,
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
    ) -> Self {
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
            retry: None,
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
            Event::Resync(reply) => {
                self.executor.forget();
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
        let guest = self.admit(request)?;
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
        let host_number = match (&self.uplink, request.address) {
            (None, Some(address)) => {
                return Err(Error::AddressUnavailable(format!(
                    "cannot give {address}: the uplink is offline, so there is no subnet to check it against"
                )))
            }
            (None, None) => None,
            (Some(uplink), requested) => {
                let mut occupancy = Occupancy::new(uplink);
                for number in self.guests.values().filter_map(|g| g.host_number) {
                    occupancy.take(number);
                }
                Some(match requested {
                    Some(address) => occupancy.take_address(address).map_err(Error::AddressUnavailable)?,
                    None => occupancy.take_from(&self.config.pool).ok_or_else(|| {
                        Error::AddressUnavailable(format!(
                            "no free address left in the pool ({} to {}) of {}; remove a guest or widen [pool] in vmnetd.toml",
                            self.config.pool.first,
                            self.config.pool.last,
                            occupancy.subnet()
                        ))
                    })?,
                })
            }
        };
        Ok(Guest { name: request.name, tap, mac, owner: request.owner, host_number, qmp: request.qmp })
    }

    async fn remove_guest(&mut self, name: &str) -> Result<(), Error> {
        if self.guests.remove(name).is_none() {
            return Err(Error::NotFound(format!("no guest named {name:?}")));
        }
        self.unsaved = true;
        tracing::info!("removed guest {name}");
        self.converge().await.map(|_| ()).map_err(|ConvergeFailure(m)| Error::Failed(m))
    }

    /// Assigns addresses, plans, persists, applies, publishes.
    async fn converge(&mut self) -> Result<Outcome, ConvergeFailure> {
        let started = Instant::now();
        let mut rehomed = None;
        if let Some(uplink) = &self.uplink {
            let host_numbers = self.guests.values_mut().map(|g| &mut g.host_number);
            self.unsaved |= allocator::assign(uplink, &self.config.pool, host_numbers);
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
        let view = ManagerView::new(self.uplink.as_ref(), self.guests.values());
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! The address book: which guest has which address of the uplink's subnet, and why a guest
//! has none.
//!
//! It owns the rules: addresses come from the pool and are never the network, broadcast, host
//! or gateway address nor another guest's; a guest keeps its host number across re-homes when
//! it is still free; a requested address is honoured or refused; an address found in use on the
//! LAN (it answered an ARP probe, or the guest's DHCP client declined it) is not given until
//! the next uplink change or resync. New addresses are probed through the [`Prober`] first.

mod network;
mod numbers;
mod pool;
#[cfg(test)]
mod properties;
#[cfg(test)]
pub mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

pub use network::{Network, NetworkChange};
use numbers::Numbers;
use pool::Occupancy;
pub use pool::Pool;

use crate::model::{Mac, Subnet, Uplink};

/// Rounds of probing in one re-home: each round moves the guests whose address answered.
const PROBE_ROUNDS: usize = 4;
/// Pool addresses probed at once for a new guest.
const PROBE_BATCH: usize = 4;
/// Addresses one guest's DHCP client may decline in one network: then it gets none until the
/// uplink changes (or a resync), so that a guest declining everything cannot empty the pool.
pub const MAX_DECLINES: u32 = 3;

/// Asks the LAN whether addresses are taken (ARP probes on the uplink).
pub trait Prober {
    /// Probes `candidates` on `interface` for `window`; returns those that answered, with the
    /// MAC that did.
    fn probe(
        &self,
        interface: &str,
        candidates: &[Ipv4Addr],
        window: Duration,
    ) -> impl Future<Output = io::Result<BTreeMap<Ipv4Addr, Mac>>>;
}

/// Where a guest stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressStatus {
    Active(Ipv4Addr),
    /// The uplink is offline: no subnet to give an address from.
    Offline,
    /// Online, but no address could be given; the reason says why.
    Conflict(String),
}

/// A requested address that cannot be given, or a pool with no room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressUnavailable(pub String);

pub struct AddressBook<P> {
    pool: Pool,
    probe_window: Duration,
    prober: P,
    network: Option<Network>,
    /// The network before the uplink went offline, to tell whether it came back to it.
    last_network: Option<Network>,
    /// Guests with an address, by name: the host number in `network`'s subnet.
    numbers: Numbers,
    /// Addresses of the current subnet found in use on the LAN, with who holds them.
    in_use: BTreeMap<Ipv4Addr, String>,
    /// Addresses of the current subnet that passed a probe (or were ours before a restart).
    probed: BTreeSet<Ipv4Addr>,
    /// The MAC that answered for the gateway's address, when it was asked.
    gateway_mac: Option<Mac>,
    /// The last connection the source named.
    connection: Option<String>,
    /// Addresses each guest declined in this network.
    declines: BTreeMap<String, u32>,
}

impl<P: Prober> AddressBook<P> {
    pub fn new(pool: Pool, probe_window: Duration, prober: P) -> Self {
        Self {
            pool,
            probe_window,
            prober,
            network: None,
            last_network: None,
            numbers: Numbers::default(),
            in_use: BTreeMap::new(),
            probed: BTreeSet::new(),
            gateway_mac: None,
            connection: None,
            declines: BTreeMap::new(),
        }
    }

    /// Takes back the host numbers of the state file. Homed in `last_subnet` and still there,
    /// the addresses were probed before and are not probed again.
    pub fn restore(
        &mut self,
        numbers: impl IntoIterator<Item = (String, u32)>,
        last_subnet: Option<Subnet>,
        uplink: Option<&Uplink>,
    ) {
        self.numbers = numbers.into_iter().collect();
        self.network = uplink.map(Network::of);
        if let Some(network) = self.network.as_ref().filter(|n| Some(n.subnet) == last_subnet) {
            self.probed = self.numbers.values().filter_map(|n| network.subnet.host(n)).collect();
        }
    }

    /// Forgets the addresses found in use, so that they are probed again (a resync).
    pub fn forget_lan(&mut self) {
        self.in_use.clear();
        self.declines.clear();
    }

    /// Whether the guest declined as many addresses as it may in this network.
    fn held_back(&self, guest: &str) -> Option<u32> {
        self.declines.get(guest).copied().filter(|&n| n >= MAX_DECLINES)
    }

    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    pub fn number(&self, guest: &str) -> Option<u32> {
        self.numbers.get(guest)
    }

    pub fn address(&self, guest: &str) -> Option<Ipv4Addr> {
        self.network.as_ref()?.subnet.host(self.number(guest)?)
    }

    pub fn status(&self, guest: &str) -> AddressStatus {
        let Some(network) = &self.network else { return AddressStatus::Offline };
        match self.address(guest) {
            Some(address) => AddressStatus::Active(address),
            None if self.held_back(guest).is_some() => AddressStatus::Conflict(format!(
                "its DHCP client declined {MAX_DECLINES} addresses of {}: it gets another at the next uplink change or resync",
                network.subnet
            )),
            None => {
                let note = match self.in_use.len() {
                    0 => String::new(),
                    n => format!(" ({n} addresses answered ARP probes or were declined)"),
                };
                AddressStatus::Conflict(format!("no free address in the pool of {}{note}", network.subnet))
            }
        }
    }

    /// An address for a new guest `guest`: `requested`, or the first free one of the pool that
    /// nobody on the LAN answers for. Offline, a guest gets none (and may request none).
    pub async fn admit(
        &mut self,
        guest: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, AddressUnavailable> {
        let Some(network) = self.network.clone() else {
            return match requested {
                Some(address) => Err(AddressUnavailable(format!(
                    "cannot give {address}: the uplink is offline, so there is no subnet to check it against"
                ))),
                None => Ok(None),
            };
        };
        self.numbers.remove(guest);
        let number = match requested {
            Some(address) => self.take_requested(&network, address).await?,
            None => self.take_from_pool(&network).await.ok_or_else(|| self.pool_exhausted(&network))?,
        };
        self.numbers.insert(guest, number);
        Ok(network.subnet.host(number))
    }

    /// Gives `guest` (who has none) the first free address of the pool, probed; `None` when
    /// there is no room.
    pub async fn place(&mut self, guest: &str) -> Option<Ipv4Addr> {
        let network = self.network.clone()?;
        self.numbers.remove(guest);
        if self.held_back(guest).is_some() {
            return None;
        }
        let number = self.take_from_pool(&network).await?;
        self.numbers.insert(guest, number);
        network.subnet.host(number)
    }

    async fn take_requested(
        &mut self,
        network: &Network,
        address: Ipv4Addr,
    ) -> Result<u32, AddressUnavailable> {
        // Asked for by name: look again rather than trust an earlier answer.
        self.in_use.remove(&address);
        let number = self.occupancy(network).take_address(address).map_err(AddressUnavailable)?;
        self.probe(network, &[address]).await;
        match self.in_use.get(&address) {
            Some(why) => Err(AddressUnavailable(format!("{address} is in use on the LAN: {why}"))),
            None => Ok(number),
        }
    }

    /// Probes free pool addresses in batches until one is not answered for.
    async fn take_from_pool(&mut self, network: &Network) -> Option<u32> {
        loop {
            let mut occupancy = self.occupancy(network);
            let candidates: Vec<u32> =
                (0..PROBE_BATCH).map_while(|_| occupancy.take_from(&self.pool)).collect();
            if candidates.is_empty() {
                return None;
            }
            let addresses: Vec<Ipv4Addr> =
                candidates.iter().filter_map(|&n| network.subnet.host(n)).collect();
            self.probe(network, &addresses).await;
            let free = candidates
                .iter()
                .find(|&&n| network.subnet.host(n).is_some_and(|a| !self.in_use.contains_key(&a)));
            if let Some(&number) = free {
                return Some(number);
            }
        }
    }

    fn pool_exhausted(&self, network: &Network) -> AddressUnavailable {
        let note = match self.in_use.len() {
            0 => String::new(),
            n => format!(" ({n} of its addresses are in use on the LAN)"),
        };
        AddressUnavailable(format!(
            "no free address left in the pool ({} to {}) of {}{note}; remove a guest or widen [pool] in vmnetd.toml",
            self.pool.first, self.pool.last, network.subnet,
        ))
    }

    /// Host numbers taken by the host, the gateway, the LAN and the guests.
    fn occupancy(&self, network: &Network) -> Occupancy<'_> {
        Occupancy::new(network, self.in_use.keys().copied()).with_given(self.numbers.given())
    }

    /// Gives every guest of `guests` (in that order of preference) an address in the current
    /// subnet: each keeps its host number when it is free, the others get free pool addresses;
    /// new addresses are probed, and guests whose address answered move on. Returns the guests
    /// whose number changed.
    pub async fn rehome<'a>(&mut self, guests: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let listed: Vec<&str> = guests.into_iter().collect();
        let names: Vec<&str> = listed.iter().copied().filter(|name| self.held_back(name).is_none()).collect();
        let Some(network) = self.network.clone() else { return Vec::new() };
        let mut slots: Vec<Option<u32>> = names.iter().map(|name| self.number(name)).collect();
        let before = slots.clone();
        for round in 0..=PROBE_ROUNDS {
            pool::assign(&network, &self.pool, self.in_use.keys().copied(), slots.iter_mut());
            let unprobed: Vec<Ipv4Addr> = slots
                .iter()
                .filter_map(|slot| network.subnet.host((*slot)?))
                .filter(|a| !self.probed.contains(a))
                .collect();
            if unprobed.is_empty() {
                break;
            }
            if round == PROBE_ROUNDS {
                // Still moving after several rounds: these wait for the next change.
                for slot in &mut slots {
                    if slot.and_then(|n| network.subnet.host(n)).is_some_and(|a| unprobed.contains(&a)) {
                        *slot = None;
                    }
                }
                break;
            }
            self.probe(&network, &unprobed).await;
        }
        let mut changed = Vec::new();
        for ((name, slot), old) in names.iter().zip(&slots).zip(&before) {
            match slot {
                Some(number) => self.numbers.insert(name, *number),
                None => self.numbers.remove(name),
            };
            if slot != old {
                changed.push(*name);
            }
        }
        let listed: BTreeSet<&str> = listed.into_iter().collect();
        self.numbers.retain(|name| listed.contains(name));
        changed
    }

    /// The guest's DHCP client found `address` in use. Returns whether that was the guest's
    /// address, which it then loses; the address is not given again until the next change.
    pub fn declined(&mut self, guest: &str, address: Ipv4Addr) -> bool {
        if self.address(guest) != Some(address) {
            return false;
        }
        self.in_use.insert(address, format!("declined by guest {guest}'s DHCP client"));
        self.probed.remove(&address);
        self.numbers.remove(guest);
        *self.declines.entry(guest.to_owned()).or_default() += 1;
        true
    }

    /// The guest is gone: its address is free, and probed again before it is given again
    /// (someone on the LAN may take it from now on).
    pub fn release(&mut self, guest: &str) {
        self.declines.remove(guest);
        if let Some(address) = self.address(guest) {
            self.probed.remove(&address);
        }
        self.numbers.remove(guest);
    }

    /// Gives `guest` back the host number it had (`None`: none), after a change that could not
    /// be kept.
    pub fn reinstate(&mut self, guest: &str, number: Option<u32>) {
        match number {
            Some(number) => self.numbers.insert(guest, number),
            None => self.numbers.remove(guest),
        };
    }

    /// Probes the addresses not probed yet in this subnet and records those in use. The
    /// gateway is asked along, when its MAC is not known yet in this network.
    async fn probe(&mut self, network: &Network, addresses: &[Ipv4Addr]) {
        let fresh: Vec<Ipv4Addr> = addresses.iter().copied().filter(|a| !self.probed.contains(a)).collect();
        if fresh.is_empty() {
            return;
        }
        if self.probe_window.is_zero() {
            self.probed.extend(fresh);
            return;
        }
        let gateway = network.gateway.filter(|g| self.gateway_mac.is_none() && !fresh.contains(g));
        let asked: Vec<Ipv4Addr> = fresh.iter().copied().chain(gateway).collect();
        match self.prober.probe(&network.interface, &asked, self.probe_window).await {
            Ok(mut found) => {
                if let Some(mac) = gateway.and_then(|g| found.remove(&g)) {
                    self.gateway_mac = Some(mac);
                }
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
                tracing::warn!("cannot probe addresses on {}: {e}; giving them unprobed", network.interface);
                self.probed.extend(fresh);
            }
        }
    }
}

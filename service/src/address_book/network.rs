//! Which network the uplink is on, and whether a change of the uplink is another network.

use std::net::Ipv4Addr;

use super::{AddressBook, Prober};
use crate::model::{Mac, Subnet, Uplink};

/// What addressing depends on: the uplink's interface, subnet, own address and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub interface: String,
    pub subnet: Subnet,
    pub host: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    /// The source's name for the network (NetworkManager's connection UUID).
    pub connection: Option<String>,
}

impl Network {
    pub fn of(uplink: &Uplink) -> Self {
        Self {
            interface: uplink.interface.clone(),
            subnet: uplink.subnet(),
            host: uplink.address,
            gateway: uplink.gateway,
            connection: uplink.connection.clone(),
        }
    }
}

/// What an uplink change means for the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChange {
    /// Nothing that addressing depends on changed.
    None,
    /// Another address or gateway on the same network (or offline).
    Moved,
    /// Another network: another subnet, another connection, or the same subnet behind
    /// another gateway (another MAC answers for the gateway's address). Every address is probed
    /// and announced again, and every guest asked to renew its lease.
    NewNetwork,
}

impl<P: Prober> AddressBook<P> {
    /// Follows the uplink. Any change forgets what was found in use (a conflict is retried at the
    /// next change); another network forgets what was probed. Back online in the subnet it was
    /// in, the gateway's MAC tells whether it is the same network.
    pub async fn set_uplink(&mut self, uplink: Option<&Uplink>) -> NetworkChange {
        let network = uplink.map(Network::of);
        if network == self.network {
            return NetworkChange::None;
        }
        self.forget_lan();
        let Some(new) = network else {
            // Offline: nothing is defended meanwhile, so every address is probed again.
            self.last_network = self.network.take();
            self.probed.clear();
            return NetworkChange::Moved;
        };
        let last = self.network.replace(new.clone()).or_else(|| self.last_network.take());
        // A connection not known (None) is not another one: NetworkManager names it once it is
        // activated; until then the device may still hold the previous network's address. A
        // name only counts within the subnet it was given in.
        let same_subnet = last.as_ref().is_some_and(|old| old.subnet == new.subnet);
        let known = if same_subnet { self.connection.take() } else { None };
        let other_connection =
            matches!((&known, &new.connection), (Some(before), Some(now)) if before != now);
        self.connection = new.connection.clone().or(known);
        let same = same_subnet && !other_connection;
        // Only the same subnet needs the gateway asked (at once, it answers in a moment).
        if same && self.gateway_answers_as_before(&new).await {
            return NetworkChange::Moved;
        }
        self.probed.clear();
        if !same {
            self.gateway_mac = None; // learned with the first probes in the new network
        }
        NetworkChange::NewNetwork
    }

    /// Whether the gateway's address is answered by the MAC that answered before (unknown
    /// either way: assume so). The answer becomes the one to compare with next time.
    async fn gateway_answers_as_before(&mut self, network: &Network) -> bool {
        let Some(now) = self.ask_gateway(network).await else { return true };
        self.gateway_mac.replace(now).is_none_or(|before| before == now)
    }

    /// The MAC that answers for the gateway's address (an ARP probe, answered at once).
    async fn ask_gateway(&mut self, network: &Network) -> Option<Mac> {
        let gateway = network.gateway?;
        if self.probe_window.is_zero() {
            return None;
        }
        match self.prober.probe(&network.interface, &[gateway], self.probe_window).await {
            Ok(found) => found.get(&gateway).copied(),
            Err(e) => {
                tracing::debug!("cannot ask for the gateway {gateway} on {}: {e}", network.interface);
                None
            }
        }
    }
}

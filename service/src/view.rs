//! The read-only picture the reconciler publishes after each change; D-Bus properties and
//! `ListGuests` are answered from it.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use vmnet_dbus::{guest_state, manager_state, GuestRow};

use crate::address_book::AddressStatus;
use crate::model::{Guest, Uplink};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerView {
    pub state: &'static str,
    pub uplink: String,
    pub host_address: String,
    pub subnet: String,
    pub gateway: String,
    pub nameservers: Vec<String>,
    /// The uplink's IPv6 prefix guests are on ("" without IPv6), its router, its DNS servers.
    pub prefix6: String,
    pub gateway6: String,
    pub nameservers6: Vec<String>,
    /// Kernel operations that failed and are retried.
    pub problems: Vec<String>,
    pub guests: BTreeMap<String, GuestView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestView {
    pub name: String,
    pub tap: String,
    pub mac: String,
    pub owner: u32,
    pub address: String,
    pub state: &'static str,
    /// Why the guest is not active ("" when it is).
    pub reason: String,
    pub qmp: String,
    /// Its IPv6 addresses that are routed.
    pub addresses6: Vec<String>,
}

impl Default for ManagerView {
    fn default() -> Self {
        Self {
            state: manager_state::OFFLINE,
            uplink: String::new(),
            host_address: String::new(),
            subnet: String::new(),
            gateway: String::new(),
            nameservers: Vec::new(),
            prefix6: String::new(),
            gateway6: String::new(),
            nameservers6: Vec::new(),
            problems: Vec::new(),
            guests: BTreeMap::new(),
        }
    }
}

impl ManagerView {
    /// The view of `uplink` and of every guest with its address status.
    pub fn new<'a>(
        uplink: Option<&Uplink>,
        guests: impl IntoIterator<Item = (&'a Guest, AddressStatus, Vec<Ipv6Addr>)>,
    ) -> Self {
        let guests = guests
            .into_iter()
            .map(|(g, status, addresses6)| (g.name.clone(), GuestView::new(g, status, addresses6)))
            .collect();
        let Some(up) = uplink else {
            return Self { guests, ..Self::default() };
        };
        Self {
            state: manager_state::ONLINE,
            uplink: up.interface.clone(),
            host_address: up.address.to_string(),
            subnet: up.subnet().to_string(),
            gateway: up.gateway.map(|g| g.to_string()).unwrap_or_default(),
            nameservers: up.nameservers.iter().map(|n| n.to_string()).collect(),
            prefix6: up.ipv6.as_ref().map(|v6| v6.prefix.to_string()).unwrap_or_default(),
            gateway6: up.ipv6.as_ref().and_then(|v6| v6.gateway).map(|g| g.to_string()).unwrap_or_default(),
            nameservers6: up
                .ipv6
                .as_ref()
                .map(|v6| v6.nameservers.iter().map(|n| n.to_string()).collect())
                .unwrap_or_default(),
            problems: Vec::new(),
            guests,
        }
    }

    /// The manager's own properties, without the guests.
    pub fn without_guests(&self) -> Self {
        Self {
            state: self.state,
            uplink: self.uplink.clone(),
            host_address: self.host_address.clone(),
            subnet: self.subnet.clone(),
            gateway: self.gateway.clone(),
            nameservers: self.nameservers.clone(),
            prefix6: self.prefix6.clone(),
            gateway6: self.gateway6.clone(),
            nameservers6: self.nameservers6.clone(),
            problems: self.problems.clone(),
            guests: BTreeMap::new(),
        }
    }

    /// Takes the manager's own properties from `header`, keeping the guests.
    pub fn set_header(&mut self, header: &ManagerView) {
        let guests = std::mem::take(&mut self.guests);
        *self = ManagerView { guests, ..header.without_guests() };
    }

    pub fn rows(&self) -> Vec<GuestRow> {
        self.guests
            .values()
            .map(|g| (g.name.clone(), g.tap.clone(), g.mac.clone(), g.address.clone(), g.state.to_owned()))
            .collect()
    }
}

impl GuestView {
    pub fn new(guest: &Guest, status: AddressStatus, addresses6: Vec<Ipv6Addr>) -> Self {
        let (address, state, reason) = match status {
            AddressStatus::Active(address) => (address.to_string(), guest_state::ACTIVE, String::new()),
            AddressStatus::Offline => {
                (String::new(), guest_state::OFFLINE, "the uplink has no IPv4 address".to_owned())
            }
            AddressStatus::Conflict(reason) => (String::new(), guest_state::CONFLICT, reason),
        };
        Self {
            name: guest.name.clone(),
            tap: guest.tap.clone(),
            mac: guest.mac.to_string(),
            owner: guest.owner,
            address,
            state,
            reason,
            qmp: guest.qmp.clone().unwrap_or_default(),
            addresses6: addresses6.iter().map(|a| a.to_string()).collect(),
        }
    }
}

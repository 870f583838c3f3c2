//! The read-only picture the reconciler publishes after each change; D-Bus properties and
//! `ListGuests` are answered from it.

use std::collections::BTreeMap;

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
            problems: Vec::new(),
            guests: BTreeMap::new(),
        }
    }
}

impl ManagerView {
    /// The view of `uplink` and of every guest with its address status.
    pub fn new<'a>(
        uplink: Option<&Uplink>,
        guests: impl IntoIterator<Item = (&'a Guest, AddressStatus)>,
    ) -> Self {
        let guests =
            guests.into_iter().map(|(g, status)| (g.name.clone(), GuestView::new(g, status))).collect();
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
    pub fn new(guest: &Guest, status: AddressStatus) -> Self {
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
        }
    }
}

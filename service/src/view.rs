//! The read-only picture the reconciler publishes after each change; D-Bus properties and
//! `ListGuests` are answered from it.

use std::collections::BTreeMap;

use vmnet_dbus::{guest_state, manager_state, GuestRow};

use crate::model::{Guest, Uplink};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerView {
    pub state: &'static str,
    pub uplink: String,
    pub host_address: String,
    pub subnet: String,
    pub gateway: String,
    pub nameservers: Vec<String>,
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
            guests: BTreeMap::new(),
        }
    }
}

impl ManagerView {
    /// `in_use`: how many addresses of the subnet were found in use on the LAN.
    pub fn new<'a>(
        uplink: Option<&Uplink>,
        guests: impl IntoIterator<Item = &'a Guest>,
        in_use: usize,
    ) -> Self {
        let guests =
            guests.into_iter().map(|g| (g.name.clone(), GuestView::new(uplink, g, in_use))).collect();
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
            guests,
        }
    }

    pub fn rows(&self) -> Vec<GuestRow> {
        self.guests
            .values()
            .map(|g| (g.name.clone(), g.tap.clone(), g.mac.clone(), g.address.clone(), g.state.to_owned()))
            .collect()
    }
}

impl GuestView {
    fn new(uplink: Option<&Uplink>, guest: &Guest, in_use: usize) -> Self {
        let address = uplink.and_then(|up| up.subnet().host(guest.host_number?));
        let (state, reason) = match (uplink, address) {
            (None, _) => (guest_state::OFFLINE, "the uplink has no IPv4 address".to_owned()),
            (Some(_), Some(_)) => (guest_state::ACTIVE, String::new()),
            (Some(up), None) => {
                let note = match in_use {
                    0 => String::new(),
                    n => format!(" ({n} addresses answered ARP probes or were declined)"),
                };
                (guest_state::CONFLICT, format!("no free address in the pool of {}{note}", up.subnet()))
            }
        };
        Self {
            name: guest.name.clone(),
            tap: guest.tap.clone(),
            mac: guest.mac.to_string(),
            owner: guest.owner,
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            state,
            reason,
            qmp: guest.qmp.clone().unwrap_or_default(),
        }
    }
}

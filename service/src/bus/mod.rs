//! The org.vmnet D-Bus objects. They answer reads from the published view and send every
//! change to the reconciler as a [`Command`] with a reply channel; they own no state.

pub mod guest;
pub mod manager;
pub mod options;
pub mod publish;
pub mod running;

use std::net::Ipv4Addr;

use tokio::sync::oneshot;
use vmnet_dbus::Error;
use zbus::OwnedObjectPath;

use crate::model::Mac;

/// Where the reconciler answers a command.
pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A change asked for over D-Bus, already checked for syntax and authorized.
#[derive(Debug)]
pub enum Command {
    AddGuest(NewGuest, Reply<OwnedObjectPath>),
    RemoveGuest(String, Reply<()>),
    /// Re-read the uplink, forget what was found in use on the LAN, verify everything.
    Resync(Reply<()>),
}

/// A request to add a guest.
#[derive(Debug)]
pub struct NewGuest {
    pub name: String,
    pub owner: u32,
    pub mac: Option<Mac>,
    pub address: Option<Ipv4Addr>,
    pub qmp: Option<String>,
}

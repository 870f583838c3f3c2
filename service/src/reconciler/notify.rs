//! What the reconciler tells the world after a change: D-Bus (objects, properties, signals),
//! the LAN (gratuitous ARP for addresses given) and re-homed guests (a QMP link flap, so that
//! they ask for a new lease). Faked in the reconciler's unit tests.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::arp;
use crate::bus::publish::Publisher;
use crate::model::{Guest, Subnet};
use crate::qmp;
use crate::view::{GuestView, ManagerView};

pub trait Notifier {
    /// Announces addresses now reachable through `interface`.
    fn announce(&self, interface: &str, addresses: Vec<Ipv4Addr>);
    /// Asks a guest that moved from `old` to `new` to renew its lease.
    fn ask_to_renew(&self, guest: &Guest, old: Ipv4Addr, new: Ipv4Addr);
    /// Publishes a whole new view (and a re-home).
    fn publish(
        &self,
        old: &ManagerView,
        new: &ManagerView,
        rehomed: Option<(Subnet, Subnet)>,
    ) -> impl Future<Output = ()>;
    /// Publishes one guest's change (`None`: no such guest).
    fn publish_guest(
        &self,
        name: &str,
        old: Option<&GuestView>,
        new: Option<&GuestView>,
    ) -> impl Future<Output = ()>;
    /// Publishes that the view's `problems` changed.
    fn problems_changed(&self) -> impl Future<Output = ()>;
}

/// The real one: D-Bus through the [`Publisher`], ARP on the uplink, QMP in the background.
pub struct WorldNotifier {
    pub publisher: Publisher,
    /// `[arp] announce`.
    pub announce: bool,
}

impl Notifier for WorldNotifier {
    fn announce(&self, interface: &str, addresses: Vec<Ipv4Addr>) {
        if self.announce {
            arp::announce(interface.to_owned(), addresses);
        }
    }

    fn ask_to_renew(&self, guest: &Guest, old: Ipv4Addr, new: Ipv4Addr) {
        let Some(socket) = guest.qmp.clone() else { return };
        let (name, owner, mac) = (guest.name.clone(), guest.owner, guest.mac);
        // In the background: a dead or slow QEMU delays nobody else.
        tokio::spawn(async move {
            match qmp::flap_link(Path::new(&socket), owner, mac).await {
                Ok(nic) => {
                    tracing::info!("guest {name} moved from {old} to {new}: flapped its NIC {nic} over QMP")
                }
                Err(e) => {
                    tracing::warn!("guest {name} moved from {old} to {new}, but QMP {socket} failed: {e}")
                }
            }
        });
    }

    async fn publish(&self, old: &ManagerView, new: &ManagerView, rehomed: Option<(Subnet, Subnet)>) {
        self.publisher.publish(old, new, rehomed).await;
    }

    async fn publish_guest(&self, name: &str, old: Option<&GuestView>, new: Option<&GuestView>) {
        if let Err(e) = self.publisher.publish_guest(name, old, new).await {
            tracing::warn!("publishing guest {name}: {e}");
        }
    }

    async fn problems_changed(&self) {
        if let Err(e) = self.publisher.publish_problems().await {
            tracing::warn!("publishing Problems: {e}");
        }
    }
}

/// At start-up, in the background: sets the link of every guest with a QMP socket up, in case
/// vmnetd stopped (or crashed) while a flap had it down. A guest whose QEMU is not running is
/// skipped quietly.
pub fn bring_links_up(guests: Vec<Guest>) {
    for guest in guests {
        let Some(socket) = guest.qmp else { continue };
        tokio::spawn(async move {
            match qmp::set_link_up(Path::new(&socket), guest.owner, guest.mac).await {
                Ok(nic) => tracing::debug!("guest {}: NIC {nic} is up", guest.name),
                Err(qmp::QmpError::Io(e)) => tracing::debug!("guest {}: QMP {socket}: {e}", guest.name),
                Err(e) => {
                    tracing::warn!("guest {}: cannot set its link up over QMP {socket}: {e}", guest.name)
                }
            }
        });
    }
}

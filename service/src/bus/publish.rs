//! Tells D-Bus what a converge changed: guest objects added or removed (the ObjectManager
//! emits InterfacesAdded/Removed), PropertiesChanged, and `Rehomed`.

use tokio::sync::watch;
use vmnet_dbus::{guest_object_path, MANAGER_PATH};
use zbus::object_server::InterfaceRef;
use zbus::Connection;

use super::guest::GuestObject;
use super::manager::Manager;
use crate::carrier::Carriers;
use crate::model::Subnet;
use crate::view::{GuestView, ManagerView};

pub struct Publisher {
    connection: Connection,
    view: watch::Receiver<ManagerView>,
    carriers: watch::Receiver<Carriers>,
}

impl Publisher {
    pub fn new(
        connection: Connection,
        view: watch::Receiver<ManagerView>,
        carriers: watch::Receiver<Carriers>,
    ) -> Self {
        Self { connection, view, carriers }
    }

    pub async fn publish(&self, old: &ManagerView, new: &ManagerView, rehomed: Option<(Subnet, Subnet)>) {
        // Manager first: `Rehomed` tells clients the kernel has converged; guest properties follow.
        if let Err(e) = self.publish_manager(old, new, rehomed).await {
            tracing::warn!("publishing manager changes: {e}");
        }
        if let Err(e) = self.publish_guests(old, new).await {
            tracing::warn!("publishing guest objects: {e}");
        }
    }

    async fn publish_guests(&self, old: &ManagerView, new: &ManagerView) -> zbus::Result<()> {
        for name in old.guests.keys().filter(|n| !new.guests.contains_key(*n)) {
            self.publish_guest(name, old.guests.get(name), None).await?;
        }
        for (name, guest) in &new.guests {
            self.publish_guest(name, old.guests.get(name), Some(guest)).await?;
        }
        Ok(())
    }

    /// Tells D-Bus about one guest that changed from `old` to `new` (`None`: no such guest):
    /// its object appears or goes, or its changed properties are signalled.
    pub async fn publish_guest(
        &self,
        name: &str,
        old: Option<&GuestView>,
        new: Option<&GuestView>,
    ) -> zbus::Result<()> {
        let server = self.connection.object_server();
        let path = guest_object_path(name);
        let (before, guest) = match (old, new) {
            (None, None) => return Ok(()),
            (Some(_), None) => return server.remove::<GuestObject, _>(path).await.map(drop),
            (None, Some(_)) => {
                let object = GuestObject::new(name.to_owned(), self.view.clone(), self.carriers.clone());
                return server.at(path, object).await.map(drop);
            }
            (Some(before), Some(guest)) if before == guest => return Ok(()),
            (Some(before), Some(guest)) => (before, guest),
        };
        let iface: InterfaceRef<GuestObject> = server.interface(path).await?;
        let object = iface.get().await;
        let emitter = iface.signal_emitter();
        if before.address != guest.address {
            object.address_changed(emitter).await?;
        }
        if before.state != guest.state {
            object.state_changed(emitter).await?;
        }
        if before.reason != guest.reason {
            object.state_reason_changed(emitter).await?;
        }
        if before.addresses6 != guest.addresses6 {
            object.addresses6_changed(emitter).await?;
        }
        Ok(())
    }

    /// PropertiesChanged for the manager's `Problems`.
    pub async fn publish_problems(&self) -> zbus::Result<()> {
        let iface: InterfaceRef<Manager> = self.connection.object_server().interface(MANAGER_PATH).await?;
        let manager = iface.get().await;
        manager.problems_changed(iface.signal_emitter()).await
    }

    async fn publish_manager(
        &self,
        old: &ManagerView,
        new: &ManagerView,
        rehomed: Option<(Subnet, Subnet)>,
    ) -> zbus::Result<()> {
        let iface: InterfaceRef<Manager> = self.connection.object_server().interface(MANAGER_PATH).await?;
        let manager = iface.get().await;
        let emitter = iface.signal_emitter();
        if old.state != new.state {
            manager.state_changed(emitter).await?;
        }
        if old.uplink != new.uplink {
            manager.uplink_changed(emitter).await?;
        }
        if old.host_address != new.host_address {
            manager.host_address_changed(emitter).await?;
        }
        if old.subnet != new.subnet {
            manager.subnet_changed(emitter).await?;
        }
        if old.gateway != new.gateway {
            manager.gateway_changed(emitter).await?;
        }
        if old.nameservers != new.nameservers {
            manager.nameservers_changed(emitter).await?;
        }
        if old.prefix6 != new.prefix6 {
            manager.prefix6_changed(emitter).await?;
        }
        if old.gateway6 != new.gateway6 {
            manager.gateway6_changed(emitter).await?;
        }
        if old.nameservers6 != new.nameservers6 {
            manager.nameservers6_changed(emitter).await?;
        }
        if old.problems != new.problems {
            manager.problems_changed(emitter).await?;
        }
        if let Some((old_subnet, new_subnet)) = rehomed {
            Manager::rehomed(emitter, &old_subnet.to_string(), &new_subnet.to_string()).await?;
        }
        Ok(())
    }
}

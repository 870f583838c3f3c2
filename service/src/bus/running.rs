//! `Guest1.Running`'s PropertiesChanged: sent when the carrier of a guest's tap changes. A
//! task of its own beside the reconciler's publisher, fed by [`crate::carrier`].

use tokio::sync::watch;
use vmnet_dbus::guest_object_path;
use zbus::Connection;

use super::guest::GuestObject;
use crate::carrier::Carriers;
use crate::view::ManagerView;

/// Runs until the carrier follower stops.
pub async fn publish(
    connection: Connection,
    view: watch::Receiver<ManagerView>,
    mut carriers: watch::Receiver<Carriers>,
) {
    let mut last = carriers.borrow_and_update().clone();
    while carriers.changed().await.is_ok() {
        let now = carriers.borrow_and_update().clone();
        let changed: Vec<String> = view
            .borrow()
            .guests
            .values()
            .filter(|g| {
                last.get(&g.tap).copied().unwrap_or(false) != now.get(&g.tap).copied().unwrap_or(false)
            })
            .map(|g| g.name.clone())
            .collect();
        for name in changed {
            emit(&connection, &name).await;
        }
        last = now;
    }
}

async fn emit(connection: &Connection, name: &str) {
    let server = connection.object_server();
    // Not exported yet: once it is, it answers the current value.
    let Ok(iface) = server.interface::<_, GuestObject>(guest_object_path(name)).await else { return };
    let object = iface.get().await;
    if let Err(e) = object.running_changed(iface.signal_emitter()).await {
        tracing::warn!("publishing Running of guest {name}: {e}");
    }
}

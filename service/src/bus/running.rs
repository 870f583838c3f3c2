//! `Guest1.Running`'s PropertiesChanged: sent when the carrier of a guest's tap changes. A
//! task of its own beside the reconciler's publisher, fed by [`crate::carrier`].

use tokio::sync::watch;
use vmnet_dbus::guest_object_path;
use zbus::Connection;

use super::guest::GuestObject;
use crate::carrier::{TapFeed, TapUpdate};
use crate::view::ManagerView;

/// Runs until the carrier follower stops.
pub async fn publish(connection: Connection, view: watch::Receiver<ManagerView>, mut taps: TapFeed) {
    while let Some(update) = taps.next().await {
        let changed: Vec<String> = match update {
            TapUpdate::Changed(change) if change.running_changed() => view
                .borrow()
                .guests
                .values()
                .filter(|g| g.tap == change.tap)
                .map(|g| g.name.clone())
                .collect(),
            TapUpdate::Changed(_) => continue,
            // Some changes were lost: every guest says what it is now.
            TapUpdate::Lost => view.borrow().guests.keys().cloned().collect(),
        };
        for name in changed {
            emit(&connection, &name).await;
        }
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

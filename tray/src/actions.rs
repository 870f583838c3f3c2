//! Carries out what the menu asked for: adds and removes guests (with interactive
//! authorization, so that the desktop's polkit agent may ask for a password) and copies text.
//! A failure is shown in the menu and as a notification.

use std::collections::HashMap;

use tokio::sync::mpsc::UnboundedReceiver;
use vmnet_dbus::Manager1Proxy;
use zbus::proxy::MethodFlags;
use zbus::Connection;
use zbus::Variant;

use crate::desktop;
use crate::menu::{Command, VmnetTray};

pub async fn run(
    mut commands: UnboundedReceiver<Command>,
    system: Connection,
    session: Connection,
    tray: ksni::Handle<VmnetTray>,
) {
    while let Some(command) = commands.recv().await {
        let result = match &command {
            Command::Copy { what, text } => {
                desktop::copy(text).await.map_err(|e| format!("Cannot copy the {what}: {e}"))
            }
            Command::Remove(name) => call(&system, "RemoveGuest", &(name.as_str(),))
                .await
                .map_err(|e| format!("Cannot remove {name}: {e}")),
            Command::Add => match desktop::ask_name().await {
                None => Ok(()),
                Some(name) => {
                    let options: HashMap<&str, Variant<'_>> = HashMap::new();
                    call(&system, "AddGuest", &(name.as_str(), options))
                        .await
                        .map_err(|e| format!("Cannot add {name}: {e}"))
                }
            },
        };
        let message = result.as_ref().err().cloned().unwrap_or_default();
        if !message.is_empty() {
            tracing::warn!("{message}");
            desktop::notify(&session, &message, "").await;
        }
        tray.update(|tray| tray.message = message).await;
    }
}

/// A Manager1 method with ALLOW_INTERACTIVE_AUTHORIZATION; vmnetd's message on failure.
async fn call<B>(system: &Connection, method: &str, body: &B) -> Result<(), String>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let manager = Manager1Proxy::new(system).await.map_err(|e| e.to_string())?;
    let reply: zbus::Result<Option<()>> =
        manager.inner().call_with_flags(method, MethodFlags::ALLOW_INTERACTIVE_AUTH, body).await;
    match reply.map_err(vmnet_dbus::Error::from) {
        Ok(_) => Ok(()),
        Err(vmnet_dbus::Error::NotAuthorized(message)) => Err(format!("not allowed ({message})")),
        Err(vmnet_dbus::Error::ZBus(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

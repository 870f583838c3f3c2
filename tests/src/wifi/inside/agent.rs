//! A NetworkManager secret agent for the laptop, as every desktop runs one: it answers NM's
//! requests for the Wi-Fi PSK. NM asks an agent for a "new" key whenever a 4-way handshake
//! fails — under TCG a slow AP sometimes makes it time out — and without an agent it fails the
//! connection with `no-secrets` and stops autoconnecting it, which is not what a laptop does.

use std::collections::HashMap;
use zbus::{interface, Connection};
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

const NM: &str = "org.freedesktop.NetworkManager";
const AGENT_PATH: &str = "/org/freedesktop/NetworkManager/SecretAgent";
const WIRELESS_SECURITY: &str = "802-11-wireless-security";

type Settings = HashMap<String, HashMap<String, OwnedVariant>>;

struct Agent {
    psk: String,
}

#[interface(name = "org.freedesktop.NetworkManager.SecretAgent")]
impl Agent {
    async fn get_secrets(
        &self,
        _connection: Settings,
        connection_path: OwnedObjectPath,
        setting_name: String,
        _hints: Vec<String>,
        _flags: u32,
    ) -> zbus::fdo::Result<Settings> {
        println!("vmnet-wifi: secret agent: NM asks for {setting_name} of {}", connection_path.as_str());
        if setting_name != WIRELESS_SECURITY {
            return Err(zbus::fdo::Error::Failed(format!("no secrets for {setting_name}")));
        }
        let psk = OwnedVariant::try_from(Variant::from(self.psk.as_str()))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        Ok(HashMap::from([(setting_name, HashMap::from([("psk".to_string(), psk)]))]))
    }

    async fn cancel_get_secrets(&self, _connection_path: OwnedObjectPath, _setting_name: String) {}

    async fn save_secrets(&self, _connection: Settings, _connection_path: OwnedObjectPath) {}

    async fn delete_secrets(&self, _connection: Settings, _connection_path: OwnedObjectPath) {}
}

async fn register(psk: String) -> zbus::Result<Connection> {
    let connection = zbus::connection::Builder::system().build().await?;
    connection.object_server().at(AGENT_PATH, Agent { psk }).await?;
    connection
        .call_method(
            Some(NM),
            "/org/freedesktop/NetworkManager/AgentManager",
            Some(&*format!("{NM}.AgentManager")),
            "Register",
            &("vmnet-wifi",),
        )
        .await?;
    Ok(connection)
}

/// Registers the agent with NM and serves it on a thread of its own for the rest of the run.
pub fn start(psk: &str) -> std::io::Result<()> {
    let (ready, registered) = std::sync::mpsc::channel();
    let psk = psk.to_string();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(ready.send(Err(e.to_string()))),
        };
        runtime.block_on(async move {
            match register(psk).await {
                Ok(_connection) => {
                    let _ = ready.send(Ok(()));
                    std::future::pending::<()>().await;
                }
                Err(e) => drop(ready.send(Err(e.to_string()))),
            }
        });
    });
    match registered.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(format!("secret agent: {e}"))),
        Err(_) => Err(std::io::Error::other("secret agent: not registered within 20 s")),
    }
}

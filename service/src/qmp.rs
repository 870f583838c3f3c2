//! Tells a guest to renew its DHCP lease by flapping its NIC's link over QMP (QEMU's machine
//! protocol): the guest sees its carrier drop and come back, and its DHCP client starts over.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::model::Mac;

/// How long the link stays down: long enough for guests that poll the carrier.
const LINK_DOWN: Duration = Duration::from_millis(300);
/// The whole exchange, so a hung QEMU never holds anything up.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the socket is served by uid {peer}, not by the guest's owner {owner}")]
    WrongOwner { peer: u32, owner: u32 },
    #[error("QMP error: {0}")]
    Protocol(String),
    #[error("no NIC with MAC {0}")]
    NoNic(Mac),
}

/// Flaps the link of the NIC with `mac` in the QEMU at `socket`, which must run as `owner`
/// (or root): vmnetd never drives another user's VM.
pub async fn flap_link(socket: &Path, owner: u32, mac: Mac) -> Result<String, QmpError> {
    tokio::time::timeout(TIMEOUT, flap(socket, owner, mac)).await.map_err(|_| QmpError::Timeout)?
}

async fn flap(socket: &Path, owner: u32, mac: Mac) -> Result<String, QmpError> {
    let stream = UnixStream::connect(socket).await?;
    let peer = stream.peer_cred()?.uid();
    if peer != owner && peer != 0 {
        return Err(QmpError::WrongOwner { peer, owner });
    }
    let mut qmp = Qmp { stream: BufReader::new(stream) };
    qmp.read_reply().await?; // the greeting
    qmp.execute(json!({"execute": "qmp_capabilities"})).await?;
    let filters = qmp.execute(json!({"execute": "query-rx-filter"})).await?;
    let wanted = mac.to_string();
    let nic = filters
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["main-mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(&wanted)))
        .and_then(|f| f["name"].as_str())
        .ok_or(QmpError::NoNic(mac))?
        .to_owned();
    qmp.execute(json!({"execute": "set_link", "arguments": {"name": nic, "up": false}})).await?;
    tokio::time::sleep(LINK_DOWN).await;
    qmp.execute(json!({"execute": "set_link", "arguments": {"name": nic, "up": true}})).await?;
    Ok(nic)
}

struct Qmp {
    stream: BufReader<UnixStream>,
}

impl Qmp {
    async fn execute(&mut self, command: Value) -> Result<Value, QmpError> {
        let mut line = command.to_string();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        self.read_reply().await
    }

    /// The next line that is not an asynchronous event: a greeting, a return or an error.
    async fn read_reply(&mut self) -> Result<Value, QmpError> {
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(QmpError::Protocol("QEMU closed the connection".into()));
            }
            let reply: Value =
                serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("not JSON: {e}")))?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(QmpError::Protocol(error["desc"].as_str().unwrap_or("unknown error").to_owned()));
            }
            return Ok(reply.get("return").cloned().unwrap_or(reply));
        }
    }
}

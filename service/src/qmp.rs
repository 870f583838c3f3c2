//! Tells a guest to renew its DHCP lease by flapping its NIC's link over QMP (QEMU's machine
//! protocol): the guest sees its carrier drop and come back, and its DHCP client starts over.
//!
//! The socket's owner is untrusted (any user can register a path and serve anything there), so
//! vmnetd talks only to a peer running as the guest's owner, reads bounded lines, and never
//! leaves a link down it took down: not even when it stops in the middle of a flap, as it sets
//! every guest's link up when it starts ([`set_link_up`]).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::model::Mac;

/// How long the link stays down: long enough for guests that poll the carrier.
const LINK_DOWN: Duration = Duration::from_millis(300);
/// The whole exchange, so a hung QEMU never holds anything up.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest reply line read (QEMU's are a few KiB at most).
pub const MAX_LINE: usize = 64 * 1024;
/// Asynchronous events skipped while waiting for one reply.
pub const MAX_EVENTS: usize = 64;
/// Tries, each on a fresh connection, to bring a link back up after an interrupted flap.
const RESTORE_TRIES: u32 = 3;
const RESTORE_TIMEOUT: Duration = Duration::from_secs(2);

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
    #[error("{error}; the link of NIC {nic} was left down: {restore}")]
    LinkLeftDown { nic: String, error: Box<QmpError>, restore: Box<QmpError> },
}

/// Flaps the link of the NIC with `mac` in the QEMU at `socket`, which must run as `owner`
/// exactly (root's guests: a QEMU running as root): vmnetd never drives another user's VM. When
/// the flap fails after the link went down, the link is brought back up on a fresh connection.
pub async fn flap_link(socket: &Path, owner: u32, mac: Mac) -> Result<String, QmpError> {
    let mut down = None;
    let result = tokio::time::timeout(TIMEOUT, flap(socket, owner, mac, &mut down))
        .await
        .unwrap_or(Err(QmpError::Timeout));
    match (result, down) {
        (Err(error), Some(nic)) => match restore_link(socket, owner, &nic).await {
            Ok(()) => {
                tracing::info!("QMP {}: brought NIC {nic} back up after: {error}", socket.display());
                Err(error)
            }
            Err(restore) => {
                Err(QmpError::LinkLeftDown { nic, error: Box::new(error), restore: Box::new(restore) })
            }
        },
        (result, _) => result,
    }
}

/// Sets the link of the NIC with `mac` up, under the same owner rule as [`flap_link`]: at
/// start-up, for a flap that a stopped vmnetd may have left with the link down. Idempotent:
/// QEMU tells the guest nothing when its link is up already.
pub async fn set_link_up(socket: &Path, owner: u32, mac: Mac) -> Result<String, QmpError> {
    let up = async {
        let mut qmp = Qmp::connect(socket, owner).await?;
        let nic = qmp.nic_with_mac(mac).await?;
        qmp.set_link(&nic, true).await?;
        Ok(nic)
    };
    tokio::time::timeout(TIMEOUT, up).await.unwrap_or(Err(QmpError::Timeout))
}

/// `down` is set to the NIC's name while its link is down.
async fn flap(socket: &Path, owner: u32, mac: Mac, down: &mut Option<String>) -> Result<String, QmpError> {
    let mut qmp = Qmp::connect(socket, owner).await?;
    let nic = qmp.nic_with_mac(mac).await?;
    *down = Some(nic.clone());
    qmp.set_link(&nic, false).await?;
    tokio::time::sleep(LINK_DOWN).await;
    qmp.set_link(&nic, true).await?;
    *down = None;
    Ok(nic)
}

/// Sets `nic`'s link up again, each try on a new connection and bounded in time.
async fn restore_link(socket: &Path, owner: u32, nic: &str) -> Result<(), QmpError> {
    let mut last = QmpError::Timeout;
    for attempt in 0..RESTORE_TRIES {
        if attempt > 0 {
            tokio::time::sleep(RESTORE_TIMEOUT / 4).await;
        }
        let up = async { Qmp::connect(socket, owner).await?.set_link(nic, true).await };
        match tokio::time::timeout(RESTORE_TIMEOUT, up).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = QmpError::Timeout,
        }
    }
    Err(last)
}

/// The name of the NIC whose `main-mac` is `mac` in a `query-rx-filter` return.
pub fn nic_with_mac(filters: &Value, mac: Mac) -> Option<String> {
    let wanted = mac.to_string();
    filters
        .as_array()?
        .iter()
        .find(|f| f["main-mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(&wanted)))
        .and_then(|f| f["name"].as_str())
        .map(str::to_owned)
}

struct Qmp {
    stream: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects, checks the peer, reads the greeting and negotiates capabilities.
    async fn connect(socket: &Path, owner: u32) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(socket).await?;
        let peer = stream.peer_cred()?.uid();
        if peer != owner {
            return Err(QmpError::WrongOwner { peer, owner });
        }
        let mut qmp = Qmp { stream: BufReader::new(stream) };
        read_reply(&mut qmp.stream).await?; // the greeting
        qmp.execute(json!({"execute": "qmp_capabilities"})).await?;
        Ok(qmp)
    }

    async fn nic_with_mac(&mut self, mac: Mac) -> Result<String, QmpError> {
        let filters = self.execute(json!({"execute": "query-rx-filter"})).await?;
        nic_with_mac(&filters, mac).ok_or(QmpError::NoNic(mac))
    }

    async fn set_link(&mut self, nic: &str, up: bool) -> Result<(), QmpError> {
        self.execute(json!({"execute": "set_link", "arguments": {"name": nic, "up": up}})).await.map(drop)
    }

    async fn execute(&mut self, command: Value) -> Result<Value, QmpError> {
        let mut line = command.to_string();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        read_reply(&mut self.stream).await
    }
}

/// The next line from QEMU that is not an asynchronous event: a greeting, a return or an
/// error. Lines are at most [`MAX_LINE`] bytes, and at most [`MAX_EVENTS`] events are skipped.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Value, QmpError> {
    let mut line = Vec::new();
    for _ in 0..=MAX_EVENTS {
        line.clear();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
        let read = (&mut *reader).take(limit).read_until(b'\n', &mut line).await?;
        if read == 0 {
            return Err(QmpError::Protocol("QEMU closed the connection".into()));
        }
        if line.len() > MAX_LINE {
            return Err(QmpError::Protocol(format!("a reply line longer than {MAX_LINE} bytes")));
        }
        if let Some(reply) = parse_reply(&line)? {
            return Ok(reply);
        }
    }
    Err(QmpError::Protocol(format!("more than {MAX_EVENTS} events and no reply")))
}

/// One line from QEMU: `None` for an event, the `return` value, or the error it carries.
pub fn parse_reply(line: &[u8]) -> Result<Option<Value>, QmpError> {
    let reply: Value =
        serde_json::from_slice(line).map_err(|e| QmpError::Protocol(format!("not JSON: {e}")))?;
    if !reply.is_object() {
        return Err(QmpError::Protocol("a reply that is not a JSON object".into()));
    }
    if reply.get("event").is_some() {
        return Ok(None);
    }
    if let Some(error) = reply.get("error") {
        let desc = error["desc"].as_str().unwrap_or("unknown error");
        return Err(QmpError::Protocol(desc.chars().take(200).flat_map(char::escape_debug).collect()));
    }
    Ok(Some(reply.get("return").cloned().unwrap_or(reply)))
}

#[cfg(test)]
#[path = "qmp_tests.rs"]
mod tests;

//! The DHCP server on the taps: hands each guest exactly its current address.
//!
//! The reconciler publishes [`Leases`] after every change; [`run`] keeps one socket task per
//! tap in step with it. A task only reads the latest leases when a request arrives, so a
//! re-home needs no coordination beyond publishing. A guest's DECLINE is reported as a
//! [`Declined`] notice.

mod decode;
pub mod limit;
pub mod respond;
mod socket;
pub mod stale;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::Encodable;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use decode::decode_request;
use respond::{respond, Destination, Outcome};
pub use respond::{LeaseParams, TapLease};

use crate::config::DhcpConfig;
use crate::model::Uplink;

/// What the server hands out: `params` is `None` while the uplink is offline (nothing is
/// served then); `taps` maps each tap that exists to its guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    pub params: Option<LeaseParams>,
    pub taps: BTreeMap<String, ServedTap>,
}

/// A tap the server answers on: a tap recreated under the same name has another index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedTap {
    pub ifindex: u32,
    pub lease: TapLease,
}

impl LeaseParams {
    /// What every lease behind `uplink` carries; `None` offline.
    pub fn new(config: &DhcpConfig, uplink: Option<&Uplink>) -> Option<Self> {
        let up = uplink?;
        let subnet = up.subnet();
        Some(LeaseParams {
            server: up.address,
            netmask: subnet.netmask(),
            broadcast: subnet.broadcast(),
            nameservers: up.nameservers.clone(),
            domains: up.domains.clone(),
            mtu: up.mtu,
            lease_seconds: config.lease_seconds,
        })
    }
}

/// A guest's DHCP client found its address in use on the LAN (it sent DHCPDECLINE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declined {
    pub guest: String,
    pub address: Ipv4Addr,
}

struct TapServer {
    ifindex: u32,
    socket: Arc<UdpSocket>,
    task: JoinHandle<()>,
}

/// What every tap's server reads and writes.
struct Shared {
    leases: watch::Receiver<Leases>,
    declines: mpsc::Sender<Declined>,
    /// Per tap: the last address ACKed and the server identifier of that lease.
    acked: Mutex<BTreeMap<String, (Ipv4Addr, DhcpOption)>>,
    decline_limit: Mutex<limit::DeclineLimiter>,
}

/// Serves DHCP on every tap in `leases` until the sender is dropped, and reports declines (at
/// the rate [`limit`] allows). Fails at once if it cannot listen for stale requests (no
/// `CAP_NET_RAW`, no descriptors left): vmnetd then exits, rather than serve without NAKs.
pub async fn run(
    mut leases: watch::Receiver<Leases>,
    declines: mpsc::Sender<Declined>,
) -> Result<(), String> {
    let shared = Arc::new(Shared {
        leases: leases.clone(),
        declines,
        acked: Mutex::new(BTreeMap::new()),
        decline_limit: Mutex::default(),
    });
    let stale = stale::StaleListener::open()
        .map_err(|e| format!("cannot listen for DHCP requests from stale addresses: {e}"))?;
    let mut raw = vec![0u8; 1600];
    let mut servers: BTreeMap<String, TapServer> = BTreeMap::new();
    loop {
        {
            let current = leases.borrow_and_update();
            follow_taps(&current, &mut servers, &shared);
            let mut decline_limit = shared.decline_limit.lock().unwrap_or_else(|p| p.into_inner());
            decline_limit.retain(|tap| current.taps.contains_key(tap));
        }
        loop {
            tokio::select! {
                changed = leases.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => {
                        for server in servers.into_values() {
                            server.task.abort();
                        }
                        return Ok(());
                    }
                },
                received = stale.receive(&mut raw) => match received {
                    Ok((index, source, payload)) => {
                        let Some((tap, server)) = servers.iter().find(|(_, s)| s.ifindex == index) else { continue };
                        // Requests the kernel delivers reach the tap's UDP socket; only the
                        // others are taken here.
                        if is_stale(&shared.leases, tap, source) {
                            answer(&shared, tap, &server.socket, &raw[payload]).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("DHCP: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }
}

/// Keeps one server per tap in `leases`: stops those of taps gone or recreated, starts the
/// missing ones. No system call for the taps that stay, however many there are.
fn follow_taps(leases: &Leases, servers: &mut BTreeMap<String, TapServer>, shared: &Arc<Shared>) {
    servers.retain(|tap, server| {
        let keep = leases.taps.get(tap).is_some_and(|served| served.ifindex == server.ifindex);
        if !keep {
            server.task.abort();
        }
        keep
    });
    for (tap, served) in &leases.taps {
        if servers.contains_key(tap) {
            continue;
        }
        match socket::bind_to_tap(tap) {
            Ok(socket) => {
                let socket = Arc::new(socket);
                let task = tokio::spawn(serve(tap.clone(), socket.clone(), shared.clone()));
                servers.insert(tap.clone(), TapServer { ifindex: served.ifindex, socket, task });
            }
            // Tried again at the next change of the leases.
            Err(e) => tracing::warn!("cannot serve DHCP on {tap}: {e}"),
        }
    }
}

async fn serve(tap: String, socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buffer = vec![0u8; 1500];
    loop {
        match socket.recv(&mut buffer).await {
            Ok(len) => answer(&shared, &tap, &socket, &buffer[..len]).await,
            Err(e) => {
                tracing::warn!("DHCP on {tap}: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Answers one request that arrived on `tap`.
async fn answer(shared: &Shared, tap: &str, socket: &UdpSocket, bytes: &[u8]) {
    let Some(request) = decode::decode_request(bytes) else {
        return tracing::debug!("DHCP on {tap}: {} bytes that are not a DHCP message", bytes.len());
    };
    let (guest, outcome) = {
        let leases = shared.leases.borrow();
        let (Some(params), Some(served)) = (&leases.params, leases.taps.get(tap)) else {
            return; // offline: serve nothing
        };
        (served.lease.guest.clone(), respond(&request, &served.lease, params))
    };
    match outcome {
        Outcome::Reply(mut reply, to) => {
            let kind = reply.opts().msg_type();
            {
                let mut acked = shared.acked.lock().unwrap_or_else(|p| p.into_inner());
                if kind == Some(MessageType::Ack) && !reply.yiaddr().is_unspecified() {
                    let server = reply.opts().get(OptionCode::ServerIdentifier).cloned();
                    let previous = acked.get(tap).map(|(address, _)| *address);
                    if previous != Some(reply.yiaddr()) {
                        tracing::info!("DHCP: {guest} on {tap} has {}", reply.yiaddr());
                    }
                    if let Some(server) = server {
                        acked.insert(tap.to_owned(), (reply.yiaddr(), server));
                    }
                } else if kind == Some(MessageType::Nak) {
                    tracing::info!("DHCP: NAK to {guest} on {tap}, which asked for a stale address");
                    // Clients only heed a NAK from the server of their lease: the host's
                    // address in the subnet the guest was in.
                    if let Some((_, server)) = acked.get(tap) {
                        reply.opts_mut().insert(server.clone());
                    }
                }
            }
            if let Err(e) = send(socket, &reply, to).await {
                tracing::warn!("DHCP on {tap}: cannot send {kind:?}: {e}");
            }
        }
        Outcome::Declined(address) => {
            let verdict = shared
                .decline_limit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .check(tap, std::time::Instant::now());
            match verdict {
                limit::Verdict::Forward { dropped } => {
                    if dropped > 0 {
                        tracing::warn!("DHCP: {dropped} more declines from {guest} on {tap} were ignored");
                    }
                    tracing::warn!("DHCP: {guest} on {tap} declined {address}: it is in use on the LAN");
                    let _ = shared.declines.send(Declined { guest, address }).await;
                }
                limit::Verdict::Drop { log: true } => tracing::warn!(
                    "DHCP: {guest} on {tap} declined {address}: ignored; a guest's declines are \
                     limited to {} at once and then one per {} s",
                    limit::DECLINE_BURST,
                    limit::DECLINE_REFILL.as_secs()
                ),
                limit::Verdict::Drop { log: false } => {
                    tracing::debug!("DHCP: {guest} on {tap} declined {address}: ignored (rate limit)")
                }
            }
        }
        Outcome::Released(address) => tracing::info!("DHCP: {guest} on {tap} released {address}"),
        Outcome::Ignored(why) => tracing::debug!("DHCP on {tap}: ignored a request: {why}"),
    }
}

/// A request from an address the kernel would not deliver: neither unconfigured (0.0.0.0) nor
/// the guest's current address.
fn is_stale(leases: &watch::Receiver<Leases>, tap: &str, source: Ipv4Addr) -> bool {
    let current = leases.borrow().taps.get(tap).and_then(|served| served.lease.address);
    !source.is_unspecified() && Some(source) != current
}

async fn send(socket: &UdpSocket, reply: &Message, to: Destination) -> std::io::Result<()> {
    let bytes = reply.to_vec().map_err(std::io::Error::other)?;
    let address = match to {
        Destination::Broadcast => Ipv4Addr::BROADCAST,
        Destination::Unicast(address) => address,
    };
    socket.send_to(&bytes, SocketAddrV4::new(address, socket::CLIENT_PORT)).await.map(|_| ())
}

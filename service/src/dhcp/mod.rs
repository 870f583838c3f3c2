//! The DHCP server on the taps: hands each guest exactly its current address.
//!
//! The reconciler publishes [`Leases`] after every change; [`run`] keeps one socket task per
//! tap in step with it. A task only reads the latest leases when a request arrives, so a
//! re-home needs no coordination beyond publishing.

mod respond;
mod socket;
mod stale;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use respond::{respond, Destination, Outcome};
pub use respond::{LeaseParams, TapLease};

use crate::config::DhcpConfig;
use crate::model::{Guest, Uplink};
use crate::reconciler::Event;

/// What the server hands out: `params` is `None` while the uplink is offline (nothing is
/// served then); `taps` maps each tap to its guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    pub params: Option<LeaseParams>,
    pub taps: BTreeMap<String, TapLease>,
}

impl Leases {
    pub fn new<'a>(
        config: &DhcpConfig,
        uplink: Option<&Uplink>,
        guests: impl IntoIterator<Item = &'a Guest>,
    ) -> Self {
        let subnet = uplink.map(Uplink::subnet);
        let taps = guests
            .into_iter()
            .map(|g| {
                let address = subnet.and_then(|s| s.host(g.host_number?));
                (g.tap.clone(), TapLease { guest: g.name.clone(), mac: g.mac, address })
            })
            .collect();
        let params = uplink.zip(subnet).map(|(up, subnet)| LeaseParams {
            server: up.address,
            netmask: subnet.netmask(),
            broadcast: subnet.broadcast(),
            nameservers: up.nameservers.clone(),
            domains: up.domains.clone(),
            mtu: up.mtu,
            lease_seconds: config.lease_seconds,
        });
        Self { params, taps }
    }
}

struct TapServer {
    ifindex: u32,
    task: JoinHandle<()>,
}

/// Serves DHCP on every tap in `leases` until the sender is dropped. Declines are sent to the
/// reconciler as [`Event::Declined`].
pub async fn run(mut leases: watch::Receiver<Leases>, events: mpsc::Sender<Event>) {
    let mut servers: BTreeMap<String, TapServer> = BTreeMap::new();
    loop {
        let taps: Vec<String> = leases.borrow_and_update().taps.keys().cloned().collect();
        servers.retain(|tap, server| {
            let keep = taps.contains(tap) && ifindex(tap) == Some(server.ifindex);
            if !keep {
                server.task.abort();
            }
            keep
        });
        for tap in taps {
            if servers.contains_key(&tap) {
                continue;
            }
            // A tap that does not exist yet (or failed) is tried again at the next change.
            let Some(index) = ifindex(&tap) else { continue };
            match socket::bind_to_tap(&tap) {
                Ok(socket) => {
                    let stale = stale::StaleListener::open(index)
                        .inspect_err(|e| {
                            tracing::warn!("cannot listen for stale DHCP requests on {tap}: {e}")
                        })
                        .ok();
                    let task =
                        tokio::spawn(serve(tap.clone(), socket, stale, leases.clone(), events.clone()));
                    servers.insert(tap, TapServer { ifindex: index, task });
                }
                Err(e) => tracing::warn!("cannot serve DHCP on {tap}: {e}"),
            }
        }
        if leases.changed().await.is_err() {
            break;
        }
    }
    for server in servers.into_values() {
        server.task.abort();
    }
}

fn ifindex(tap: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(tap).ok()
}

async fn serve(
    tap: String,
    socket: UdpSocket,
    stale: Option<stale::StaleListener>,
    leases: watch::Receiver<Leases>,
    events: mpsc::Sender<Event>,
) {
    let mut buffer = vec![0u8; 1500];
    let mut raw = vec![0u8; 1600];
    let mut last_acked = None;
    let mut lease_server = None;
    loop {
        let received = tokio::select! {
            received = socket.recv(&mut buffer) => received.map(|len| &buffer[..len]),
            received = receive_stale(stale.as_ref(), &mut raw) => match received {
                // Requests the kernel delivers reach the UDP socket; only the others are taken.
                Ok((source, payload)) if is_stale(&leases, &tap, source) => Ok(&raw[payload]),
                Ok(_) => continue,
                Err(e) => Err(e),
            },
        };
        let bytes = match received {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!("DHCP on {tap}: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let len = bytes.len();
        let Ok(request) = Message::from_bytes(bytes) else {
            tracing::debug!("DHCP on {tap}: {len} bytes that are not a DHCP message");
            continue;
        };
        let (guest, outcome) = {
            let leases = leases.borrow();
            let (Some(params), Some(lease)) = (&leases.params, leases.taps.get(&tap)) else {
                continue; // offline: serve nothing
            };
            (lease.guest.clone(), respond(&request, lease, params))
        };
        match outcome {
            Outcome::Reply(mut reply, to) => {
                let kind = reply.opts().msg_type();
                if kind == Some(MessageType::Ack) {
                    if last_acked != Some(reply.yiaddr()) {
                        tracing::info!("DHCP: {guest} on {tap} has {}", reply.yiaddr());
                    }
                    last_acked = Some(reply.yiaddr());
                    lease_server = reply.opts().get(OptionCode::ServerIdentifier).cloned();
                } else if kind == Some(MessageType::Nak) {
                    tracing::info!("DHCP: NAK to {guest} on {tap}, which asked for a stale address");
                    // Clients only heed a NAK from the server of their lease: the host's
                    // address in the subnet the guest was in.
                    if let Some(server) = lease_server.clone() {
                        reply.opts_mut().insert(server);
                    }
                    last_acked = None;
                }
                if let Err(e) = send(&socket, &reply, to).await {
                    tracing::warn!("DHCP on {tap}: cannot send {kind:?}: {e}");
                }
            }
            Outcome::Declined(address) => {
                tracing::warn!("DHCP: {guest} on {tap} declined {address}: it is in use on the LAN");
                last_acked = None;
                let _ = events.send(Event::Declined { guest, address }).await;
            }
            Outcome::Released(address) => tracing::info!("DHCP: {guest} on {tap} released {address}"),
            Outcome::Ignored(why) => tracing::debug!("DHCP on {tap}: ignored a request: {why}"),
        }
    }
}

async fn receive_stale(
    stale: Option<&stale::StaleListener>,
    buffer: &mut [u8],
) -> std::io::Result<(Ipv4Addr, std::ops::Range<usize>)> {
    match stale {
        Some(listener) => listener.receive(buffer).await,
        None => std::future::pending().await,
    }
}

/// A request from an address the kernel would not deliver: neither unconfigured (0.0.0.0) nor
/// the guest's current address.
fn is_stale(leases: &watch::Receiver<Leases>, tap: &str, source: Ipv4Addr) -> bool {
    let current = leases.borrow().taps.get(tap).and_then(|lease| lease.address);
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

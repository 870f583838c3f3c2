//! Address conflict detection on the uplink (RFC 5227, with shorter timings): probe addresses
//! before they are given to guests, announce them once given.

pub mod frame;

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use frame::{Arp, ETH_P_ARP};

use crate::model::Mac;
use crate::packet::PacketSocket;

/// Probes sent per address, spread over the listening window.
const PROBES: u32 = 3;
/// RFC 5227 sends two announcements; the second follows after this.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// ARP on one interface.
struct ArpSocket {
    socket: PacketSocket,
    ifindex: i32,
    mac: Mac,
}

impl ArpSocket {
    fn open(interface: &str) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("no interface {interface}: {e}")))?;
        let ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        let socket = PacketSocket::open(ETH_P_ARP, ifindex, None)?;
        let mac = hardware_address(socket.raw_fd(), interface)?;
        Ok(Self { socket, ifindex, mac })
    }

    /// Broadcasts `arp` on the interface.
    async fn send(&self, arp: &Arp) -> io::Result<()> {
        self.socket.send_to(&arp.encode(), self.ifindex, [0xff; 6]).await
    }

    async fn receive(&self) -> io::Result<Option<Arp>> {
        let mut buffer = [0u8; 64];
        let (len, _) = self.socket.receive(&mut buffer).await?;
        Ok(Arp::decode(&buffer[..len]))
    }
}

fn hardware_address(fd: i32, interface: &str) -> io::Result<Mac> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(interface.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes a struct ifreq, which `request` is.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled in the hardware address member of the union.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(data.iter()) {
        *dst = *src as u8;
    }
    Ok(Mac(mac))
}

/// Probes every address in `candidates` on `interface` at once and listens for `window`.
/// Returns the addresses found in use, each with the MAC that answered.
pub async fn probe(
    interface: &str,
    candidates: &[Ipv4Addr],
    window: Duration,
) -> io::Result<BTreeMap<Ipv4Addr, Mac>> {
    let mut found = BTreeMap::new();
    if candidates.is_empty() || window.is_zero() {
        return Ok(found);
    }
    let socket = ArpSocket::open(interface)?;
    let started = Instant::now();
    let deadline = started + window;
    let mut sent = 0;
    while Instant::now() < deadline {
        let next_probe = started + window * sent / PROBES;
        if sent < PROBES && Instant::now() >= next_probe {
            for &candidate in candidates.iter().filter(|c| !found.contains_key(*c)) {
                socket.send(&Arp::probe(socket.mac, candidate)).await?;
            }
            sent += 1;
            continue;
        }
        let wake = if sent < PROBES { next_probe.min(deadline) } else { deadline };
        if let Ok(packet) = tokio::time::timeout_at(wake, socket.receive()).await {
            let Some(arp) = packet? else { continue };
            if let Some(&hit) = candidates.iter().find(|&&c| arp.conflicts_with(c, socket.mac)) {
                found.entry(hit).or_insert(arp.sender_mac);
                if found.len() == candidates.len() {
                    break; // every candidate answered: nothing left to learn
                }
            }
        }
    }
    Ok(found)
}

/// The address book's prober: ARP probes on the uplink.
pub struct ArpProber;

impl crate::address_book::Prober for ArpProber {
    async fn probe(
        &self,
        interface: &str,
        candidates: &[Ipv4Addr],
        window: Duration,
    ) -> io::Result<BTreeMap<Ipv4Addr, Mac>> {
        probe(interface, candidates, window).await
    }
}

/// Announces `addresses` as reachable through `interface` (gratuitous ARP), twice.
pub fn announce(interface: String, addresses: Vec<Ipv4Addr>) {
    if addresses.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let socket = match ArpSocket::open(&interface) {
            Ok(socket) => socket,
            Err(e) => return tracing::warn!("cannot announce guest addresses on {interface}: {e}"),
        };
        for round in 0..2 {
            if round > 0 {
                tokio::time::sleep(ANNOUNCE_INTERVAL).await;
            }
            for &address in &addresses {
                if let Err(e) = socket.send(&Arp::announcement(socket.mac, address)).await {
                    return tracing::warn!("cannot announce {address} on {interface}: {e}");
                }
            }
        }
    });
}

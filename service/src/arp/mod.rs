//! Address conflict detection on the uplink (RFC 5227, with shorter timings): probe addresses
//! before they are given to guests, announce them once given.

mod frame;

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use frame::{Arp, ETH_P_ARP};

use crate::model::Mac;

/// Probes sent per address, spread over the listening window.
const PROBES: u32 = 3;
/// RFC 5227 sends two announcements; the second follows after this.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// An `AF_PACKET` socket for ARP on one interface.
struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    mac: Mac,
}

impl ArpSocket {
    fn open(interface: &str) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("no interface {interface}: {e}")))?;
        let ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        let protocol = i32::from(ETH_P_ARP.to_be());
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let address = link_address(ifindex, [0; 6]);
        // SAFETY: `address` is a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        let mac = hardware_address(&fd, interface)?;
        // SAFETY: the AsyncFd owns `fd`, which stays open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd, ifindex, mac })
    }

    async fn send(&self, arp: &Arp) -> io::Result<()> {
        let address = link_address(self.ifindex, [0xff; 6]);
        let bytes = arp.encode();
        loop {
            let mut ready = self.fd.writable().await?;
            let result = ready.try_io(|fd| {
                // SAFETY: `bytes` and `address` are valid for the lengths given.
                let sent = unsafe {
                    libc::sendto(
                        fd.get_ref().as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        0,
                        std::ptr::from_ref(&address).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(result) = result {
                return result;
            }
        }
    }

    async fn receive(&self) -> io::Result<Option<Arp>> {
        let mut buffer = [0u8; 64];
        let len = loop {
            let mut ready = self.fd.readable().await?;
            let result = ready.try_io(|fd| {
                // SAFETY: `buffer` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(fd.get_ref().as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        Ok(Arp::decode(&buffer[..len]))
    }
}

fn link_address(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

fn hardware_address(fd: &OwnedFd, interface: &str) -> io::Result<Mac> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(interface.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes a struct ifreq, which `request` is.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) } < 0 {
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
            }
        }
    }
    Ok(found)
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

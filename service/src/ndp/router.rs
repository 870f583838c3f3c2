//! The Neighbor Discovery task: one packet socket that receives only Neighbor Discovery
//! messages (of every interface: the taps and the uplink), [`Neighbors`] deciding, and the
//! links' indexes and MACs looked up when the reconciler publishes a change.

use std::ffi::CString;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::neighbors::{Links, Neighbors};
use super::{bpf, message, Found, Routers};
use crate::config::Ipv6Config;
use crate::deadline::sleep_until;
use crate::model::Mac;
use crate::packet::PacketSocket;

/// Waits between attempts to open the socket.
const REOPEN: Duration = Duration::from_secs(5);

/// Runs until the reconciler goes away.
pub async fn run(mut routers: watch::Receiver<Routers>, reports: mpsc::Sender<Found>, config: Ipv6Config) {
    let socket = loop {
        match PacketSocket::open(message::ETH_P_IPV6, 0, Some(&bpf::ndp_filter())) {
            Ok(socket) => break socket,
            Err(e) => {
                tracing::error!(
                    "cannot open the Neighbor Discovery socket: {e}; guests get no IPv6 until it opens"
                );
                tokio::time::sleep(REOPEN).await;
            }
        }
    };
    let mut neighbors = Neighbors::new(&config);
    let mut buffer = vec![0u8; bpf::SNAP_LEN as usize];
    let mut links = Links::default();
    loop {
        let deadline = neighbors.next_deadline();
        tokio::select! {
            changed = routers.changed() => {
                if changed.is_err() {
                    return; // the reconciler stopped: vmnetd is ending
                }
                // Read in place (no copy of every tap): the reconciler waits only for this update.
                let now = routers.borrow_and_update();
                links = look_up(&now, &links);
                neighbors.update(&now, &links, Instant::now());
            }
            received = socket.receive(&mut buffer) => match received {
                Ok((len, from)) => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&from.sll_addr[..6]);
                    let index = u32::try_from(from.sll_ifindex).unwrap_or(0);
                    tracing::trace!(len, "received Neighbor Discovery on #{index}");
                    neighbors.received(&buffer[..len.min(buffer.len())], index, Mac(mac), Instant::now());
                }
                Err(e) => tracing::warn!("receiving Neighbor Discovery: {e}"),
            },
            () = sleep_until(deadline) => neighbors.tick(Instant::now()),
        }
        for out in neighbors.take_outgoing() {
            let Ok(index) = i32::try_from(out.ifindex) else { continue };
            match socket.send_to(&out.packet, index, out.mac).await {
                Ok(()) => {
                    tracing::trace!(len = out.packet.len(), "sent Neighbor Discovery on #{}", out.ifindex)
                }
                Err(e) => tracing::debug!("sending Neighbor Discovery on #{}: {e}", out.ifindex),
            }
        }
        for found in neighbors.take_found() {
            if reports.send(found).await.is_err() {
                return;
            }
        }
    }
}

/// The uplink's index and MAC, and each tap's MAC: looked up for new links only.
fn look_up(routers: &Routers, before: &Links) -> Links {
    let uplink = routers.uplink.as_ref().and_then(|up| {
        let index = interface_index(&up.interface)?;
        match before.uplink {
            Some((old, mac)) if old == index => Some((index, mac)),
            _ => Some((index, hardware_address(&up.interface)?)),
        }
    });
    let taps = routers
        .taps
        .iter()
        .filter_map(|(tap, port)| {
            let known = before.taps.get(tap).filter(|(index, _)| *index == port.ifindex).copied();
            Some((tap.clone(), known.or_else(|| Some((port.ifindex, hardware_address(tap)?)))?))
        })
        .collect();
    Links { uplink, taps }
}

fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// An interface's MAC (SIOCGIFHWADDR).
fn hardware_address(name: &str) -> Option<Mac> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: plain socket(2); checked below and closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR writes into `request`, which outlives the call.
    let done = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCGIFHWADDR,
            std::ptr::from_mut(&mut request),
        )
    };
    if done < 0 {
        return None;
    }
    // SAFETY: after SIOCGIFHWADDR the union holds a sockaddr.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(data.iter()) {
        *slot = *byte as u8;
    }
    Some(Mac(mac))
}

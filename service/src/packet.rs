//! `AF_PACKET`/`SOCK_DGRAM` sockets (the kernel adds and strips the link-layer header), as
//! used for ARP on the uplink and for DHCP requests the IP layer drops.
//!
//! The kernel waits for an RCU grace period (milliseconds) when a packet socket that receives
//! stops receiving: on close, and on a bind that moves a receiving socket. So sockets are created
//! receiving nothing and start with their bind, and they are closed off the async runtime.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

const SOCKADDR_LL_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

pub struct PacketSocket {
    fd: ManuallyDrop<AsyncFd<OwnedFd>>,
    protocol: u16,
}

impl PacketSocket {
    /// A socket for EtherType `protocol` on interface `ifindex` (0: every interface), with an
    /// optional classic BPF `filter`, attached before any packet is queued.
    pub fn open(protocol: u16, ifindex: i32, filter: Option<&[libc::sock_filter]>) -> io::Result<Self> {
        // Protocol 0: it receives nothing until bind() names the protocol.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if let Some(program) = filter {
            let len = u16::try_from(program.len()).map_err(io::Error::other)?;
            let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
            // SAFETY: `fprog` points at `program`, which outlives the call (the kernel copies it).
            let attached = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    std::ptr::from_ref(&fprog).cast(),
                    std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                )
            };
            if attached < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let address = link_address(protocol, ifindex, [0; 6]);
        // SAFETY: `address` is a valid sockaddr_ll of the size given.
        if unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&address).cast(), SOCKADDR_LL_LEN) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns `fd`, which stays open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd: ManuallyDrop::new(fd), protocol })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.get_ref().as_raw_fd()
    }

    /// Sends `payload` out of `ifindex` to link-layer address `destination`.
    pub async fn send_to(&self, payload: &[u8], ifindex: i32, destination: [u8; 6]) -> io::Result<()> {
        let address = link_address(self.protocol, ifindex, destination);
        loop {
            let mut ready = self.fd.writable().await?;
            let result = ready.try_io(|fd| {
                // SAFETY: `payload` and `address` are valid for the lengths given.
                let sent = unsafe {
                    libc::sendto(
                        fd.get_ref().as_raw_fd(),
                        payload.as_ptr().cast(),
                        payload.len(),
                        0,
                        std::ptr::from_ref(&address).cast(),
                        SOCKADDR_LL_LEN,
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

    /// The next packet into `buffer`: its length and where it came from (interface, packet type).
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<(usize, libc::sockaddr_ll)> {
        loop {
            let mut ready = self.fd.readable().await?;
            let received = ready.try_io(|fd| {
                // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = SOCKADDR_LL_LEN;
                // SAFETY: `buffer` and `from` are valid for writes of the lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        std::ptr::from_mut(&mut from).cast(),
                        &mut from_len,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok((n as usize, from))
                }
            });
            if let Ok(result) = received {
                return result;
            }
        }
    }
}

impl Drop for PacketSocket {
    /// Leaves the runtime's poller here and closes the descriptor on the blocking pool: close(2)
    /// waits for an RCU grace period, which would hold up every other task of vmnetd.
    fn drop(&mut self) {
        // SAFETY: `fd` is taken once, here, and not used afterwards.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) }.into_inner();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(fd))),
            Err(_) => drop(fd),
        }
    }
}

fn link_address(protocol: u16, ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

//! Requests from a guest's stale address. The taps have strict reverse-path filtering, so
//! after a re-home the kernel drops a renewal sent from the guest's old address before it
//! reaches the UDP socket. An `AF_PACKET` socket, filtered to UDP port 67, sees those frames so
//! the server can NAK them and the guest falls back to DISCOVER at once.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use super::socket::SERVER_PORT;

const ETH_P_IP: u16 = 0x0800;

pub struct StaleListener {
    fd: AsyncFd<OwnedFd>,
}

/// Classic BPF over the IPv4 header (SOCK_DGRAM): UDP, not a fragment, destination port 67.
fn filter() -> [libc::sock_filter; 9] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    [
        op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, 9), // protocol
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 6, libc::IPPROTO_UDP as u32),
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, 6), // flags + fragment offset
        op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 4, 0, 0x1fff),
        op(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0, 0, 0), // x = header length
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, 0, 0, 2),  // UDP destination port
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, u32::from(SERVER_PORT)),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0xffff),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ]
}

impl StaleListener {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let protocol = i32::from(ETH_P_IP.to_be());
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
        let program = filter();
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
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
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = ETH_P_IP.to_be();
        address.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
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
        // SAFETY: the AsyncFd owns `fd`, which stays open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// The next DHCP request from the guest: its IPv4 source address and the UDP payload.
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<(Ipv4Addr, std::ops::Range<usize>)> {
        loop {
            let mut ready = self.fd.readable().await?;
            let received = ready.try_io(|fd| {
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
            let Ok(len) = received else { continue };
            if let Some(parsed) = udp_payload(&buffer[..len?]) {
                return Ok(parsed);
            }
        }
    }
}

/// The source address and the UDP payload's place in an IPv4 packet.
fn udp_payload(packet: &[u8]) -> Option<(Ipv4Addr, std::ops::Range<usize>)> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let source = Ipv4Addr::new(*packet.get(12)?, packet[13], packet[14], packet[15]);
    let start = header_len + 8;
    (header_len >= 20 && packet.len() >= start).then_some((source, start..packet.len()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_payload_after_the_ip_and_udp_headers() {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 200, 255, 255, 255, 255];
        packet.extend([0, 68, 0, 67, 0, 12, 0, 0, 1, 2, 3, 4]);
        let (source, payload) = super::udp_payload(&packet).unwrap();
        assert_eq!(source, std::net::Ipv4Addr::new(198, 51, 100, 200));
        assert_eq!(&packet[payload], &[1, 2, 3, 4]);
        assert!(super::udp_payload(&packet[..10]).is_none());
    }
}

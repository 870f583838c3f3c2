//! One UDP socket per tap on the DHCP server port, bound to the tap: the tap has no address,
//! but the kernel still delivers the guest's broadcasts to it, and replies leave through the
//! tap with the host's uplink address as source.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use tokio::net::UdpSocket;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

pub fn bind_to_tap(tap: &str) -> io::Result<UdpSocket> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // Other DHCP servers bound to other interfaces (or to none, with SO_REUSEADDR) may share the port.
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(tap))?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
    )?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

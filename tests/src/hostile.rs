//! Malformed traffic, as any host on the LAN or any guest can send it: hand-built Ethernet
//! frames sent through an `AF_PACKET` socket, and oversized UDP datagrams, each from inside a
//! namespace of the World (a thread that enters it and ends after sending).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::Encodable;

use crate::cmd::error;

pub use crate::hostile6::{
    dad_probe, solicited_node, unsolicited_neighbor_advertisement, Ip6Frame, ALL_NODES, ALL_ROUTERS,
    NA_OVERRIDE, NA_ROUTER, NA_SOLICITED,
};

pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn mac_octets(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> =
        text.trim().split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect::<Option<_>>()?;
    bytes.try_into().ok()
}

impl crate::World {
    /// The MAC address of `dev` in netns `ns`.
    pub fn mac_of(&self, ns: &str, dev: &str) -> [u8; 6] {
        let out = self.exec_in(ns, &["cat", &format!("/sys/class/net/{dev}/address")]).expect("cat address");
        mac_octets(&String::from_utf8_lossy(&out.stdout)).expect("a MAC in sysfs")
    }
}

/// An Ethernet frame from `source` to `destination`.
pub fn ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&destination[..], &source, &ethertype.to_be_bytes(), payload].concat()
}

/// An IPv4 frame; `payload` starts right after the 20-byte header, whose total length and
/// checksum match it.
pub fn ipv4(
    destination: [u8; 6],
    source: [u8; 6],
    from: Ipv4Addr,
    to: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut header = [0u8; 20];
    header[0] = 0x45;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header[8] = 64;
    header[9] = protocol;
    header[12..16].copy_from_slice(&from.octets());
    header[16..20].copy_from_slice(&to.octets());
    let checksum = internet_checksum(&header);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    ethernet(destination, source, ETH_P_IP, &[&header[..], payload].concat())
}

/// A UDP datagram from port 68 to 67 (checksum 0: none) with a UDP length of `claimed`.
pub fn udp_to_dhcp_server(payload: &[u8], claimed: u16) -> Vec<u8> {
    [&68u16.to_be_bytes()[..], &67u16.to_be_bytes(), &claimed.to_be_bytes(), &[0, 0], payload].concat()
}

/// A UDP datagram from 68 to 67 whose length field is right.
pub fn udp(payload: &[u8]) -> Vec<u8> {
    udp_to_dhcp_server(payload, u16::try_from(8 + payload.len()).unwrap_or(u16::MAX))
}

/// The bytes of a DHCPDISCOVER from `mac`.
pub fn dhcp_discover(mac: [u8; 6]) -> Vec<u8> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(0x1234, unspecified, unspecified, unspecified, unspecified, &mac);
    message.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
    message.to_vec().unwrap_or_default()
}

/// An ARP packet: `header` is hardware type, protocol type and the two lengths.
pub fn arp(header: [u8; 6], op: u16, sender: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let body =
        [&header[..], &op.to_be_bytes(), &sender, &sender_ip.octets(), &[0; 6], &target_ip.octets()].concat();
    ethernet(BROADCAST_MAC, sender, ETH_P_ARP, &body)
}

/// Runs `work` on a thread inside network namespace `ns`.
pub(crate) fn in_netns<T: Send + 'static>(
    ns: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| error(format!("setns {path}: {e}")))?;
        work()
    })
    .join()
    .map_err(|_| error("the sending thread panicked"))?
}

/// An ICMPv6 Router Advertisement from `mac` (link-local `from`) to all nodes, announcing
/// itself as default router and `prefix`/64 for SLAAC: what a hostile guest sends to become
/// the host's IPv6 router.
pub fn router_advertisement(mac: [u8; 6], from: Ipv6Addr, prefix: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![134, 0, 0, 0, 64, 0];
    icmp.extend_from_slice(&1800u16.to_be_bytes()); // router lifetime
    icmp.extend_from_slice(&[0; 8]); // reachable time, retrans timer
    icmp.extend_from_slice(&[1, 1]); // source link-layer address
    icmp.extend_from_slice(&mac);
    icmp.extend_from_slice(&[3, 4, 64, 0xc0]); // prefix information: /64, on-link, autonomous
    icmp.extend_from_slice(&86_400u32.to_be_bytes());
    icmp.extend_from_slice(&14_400u32.to_be_bytes());
    icmp.extend_from_slice(&[0; 4]);
    icmp.extend_from_slice(&prefix.octets());
    Ip6Frame::new(mac, from, ALL_NODES, BROADCAST_MAC).hop_limit(255).icmpv6(&icmp)
}

/// The one's-complement sum of `bytes` as 16-bit words, complemented (RFC 1071).
pub(crate) fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends each of `frames` (complete Ethernet frames) out of `dev` in netns `ns`.
pub fn send_frames(ns: &str, dev: &str, frames: Vec<Vec<u8>>) -> io::Result<()> {
    let dev = dev.to_owned();
    in_netns(ns, move || {
        let index = nix::net::if_::if_nametoindex(dev.as_str()).map_err(io::Error::from)?;
        // Protocol 0: this socket only sends.
        // SAFETY: plain socket(2); the result is checked and owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        for frame in frames {
            // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
            let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&frame[..6]);
            // SAFETY: `frame` and `to` are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    std::ptr::from_ref(&to).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(error(format!(
                    "send a {}-byte frame on {dev}: {}",
                    frame.len(),
                    io::Error::last_os_error()
                )));
            }
        }
        Ok(())
    })
}

/// Sends a `len`-byte UDP datagram of junk to `to` from netns `ns` (the kernel fragments it).
pub fn send_udp_junk(ns: &str, to: SocketAddrV4, len: usize) -> io::Result<()> {
    in_netns(ns, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_broadcast(true)?;
        socket.send_to(&vec![0x5a; len], to).map(drop)
    })
}

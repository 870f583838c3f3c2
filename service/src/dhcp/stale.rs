//! Requests from a guest's stale address. The taps have strict reverse-path filtering, so
//! after a re-home the kernel drops a renewal sent from the guest's old address before it
//! reaches the UDP socket. One `AF_PACKET` socket for all taps (closing one costs an RCU grace
//! period, so not one per tap), filtered to UDP port 67, sees those frames so the server can
//! NAK them and the guest falls back to DISCOVER at once.

use super::socket::SERVER_PORT;
use crate::packet::PacketSocket;
use std::io;
use std::net::Ipv4Addr;

const ETH_P_IP: u16 = 0x0800;

pub struct StaleListener {
    socket: PacketSocket,
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
    pub fn open() -> io::Result<Self> {
        Ok(Self { socket: PacketSocket::open(ETH_P_IP, 0, Some(&filter()))? })
    }

    /// The next DHCP request: the interface it came in on, its IPv4 source address and the
    /// UDP payload's place in `buffer`.
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<(u32, Ipv4Addr, std::ops::Range<usize>)> {
        loop {
            let (len, from) = self.socket.receive(buffer).await?;
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some((source, payload)) = udp_payload(&buffer[..len]) {
                return Ok((from.sll_ifindex as u32, source, payload));
            }
        }
    }
}

/// The source address and the UDP payload's place in an IPv4 packet, bounded by the UDP
/// length (a short frame may carry link-layer padding). `None` for anything truncated or
/// inconsistent: the bytes come from any host on the LAN or from a guest.
pub fn udp_payload(packet: &[u8]) -> Option<(Ipv4Addr, std::ops::Range<usize>)> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let udp = packet.get(header_len..header_len + 8)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let end = header_len.checked_add(udp_len)?;
    (udp_len >= 8 && end <= packet.len()).then_some((Ipv4Addr::from(source), header_len + 8..end))
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

    /// The reported bug: a 13-byte IPv4 packet "to UDP port 67" from the LAN or a guest.
    #[test]
    fn truncated_headers_are_refused_without_panicking() {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 200, 255, 255, 255, 255];
        packet.extend([0, 68, 0, 67, 0, 8, 0, 0]);
        for len in 0..packet.len() {
            assert!(super::udp_payload(&packet[..len]).is_none(), "{len} bytes");
        }
        assert_eq!(super::udp_payload(&packet).map(|(_, p)| p), Some(28..28));
        // A UDP length past the end, or shorter than the UDP header itself.
        for udp_len in [9u8, 7, 0] {
            packet[25] = udp_len;
            assert!(super::udp_payload(&packet).is_none(), "UDP length {udp_len}");
        }
        // A header length (IHL) past the end.
        packet[0] = 0x4f;
        assert!(super::udp_payload(&packet).is_none());
    }
}

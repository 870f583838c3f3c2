//! The classic BPF program for a packet socket (`AF_PACKET`, `SOCK_DGRAM`, EtherType IPv6)
//! that reads Neighbor Discovery: the kernel runs it on every IPv6 packet of the interface, so
//! forwarded traffic is dropped there and never wakes vmnetd.
//!
//! On a `SOCK_DGRAM` socket absolute loads start at the network header: offset 6 is the IPv6
//! next header, offset 40 the first octet after the fixed header, which is the ICMPv6 type
//! when the next header is 58 (packets with extension headers are dropped, as
//! [`super::message::parse`] refuses them). A load past the end of a short packet ends the
//! program with 0: the packet is dropped.

/// The most of an accepted packet that reaches the socket: a whole Ethernet payload, more than
/// any NDP message vmnetd reads needs. A receive buffer of this size holds any of them.
pub const SNAP_LEN: u32 = 1500;

const NEXT_HEADER_OFFSET: u32 = 6;
const ICMPV6_TYPE_OFFSET: u32 = 40;
const ICMPV6: u32 = 58;
const ROUTER_SOLICITATION: u32 = 133;
const NEIGHBOR_ADVERTISEMENT: u32 = 136;

/// Accepts ICMPv6 (next header 58) of types 133 to 136 (RS, RA, NS, NA), truncated to
/// [`SNAP_LEN`]; drops everything else.
pub fn ndp_filter() -> [libc::sock_filter; 7] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    [
        op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, NEXT_HEADER_OFFSET),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 4, ICMPV6),
        op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, ICMPV6_TYPE_OFFSET),
        op(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 0, 2, ROUTER_SOLICITATION),
        op(libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K, 1, 0, NEIGHBOR_ADVERTISEMENT),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, SNAP_LEN),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mac;
    use crate::ndp::message;
    use std::net::Ipv6Addr;

    /// Runs a classic BPF program on `packet` the way the kernel does, for the opcodes
    /// [`ndp_filter`] uses: the number of octets kept (0: dropped).
    fn run(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let mut accumulator = 0u32;
        let mut pc = 0usize;
        while let Some(instruction) = program.get(pc) {
            pc += 1;
            let code = u32::from(instruction.code);
            let k = instruction.k;
            match code {
                _ if code == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                    let Some(&octet) = usize::try_from(k).ok().and_then(|at| packet.get(at)) else {
                        return 0;
                    };
                    accumulator = u32::from(octet);
                }
                _ if code & 0x07 == libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        op if op == libc::BPF_JEQ => accumulator == k,
                        op if op == libc::BPF_JGE => accumulator >= k,
                        op if op == libc::BPF_JGT => accumulator > k,
                        _ => panic!("opcode {code:#x} not in the test interpreter"),
                    };
                    assert_eq!(code & 0x08, libc::BPF_K, "jumps compare with a constant");
                    pc += usize::from(if taken { instruction.jt } else { instruction.jf });
                }
                _ if code == libc::BPF_RET | libc::BPF_K => return k.min(packet.len() as u32),
                _ => panic!("opcode {code:#x} not in the test interpreter"),
            }
        }
        panic!("the program ran off its end");
    }

    const GUEST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    const MAC: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    /// An IPv6 packet with next header `next` and `payload`.
    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend((payload.len() as u16).to_be_bytes());
        packet.extend([next, 64]);
        packet.extend(GUEST.octets());
        packet.extend(message::ALL_NODES.octets());
        packet.extend(payload);
        packet
    }

    #[test]
    fn keeps_neighbor_discovery() {
        let program = ndp_filter();
        let ns = message::neighbor_solicitation(GUEST, GUEST, Some(MAC));
        assert_eq!(run(&program, &ns), ns.len() as u32);
        let mut rs = ipv6(58, &[133, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(run(&program, &rs), rs.len() as u32);
        for kind in [134, 136] {
            rs[40] = kind;
            assert_eq!(run(&program, &rs), rs.len() as u32, "type {kind}");
        }
        // Longer packets are cut to SNAP_LEN.
        let big = ipv6(58, &[135; 4000]);
        assert_eq!(run(&program, &big), SNAP_LEN);
    }

    #[test]
    fn drops_everything_else() {
        let program = ndp_filter();
        let tcp = ipv6(6, &[0x1f, 0x90, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let udp = ipv6(17, &[0x02, 0x22, 0x02, 0x23, 0, 8, 0, 0]);
        let echo = ipv6(58, &[128, 0, 0, 0, 0, 1, 0, 1]);
        let redirect = ipv6(58, &[137, 0, 0, 0, 0, 0, 0, 0]);
        let hop_by_hop = ipv6(0, &[58, 0, 5, 2, 0, 0, 1, 0, 135, 0, 0, 0]);
        for packet in [tcp, udp, echo, redirect, hop_by_hop] {
            assert_eq!(run(&program, &packet), 0, "{packet:?}");
        }
        // Too short to hold the next header, or the ICMPv6 type.
        let rs = ipv6(58, &[133, 0, 0, 0, 0, 0, 0, 0]);
        for len in [0, 5, 6, 39, 40] {
            assert_eq!(run(&program, &rs[..len]), 0, "{len} octets");
        }
    }
}

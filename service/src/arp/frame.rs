//! ARP packets for Ethernet and IPv4 (RFC 826), as carried by an `AF_PACKET`/`SOCK_DGRAM` socket
//! (the kernel adds the Ethernet header).

use std::net::Ipv4Addr;

use crate::model::Mac;

pub const ETH_P_ARP: u16 = 0x0806;
pub const LEN: usize = 28;
const REQUEST: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub request: bool,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// RFC 5227 probe: "who has `target`?" with a zero sender address.
    pub fn probe(own_mac: Mac, target: Ipv4Addr) -> Self {
        Self { request: true, sender_mac: own_mac, sender_ip: Ipv4Addr::UNSPECIFIED, target_ip: target }
    }

    /// RFC 5227 announcement (gratuitous ARP): sender and target are both `address`.
    pub fn announcement(own_mac: Mac, address: Ipv4Addr) -> Self {
        Self { request: true, sender_mac: own_mac, sender_ip: address, target_ip: address }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        out[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        out[4] = 6;
        out[5] = 4;
        out[6..8].copy_from_slice(&(if self.request { REQUEST } else { 2 }).to_be_bytes());
        out[8..14].copy_from_slice(&self.sender_mac.0);
        out[14..18].copy_from_slice(&self.sender_ip.octets());
        // target hardware address stays zero
        out[24..28].copy_from_slice(&self.target_ip.octets());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..LEN)?;
        if bytes[0..6] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let op = u16::from_be_bytes([bytes[6], bytes[7]]);
        let mut sender_mac = [0u8; 6];
        sender_mac.copy_from_slice(&bytes[8..14]);
        let ip = |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
        Some(Self {
            request: op == REQUEST,
            sender_mac: Mac(sender_mac),
            sender_ip: ip(14),
            target_ip: ip(24),
        })
    }

    /// Whether this packet, from another host, shows that `candidate` is in use or being
    /// claimed (RFC 5227 2.1.1): it is the sender's address, or another host probes for it.
    pub fn conflicts_with(&self, candidate: Ipv4Addr, own_mac: Mac) -> bool {
        if self.sender_mac == own_mac {
            return false;
        }
        self.sender_ip == candidate
            || (self.request && self.sender_ip.is_unspecified() && self.target_ip == candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const OTHER: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const CANDIDATE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

    #[test]
    fn probe_round_trips_with_a_zero_sender() {
        let bytes = Arp::probe(OWN, CANDIDATE).encode();
        assert_eq!(&bytes[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&bytes[14..18], &[0, 0, 0, 0]);
        assert_eq!(Arp::decode(&bytes), Some(Arp::probe(OWN, CANDIDATE)));
        assert_eq!(Arp::decode(&bytes[..20]), None);
    }

    #[test]
    fn replies_and_rival_probes_conflict_but_our_own_packets_do_not() {
        let reply =
            Arp { request: false, sender_mac: OTHER, sender_ip: CANDIDATE, target_ip: Ipv4Addr::UNSPECIFIED };
        assert!(reply.conflicts_with(CANDIDATE, OWN));
        assert!(Arp::probe(OTHER, CANDIDATE).conflicts_with(CANDIDATE, OWN));
        assert!(!Arp::probe(OWN, CANDIDATE).conflicts_with(CANDIDATE, OWN));
        assert!(!Arp::announcement(OWN, CANDIDATE).conflicts_with(CANDIDATE, OWN));
        let unrelated = Arp {
            request: true,
            sender_mac: OTHER,
            sender_ip: Ipv4Addr::new(198, 51, 100, 7),
            target_ip: CANDIDATE,
        };
        assert!(!unrelated.conflicts_with(CANDIDATE, OWN));
    }
}

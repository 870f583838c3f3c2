//! The DHCP server's decisions (RFC 2131), without sockets: one request from the guest on a tap
//! in, at most one reply out.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::Name;

use crate::model::Mac;

/// What every lease carries, derived from the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseParams {
    /// The host's address on the uplink: server identifier and the guests' router.
    pub server: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    pub nameservers: Vec<Ipv4Addr>,
    /// Search domains; the first is also sent as the domain name.
    pub domains: Vec<String>,
    pub mtu: u32,
    pub lease_seconds: u32,
}

/// The one guest a tap serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapLease {
    pub guest: String,
    pub mac: Mac,
    /// `None` while the guest has no address (conflict, or being probed).
    pub address: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255: the client may not have an address yet.
    Broadcast,
    /// The client's configured address (renewing or informing).
    Unicast(Ipv4Addr),
}

#[derive(Debug)]
pub enum Outcome {
    Reply(Box<Message>, Destination),
    /// The guest found its address in use on the LAN (DHCPDECLINE).
    Declined(Ipv4Addr),
    Released(Ipv4Addr),
    Ignored(&'static str),
}

/// Answers `request`, received on `tap`'s tap.
pub fn respond(request: &Message, tap: &TapLease, params: &LeaseParams) -> Outcome {
    if request.opcode() != Opcode::BootRequest {
        return Outcome::Ignored("not a BOOTREQUEST");
    }
    if client_mac(request) != Some(tap.mac.0) {
        return Outcome::Ignored("from another hardware address than the guest's");
    }
    if !request.giaddr().is_unspecified() {
        return Outcome::Ignored("relayed");
    }
    let server_id = match request.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
        _ => None,
    };
    let requested = match request.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let ciaddr = request.ciaddr();
    match request.opts().msg_type() {
        Some(MessageType::Discover) => match tap.address {
            Some(address) => reply(request, MessageType::Offer, address, params, Destination::Broadcast),
            None => Outcome::Ignored("the guest has no address to offer"),
        },
        Some(MessageType::Request) => {
            if server_id.is_some_and(|id| id != params.server) {
                return Outcome::Ignored("the client chose another server");
            }
            // SELECTING and INIT-REBOOT name the address in option 50; RENEWING and
            // REBINDING in ciaddr.
            let (wanted, to) = match (requested, ciaddr.is_unspecified()) {
                (Some(ip), true) => (ip, Destination::Broadcast),
                (_, false) => (ciaddr, Destination::Unicast(ciaddr)),
                (None, true) => return Outcome::Ignored("REQUEST without an address"),
            };
            match tap.address {
                Some(address) if address == wanted => reply(request, MessageType::Ack, address, params, to),
                _ => nak(request, params),
            }
        }
        Some(MessageType::Inform) => {
            let to = match tap.address {
                Some(address) if address == ciaddr => Destination::Unicast(ciaddr),
                _ => Destination::Broadcast,
            };
            reply(request, MessageType::Ack, Ipv4Addr::UNSPECIFIED, params, to)
        }
        Some(MessageType::Decline) => match (server_id, requested) {
            (Some(id), Some(ip)) if id == params.server && Some(ip) == tap.address => Outcome::Declined(ip),
            _ => Outcome::Ignored("DECLINE of an address that is not the guest's"),
        },
        Some(MessageType::Release) if server_id.is_none_or(|id| id == params.server) => {
            Outcome::Released(ciaddr)
        }
        _ => Outcome::Ignored("not a client message this server answers"),
    }
}

/// The client's Ethernet address. `None` unless the hardware type is Ethernet and `hlen` is 6:
/// dhcproto's `chaddr()` slices its 16-byte field by `hlen`, which a packet can set to 255.
fn client_mac(request: &Message) -> Option<[u8; 6]> {
    if request.htype() != HType::Eth || request.hlen() != 6 {
        return None;
    }
    request.chaddr().try_into().ok()
}

fn base(request: &Message, kind: MessageType, yiaddr: Ipv4Addr, params: &LeaseParams) -> Message {
    let ciaddr = if kind == MessageType::Nak { Ipv4Addr::UNSPECIFIED } else { request.ciaddr() };
    let mut message = Message::new_with_id(
        request.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &client_mac(request).unwrap_or_default(),
    );
    message.set_opcode(Opcode::BootReply).set_flags(request.flags());
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(params.server));
    // RFC 6842: echo the client identifier.
    if let Some(id @ DhcpOption::ClientIdentifier(_)) = request.opts().get(OptionCode::ClientIdentifier) {
        opts.insert(id.clone());
    }
    message
}

fn reply(
    request: &Message,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    params: &LeaseParams,
    to: Destination,
) -> Outcome {
    let mut message = base(request, kind, yiaddr, params);
    let opts = message.opts_mut();
    // INFORM gets configuration, not a lease.
    if request.opts().msg_type() != Some(MessageType::Inform) {
        opts.insert(DhcpOption::AddressLeaseTime(params.lease_seconds));
        opts.insert(DhcpOption::Renewal(params.lease_seconds / 2));
        opts.insert(DhcpOption::Rebinding(params.lease_seconds / 8 * 7));
    }
    opts.insert(DhcpOption::SubnetMask(params.netmask));
    opts.insert(DhcpOption::BroadcastAddr(params.broadcast));
    opts.insert(DhcpOption::Router(vec![params.server]));
    if !params.nameservers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(params.nameservers.clone()));
    }
    if let Some(domain) = params.domains.first() {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    let search: Vec<Name> = params.domains.iter().filter_map(|d| Name::from_ascii(d).ok()).collect();
    if !search.is_empty() {
        opts.insert(DhcpOption::DomainSearch(search));
    }
    if let Ok(mtu) = u16::try_from(params.mtu) {
        if mtu >= 68 {
            opts.insert(DhcpOption::InterfaceMtu(mtu));
        }
    }
    Outcome::Reply(Box::new(message), to)
}

/// RFC 2131 4.3.2: a NAK is broadcast, so a client with a stale address hears it.
fn nak(request: &Message, params: &LeaseParams) -> Outcome {
    let mut message = base(request, MessageType::Nak, Ipv4Addr::UNSPECIFIED, params);
    message.set_flags(Flags::default().set_broadcast());
    message.opts_mut().insert(DhcpOption::Message("this address is not yours on this network".into()));
    Outcome::Reply(Box::new(message), Destination::Broadcast)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const MAC: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn params() -> LeaseParams {
        LeaseParams {
            server: SERVER,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            broadcast: Ipv4Addr::new(198, 51, 100, 255),
            nameservers: vec![Ipv4Addr::new(198, 51, 100, 1)],
            domains: vec!["home.test".into(), "example.test".into()],
            mtu: 1400,
            lease_seconds: 90,
        }
    }

    fn tap(address: Option<Ipv4Addr>) -> TapLease {
        TapLease { guest: "web".into(), mac: MAC, address }
    }

    fn request(kind: MessageType, ciaddr: Ipv4Addr, options: &[DhcpOption]) -> Message {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let mut message = Message::new_with_id(7, ciaddr, unspecified, unspecified, unspecified, &MAC.0);
        message.opts_mut().insert(DhcpOption::MessageType(kind));
        for option in options {
            message.opts_mut().insert(option.clone());
        }
        message
    }

    fn expect_reply(outcome: Outcome) -> (Message, Destination) {
        match outcome {
            Outcome::Reply(message, to) => (*message, to),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn expect_nak(outcome: Outcome) {
        let (message, to) = expect_reply(outcome);
        assert_eq!(message.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(to, Destination::Broadcast);
        assert!(message.flags().broadcast());
        assert!(message.yiaddr().is_unspecified());
    }

    #[test]
    fn discover_is_offered_the_guests_address_and_the_uplinks_settings() {
        let client_id = DhcpOption::ClientIdentifier(vec![1, 2, 3]);
        let discover =
            request(MessageType::Discover, Ipv4Addr::UNSPECIFIED, std::slice::from_ref(&client_id));
        let (offer, to) = expect_reply(respond(&discover, &tap(Some(GUEST)), &params()));
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), 7);
        assert_eq!(offer.yiaddr(), GUEST);
        let opts = offer.opts();
        assert_eq!(opts.msg_type(), Some(MessageType::Offer));
        assert_eq!(opts.get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
        assert_eq!(opts.get(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
        assert_eq!(opts.get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(90)));
        assert_eq!(opts.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(45)));
        assert_eq!(opts.get(OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(1400)));
        assert_eq!(opts.get(OptionCode::DomainName), Some(&DhcpOption::DomainName("home.test".into())));
        assert!(
            matches!(opts.get(OptionCode::DomainSearch), Some(DhcpOption::DomainSearch(d)) if d.len() == 2)
        );
        assert_eq!(
            opts.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(198, 51, 100, 1)]))
        );
        assert_eq!(opts.get(OptionCode::ClientIdentifier), Some(&client_id));
    }

    #[test]
    fn selecting_this_server_is_acked_and_another_server_is_left_alone() {
        let ours = request(
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[DhcpOption::ServerIdentifier(SERVER), DhcpOption::RequestedIpAddress(GUEST)],
        );
        let (ack, to) = expect_reply(respond(&ours, &tap(Some(GUEST)), &params()));
        assert_eq!(
            (ack.opts().msg_type(), ack.yiaddr(), to),
            (Some(MessageType::Ack), GUEST, Destination::Broadcast)
        );
        let theirs = request(
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)),
                DhcpOption::RequestedIpAddress(GUEST),
            ],
        );
        assert!(matches!(respond(&theirs, &tap(Some(GUEST)), &params()), Outcome::Ignored(_)));
    }

    #[test]
    fn a_stale_address_is_naked_in_every_request_state() {
        let stale = Ipv4Addr::new(203, 0, 113, 200);
        let reboot =
            request(MessageType::Request, Ipv4Addr::UNSPECIFIED, &[DhcpOption::RequestedIpAddress(stale)]);
        expect_nak(respond(&reboot, &tap(Some(GUEST)), &params()));
        let renew = request(MessageType::Request, stale, &[]);
        expect_nak(respond(&renew, &tap(Some(GUEST)), &params()));
        let selecting = request(
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            &[DhcpOption::ServerIdentifier(SERVER), DhcpOption::RequestedIpAddress(stale)],
        );
        expect_nak(respond(&selecting, &tap(Some(GUEST)), &params()));
        // A guest without an address (conflict) is sent back to DISCOVER as well.
        expect_nak(respond(&request(MessageType::Request, GUEST, &[]), &tap(None), &params()));
    }

    #[test]
    fn renewing_the_current_address_is_acked_by_unicast() {
        let renew = request(MessageType::Request, GUEST, &[]);
        let (ack, to) = expect_reply(respond(&renew, &tap(Some(GUEST)), &params()));
        assert_eq!(
            (ack.opts().msg_type(), ack.yiaddr(), ack.ciaddr()),
            (Some(MessageType::Ack), GUEST, GUEST)
        );
        assert_eq!(to, Destination::Unicast(GUEST));
    }

    #[test]
    fn other_hardware_addresses_and_relayed_requests_are_ignored() {
        let mut other = request(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
        other.set_chaddr(&[0x52, 0x54, 0, 0, 0, 1]);
        assert!(matches!(respond(&other, &tap(Some(GUEST)), &params()), Outcome::Ignored(_)));
        let mut relayed = request(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
        relayed.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
        assert!(matches!(respond(&relayed, &tap(Some(GUEST)), &params()), Outcome::Ignored(_)));
        let discover = request(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
        assert!(matches!(respond(&discover, &tap(None), &params()), Outcome::Ignored(_)));
    }

    /// Found by reading dhcproto: `chaddr()` indexes its 16-byte array up to `hlen`.
    #[test]
    fn a_hardware_address_length_past_chaddr_is_ignored_without_panicking() {
        let discover = request(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
        let mut bytes = dhcproto::Encodable::to_vec(&discover).unwrap();
        for hlen in [0, 5, 7, 16, 17, 255] {
            bytes[2] = hlen;
            let decoded = <Message as dhcproto::Decodable>::from_bytes(&bytes).unwrap();
            assert!(matches!(respond(&decoded, &tap(Some(GUEST)), &params()), Outcome::Ignored(_)), "{hlen}");
        }
    }

    #[test]
    fn inform_gets_settings_without_a_lease() {
        let inform = request(MessageType::Inform, GUEST, &[]);
        let (ack, to) = expect_reply(respond(&inform, &tap(Some(GUEST)), &params()));
        assert_eq!(to, Destination::Unicast(GUEST));
        assert!(ack.yiaddr().is_unspecified());
        assert!(!ack.opts().contains(OptionCode::AddressLeaseTime));
        assert!(ack.opts().contains(OptionCode::Router));
    }

    #[test]
    fn decline_and_release_are_reported() {
        let decline = request(
            MessageType::Decline,
            Ipv4Addr::UNSPECIFIED,
            &[DhcpOption::ServerIdentifier(SERVER), DhcpOption::RequestedIpAddress(GUEST)],
        );
        assert!(
            matches!(respond(&decline, &tap(Some(GUEST)), &params()), Outcome::Declined(ip) if ip == GUEST)
        );
        let release = request(MessageType::Release, GUEST, &[DhcpOption::ServerIdentifier(SERVER)]);
        assert!(
            matches!(respond(&release, &tap(Some(GUEST)), &params()), Outcome::Released(ip) if ip == GUEST)
        );
    }
}

//! An IPv6 packet from a tap or the uplink, as the Neighbor Discovery listeners read it; what
//! parses is built again and must parse to the same message.
#![no_main]
use vmnetd::ndp::message::{self, NaFlags, Ndp};

libfuzzer_sys::fuzz_target!(|packet: &[u8]| {
    let Ok(ndp) = message::parse(packet) else { return };
    let again = match ndp {
        Ndp::NeighborSolicitation { source, destination, target, source_mac } => {
            if destination == message::solicited_node(target) {
                message::neighbor_solicitation(source, target, source_mac)
            } else if let (Some(mac), true) = (source_mac, destination == target) {
                message::unicast_neighbor_solicitation(source, target, mac)
            } else {
                return;
            }
        }
        Ndp::NeighborAdvertisement {
            source,
            destination,
            target,
            target_mac: Some(mac),
            router,
            solicited,
            override_,
        } => message::neighbor_advertisement(
            source,
            destination,
            target,
            mac,
            NaFlags { router, solicited, override_ },
        ),
        _ => return,
    };
    assert_eq!(message::parse(&again), Ok(ndp));
});

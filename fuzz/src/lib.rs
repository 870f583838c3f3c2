//! What the fuzz targets share: the DHCP server's path from bytes to the bytes of its reply.

use std::net::Ipv4Addr;

use dhcproto::Encodable;
use vmnetd::dhcp::respond::{respond, Outcome};
use vmnetd::dhcp::{decode_request, LeaseParams, TapLease};
use vmnetd::model::Mac;

/// The guest every fuzzed request is answered for (its MAC is in the seeds).
pub fn lease(address: bool) -> TapLease {
    TapLease {
        guest: "web".into(),
        mac: Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        address: address.then_some(Ipv4Addr::new(198, 51, 100, 200)),
    }
}

pub fn params() -> LeaseParams {
    LeaseParams {
        server: Ipv4Addr::new(198, 51, 100, 10),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        broadcast: Ipv4Addr::new(198, 51, 100, 255),
        nameservers: vec![Ipv4Addr::new(198, 51, 100, 1)],
        domains: vec!["home.test".into()],
        mtu: 1500,
        lease_seconds: 90,
    }
}

/// As `vmnetd::dhcp` does for a datagram on a tap: decode, decide, encode the reply.
pub fn serve(bytes: &[u8], address: bool) {
    let Some(request) = decode_request(bytes) else { return };
    if let Outcome::Reply(reply, _) = respond(&request, &lease(address), &params()) {
        // A reply vmnetd builds must always encode.
        reply.to_vec().expect("a reply encodes");
    }
}

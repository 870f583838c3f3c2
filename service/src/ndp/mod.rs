//! IPv6 Neighbor Discovery (RFC 4861) as vmnetd speaks it on the taps and the uplink: the
//! packet codec and the socket filter, with no sockets of their own.

pub mod bpf;
pub mod message;

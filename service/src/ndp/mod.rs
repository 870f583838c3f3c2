//! IPv6 Neighbor Discovery on the guests' behalf: Router Advertisements on every tap, the
//! guests' addresses learned from their Duplicate Address Detection and neighbour traffic,
//! DAD run on the uplink for each before it is routed, and unsolicited Neighbor
//! Advertisements on the uplink once it is. One task ([`router::run`]) does it all over one
//! packet socket that sees only Neighbor Discovery messages, of every interface.

pub mod bpf;
pub mod message;
pub mod neighbors;
pub mod router;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::model::{Mac, Prefix6};
use crate::planner::Learned6;

/// What the task serves, as the reconciler last published it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routers {
    /// The uplink while it has IPv6 (`None`: offline or IPv4 only: no Router Advertisement).
    pub uplink: Option<UplinkPort>,
    /// Every guest's tap that is set up, by tap name.
    pub taps: BTreeMap<String, TapPort>,
}

/// The uplink's IPv6 as advertised to guests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkPort {
    pub interface: String,
    pub prefix: Prefix6,
    /// The router link-local every tap holds for `prefix`.
    pub router: Ipv6Addr,
    /// The host's own address in `prefix`: never a guest's.
    pub host: Ipv6Addr,
    pub mtu: u32,
    pub nameservers: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
}

/// One guest's tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPort {
    pub ifindex: u32,
    pub guest: String,
    pub guest_mac: Mac,
    /// Its addresses that are routed (and announced on the uplink).
    pub routed: Learned6,
}

/// What the task found, for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `guest` uses `address` and no LAN host does (DAD on the uplink passed): route it.
    InUse { guest: String, address: Ipv6Addr },
    /// `guest` stopped answering for `address`: forget it.
    Unused { guest: String, address: Ipv6Addr },
}

/// Most IPv6 addresses one guest may have routed at once (its stable and temporary ones of
/// a prefix, a few times over); more are ignored, so a guest cannot fill the host's tables.
pub const MAX_ADDRESSES_PER_GUEST: usize = 16;

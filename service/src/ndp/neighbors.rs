//! What the Neighbor Discovery task decides, without sockets: from what the reconciler
//! publishes, the messages received and the time, to the packets to send and what to tell the
//! reconciler. Every tap gets Router Advertisements (three quick ones when it appears or the
//! prefix changes, then every [`RA_INTERVAL`]); an address a guest starts using is checked on
//! the uplink for `dad_ms` before it is reported in use; a routed address is announced on the
//! uplink, probed on the tap when the guest has been silent about it, and reported unused
//! once it has not answered for `forget_unused_seconds`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::time::Duration;

use tokio::time::Instant;

use super::message::{self, NaFlags, Ndp, PrefixInfo, RouterAdvertisement, ALL_NODES};
use super::{Found, Routers, TapPort, UplinkPort, MAX_ADDRESSES_PER_GUEST};
use crate::config::Ipv6Config;
use crate::model::{Mac, Prefix6};

/// Time between unsolicited Router Advertisements once the quick ones are sent.
pub const RA_INTERVAL: Duration = Duration::from_secs(120);
/// Time between the quick ones (RFC 4861 allows up to 16 s).
const QUICK_INTERVAL: Duration = Duration::from_secs(1);
const QUICK_ADVERTISEMENTS: u8 = 3;
/// An answer to a Router Solicitation at most this often per tap.
const SOLICITED_INTERVAL: Duration = Duration::from_millis(500);
const ROUTER_LIFETIME: u16 = 1800;
/// The guests' time between Neighbor Solicitations, advertised: their DAD of a new address
/// takes this long (instead of 1 s), so that after a roam they are reachable in under a second.
/// vmnetd's own check on the uplink (`dad_ms`) ends well before, in time to pass on a conflict.
pub const RETRANS_TIMER_MS: u32 = 750;
const VALID_LIFETIME: u32 = 1800;
const PREFERRED_LIFETIME: u32 = 900;
/// Addresses of one guest being checked on the uplink at once.
const PENDING_PER_TAP: usize = 4;
/// Reachability probes before an address counts as unused.
const PROBES: u32 = 3;

/// A packet to send: out of `ifindex`, to link-layer address `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub packet: Vec<u8>,
}

/// The link-layer facts the task looked up for what the reconciler published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The uplink's index and MAC.
    pub uplink: Option<(u32, Mac)>,
    /// Each tap's index and own (host side) MAC, by tap name.
    pub taps: BTreeMap<String, (u32, Mac)>,
}

#[derive(Debug)]
struct TapState {
    name: String,
    port: TapPort,
    mac: Option<Mac>,
    next_advertisement: Instant,
    quick_left: u8,
    last_solicited: Option<Instant>,
    /// Routed addresses: when the guest last spoke of each, and the probes sent since.
    heard: BTreeMap<Ipv6Addr, (Instant, u32)>,
}

/// An address being checked on the uplink before it is routed.
#[derive(Debug)]
struct Pending {
    tap: u32,
    guest: String,
    until: Instant,
    /// The guest is running its own DAD: a LAN host's answer is passed on to it.
    guest_dad: bool,
}

/// The previous prefix and router, deprecated in the quick advertisements after a roam.
#[derive(Debug, Clone)]
struct Deprecated {
    prefix: Prefix6,
    router: Ipv6Addr,
}

pub struct Neighbors {
    dad: Duration,
    forget: Duration,
    uplink: Option<UplinkPort>,
    uplink_link: Option<(u32, Mac)>,
    taps: BTreeMap<u32, TapState>,
    pending: BTreeMap<Ipv6Addr, Pending>,
    /// Routed addresses announced on the uplink.
    announced: BTreeSet<Ipv6Addr>,
    deprecated: Option<Deprecated>,
    outgoing: Vec<Outgoing>,
    found: Vec<Found>,
}

impl Neighbors {
    pub fn new(config: &Ipv6Config) -> Self {
        Self {
            dad: Duration::from_millis(config.dad_ms.into()),
            forget: Duration::from_secs(config.forget_unused_seconds.into()),
            uplink: None,
            uplink_link: None,
            taps: BTreeMap::new(),
            pending: BTreeMap::new(),
            announced: BTreeSet::new(),
            deprecated: None,
            outgoing: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Packets to send now.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outgoing)
    }

    /// What to tell the reconciler now.
    pub fn take_found(&mut self) -> Vec<Found> {
        std::mem::take(&mut self.found)
    }

    /// What the reconciler published, with the links looked up for it.
    pub fn update(&mut self, routers: &Routers, links: &Links, now: Instant) {
        let old = self.uplink.take();
        let moved = old.as_ref().map(|u| (u.prefix, u.router))
            != routers.uplink.as_ref().map(|u| (u.prefix, u.router));
        if moved {
            self.pending.clear();
            self.announced.clear();
            for tap in self.taps.values_mut() {
                tap.heard.clear();
            }
            self.deprecated = old.as_ref().map(|u| Deprecated { prefix: u.prefix, router: u.router });
        }
        self.uplink = routers.uplink.clone();
        self.uplink_link = links.uplink;
        // Taps that went, taps that came (or were recreated with another index).
        let wanted: BTreeMap<u32, (&String, &TapPort)> =
            routers.taps.iter().map(|(name, port)| (port.ifindex, (name, port))).collect();
        self.taps.retain(|index, tap| wanted.get(index).is_some_and(|(name, _)| **name == tap.name));
        self.pending.retain(|_, p| wanted.contains_key(&p.tap));
        for (&index, &(name, port)) in &wanted {
            let mac = links.taps.get(name).map(|(_, mac)| *mac);
            let tap = self.taps.entry(index).or_insert_with(|| TapState {
                name: name.clone(),
                port: port.clone(),
                mac,
                next_advertisement: now,
                quick_left: QUICK_ADVERTISEMENTS,
                last_solicited: None,
                heard: BTreeMap::new(),
            });
            tap.port = port.clone();
            tap.mac = mac;
            if moved {
                tap.next_advertisement = now;
                tap.quick_left = QUICK_ADVERTISEMENTS;
            }
            tap.heard.retain(|address, _| port.routed.contains(address));
            for address in &port.routed {
                tap.heard.entry(*address).or_insert((now, 0));
            }
        }
        if self.uplink.is_none() {
            // No IPv6 now: the old router says goodbye at once, once.
            self.send_goodbye();
        }
        self.announce_routed();
        self.advertise_due(now);
    }

    /// Unsolicited Neighbor Advertisements on the uplink for newly routed addresses.
    fn announce_routed(&mut self) {
        let routed: BTreeSet<Ipv6Addr> =
            self.taps.values().flat_map(|t| t.port.routed.iter().copied()).collect();
        self.announced.retain(|a| routed.contains(a));
        let (Some(up), Some((index, mac))) = (&self.uplink, self.uplink_link) else { return };
        for address in routed.difference(&self.announced) {
            let flags = NaFlags { router: false, solicited: false, override_: true };
            let packet = message::neighbor_advertisement(up.host, ALL_NODES, *address, mac, flags);
            self.outgoing.push(Outgoing { ifindex: index, mac: message::multicast_mac(ALL_NODES), packet });
        }
        self.announced = routed;
    }

    /// A Neighbor Discovery message received on `ifindex` from link-layer address `from`.
    pub fn received(&mut self, packet: &[u8], ifindex: u32, from: Mac, now: Instant) {
        let Ok(message) = message::parse(packet) else { return };
        if self.uplink_link.is_some_and(|(index, _)| index == ifindex) {
            return self.received_on_uplink(message, from);
        }
        let Some(tap) = self.taps.get(&ifindex) else { return };
        // Frames from another MAC than the guest's are not the guest's (the filter drops them).
        if from != tap.port.guest_mac || self.uplink.is_none() {
            return;
        }
        match message {
            Ndp::RouterSolicitation { .. } => {
                let recent = tap.last_solicited.is_some_and(|at| now.duration_since(at) < SOLICITED_INTERVAL);
                if !recent {
                    self.advertise(ifindex, now);
                    if let Some(tap) = self.taps.get_mut(&ifindex) {
                        tap.last_solicited = Some(now);
                    }
                }
            }
            Ndp::NeighborSolicitation { source, target, .. } if source.is_unspecified() => {
                self.guest_uses(ifindex, target, true, now);
            }
            Ndp::NeighborSolicitation { source, .. } => self.guest_uses(ifindex, source, false, now),
            Ndp::NeighborAdvertisement { target, .. } => self.guest_uses(ifindex, target, false, now),
            Ndp::RouterAdvertisement { .. } => {}
        }
    }

    /// The guest of tap `ifindex` uses (or, `dad`, is about to use) `address`.
    fn guest_uses(&mut self, ifindex: u32, address: Ipv6Addr, dad: bool, now: Instant) {
        let Some((prefix, host)) = self.uplink.as_ref().map(|up| (up.prefix, up.host)) else { return };
        if !prefix.contains(address) {
            return; // link-local, or another prefix's
        }
        let taken_by_other = address == host
            || self.taps.iter().any(|(index, t)| *index != ifindex && t.port.routed.contains(&address))
            || self.pending.get(&address).is_some_and(|p| p.tap != ifindex);
        let Some(tap) = self.taps.get_mut(&ifindex) else { return };
        if taken_by_other {
            if dad {
                let mac = tap.mac.unwrap_or(tap.port.guest_mac);
                self.defend(ifindex, address, mac);
            }
            return;
        }
        if let Some(heard) = tap.heard.get_mut(&address) {
            *heard = (now, 0);
            return;
        }
        if self.pending.contains_key(&address) {
            return;
        }
        let busy = self.pending.values().filter(|p| p.tap == ifindex).count();
        if busy >= PENDING_PER_TAP || tap.port.routed.len() + busy >= MAX_ADDRESSES_PER_GUEST {
            return;
        }
        let guest = tap.port.guest.clone();
        if self.dad.is_zero() {
            return self.found.push(Found::InUse { guest, address });
        }
        self.pending.insert(address, Pending { tap: ifindex, guest, until: now + self.dad, guest_dad: dad });
        if let Some((index, _)) = self.uplink_link {
            let probe = message::neighbor_solicitation(Ipv6Addr::UNSPECIFIED, address, None);
            let mac = message::multicast_mac(message::solicited_node(address));
            self.outgoing.push(Outgoing { ifindex: index, mac, packet: probe });
        }
    }

    /// A LAN host answered for (or is itself checking) an address being checked.
    fn received_on_uplink(&mut self, message: Ndp, from: Mac) {
        let target = match message {
            Ndp::NeighborAdvertisement { target, .. } => target,
            Ndp::NeighborSolicitation { source, target, .. } if source.is_unspecified() => target,
            _ => return,
        };
        let Some(pending) = self.pending.remove(&target) else { return };
        tracing::info!(
            "{target}, which guest {} wants, is in use on the LAN by {from}: not routed",
            pending.guest
        );
        if pending.guest_dad {
            self.defend(pending.tap, target, from);
        }
    }

    /// Makes the guest's DAD for `address` fail: a Neighbor Advertisement for it on its tap.
    fn defend(&mut self, ifindex: u32, address: Ipv6Addr, owner: Mac) {
        let Some(up) = &self.uplink else { return };
        let flags = NaFlags { router: false, solicited: false, override_: true };
        let packet = message::neighbor_advertisement(up.router, ALL_NODES, address, owner, flags);
        self.outgoing.push(Outgoing { ifindex, mac: message::multicast_mac(ALL_NODES), packet });
    }

    /// Time passed: checks that ended, advertisements and probes due, addresses unused.
    pub fn tick(&mut self, now: Instant) {
        let done: Vec<Ipv6Addr> =
            self.pending.iter().filter(|(_, p)| p.until <= now).map(|(a, _)| *a).collect();
        for address in done {
            if let Some(pending) = self.pending.remove(&address) {
                self.found.push(Found::InUse { guest: pending.guest, address });
            }
        }
        self.advertise_due(now);
        self.probe_silent(now);
    }

    fn advertise_due(&mut self, now: Instant) {
        if self.uplink.is_none() {
            return;
        }
        let due: Vec<u32> =
            self.taps.iter().filter(|(_, t)| t.next_advertisement <= now).map(|(index, _)| *index).collect();
        for index in due {
            self.advertise(index, now);
        }
        if self.taps.values().all(|t| t.quick_left == 0) {
            self.deprecated = None;
        }
    }

    /// A Router Advertisement on tap `index` (after a roam, with the old prefix deprecated and
    /// a goodbye from the old router), and when the next one is due.
    fn advertise(&mut self, index: u32, now: Instant) {
        let Some(up) = &self.uplink else { return };
        let Some(tap) = self.taps.get_mut(&index) else { return };
        let Some(mac) = tap.mac else { return };
        let mut prefixes = vec![PrefixInfo {
            prefix: up.prefix.network(),
            len: up.prefix.prefix_len(),
            on_link: false,
            autonomous: true,
            valid: VALID_LIFETIME,
            preferred: PREFERRED_LIFETIME,
        }];
        let deprecated = self.deprecated.as_ref().filter(|_| tap.quick_left > 0);
        if let Some(old) = deprecated.filter(|old| old.prefix != up.prefix) {
            prefixes.push(deprecating(old.prefix));
        }
        let advertisement = RouterAdvertisement {
            source: up.router,
            source_mac: mac,
            hop_limit: 64,
            router_lifetime: ROUTER_LIFETIME,
            retrans_timer: RETRANS_TIMER_MS,
            prefixes,
            mtu: Some(up.mtu),
            rdnss: Some((VALID_LIFETIME, up.nameservers.clone())),
            dnssl: Some((VALID_LIFETIME, up.domains.clone())),
        };
        let group = message::multicast_mac(ALL_NODES);
        if let Some(old) = deprecated.filter(|old| old.router != up.router) {
            let goodbye = goodbye(old, mac);
            self.outgoing.push(Outgoing { ifindex: index, mac: group, packet: goodbye });
        }
        self.outgoing.push(Outgoing { ifindex: index, mac: group, packet: advertisement.encode(ALL_NODES) });
        tap.quick_left = tap.quick_left.saturating_sub(1);
        tap.next_advertisement = now + if tap.quick_left > 0 { QUICK_INTERVAL } else { RA_INTERVAL };
    }

    /// Without IPv6 now, one goodbye from the old router on every tap.
    fn send_goodbye(&mut self) {
        let Some(old) = self.deprecated.take() else { return };
        for (index, tap) in &self.taps {
            if let Some(mac) = tap.mac {
                let packet = goodbye(&old, mac);
                self.outgoing.push(Outgoing {
                    ifindex: *index,
                    mac: message::multicast_mac(ALL_NODES),
                    packet,
                });
            }
        }
    }

    /// Reachability probes for routed addresses the guest has been silent about; those
    /// silent for `forget` are reported unused.
    fn probe_silent(&mut self, now: Instant) {
        let Some(up) = &self.uplink else { return };
        let every = self.forget / (PROBES + 1);
        for tap in self.taps.values_mut() {
            let mut unused = Vec::new();
            for (address, (heard, probes)) in &mut tap.heard {
                let silent = now.duration_since(*heard);
                if silent >= self.forget {
                    unused.push(*address);
                } else if silent >= every * (*probes + 1) {
                    *probes += 1;
                    if let Some(mac) = tap.mac {
                        let packet = message::unicast_neighbor_solicitation(up.router, *address, mac);
                        self.outgoing.push(Outgoing {
                            ifindex: tap.port.ifindex,
                            mac: tap.port.guest_mac.0,
                            packet,
                        });
                    }
                }
            }
            for address in unused {
                tap.heard.remove(&address);
                self.found.push(Found::Unused { guest: tap.port.guest.clone(), address });
            }
        }
    }

    /// When something is next due (`None`: nothing).
    pub fn next_deadline(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.until);
        let advertisements =
            self.taps.values().map(|t| t.next_advertisement).filter(|_| self.uplink.is_some());
        let every = self.forget / (PROBES + 1);
        let probes = self
            .taps
            .values()
            .flat_map(|t| t.heard.values().map(move |(heard, probes)| *heard + every * (*probes + 1)));
        pending.chain(advertisements).chain(probes).min()
    }
}

/// The old prefix in a Prefix Information option that deprecates it at once (RFC 4862
/// 5.5.3 keeps its valid lifetime).
fn deprecating(prefix: Prefix6) -> PrefixInfo {
    PrefixInfo {
        prefix: prefix.network(),
        len: prefix.prefix_len(),
        on_link: false,
        autonomous: true,
        valid: 0,
        preferred: 0,
    }
}

/// From the old router: no longer a default router, its prefix deprecated.
fn goodbye(old: &Deprecated, mac: Mac) -> Vec<u8> {
    RouterAdvertisement {
        source: old.router,
        source_mac: mac,
        hop_limit: 64,
        router_lifetime: 0,
        retrans_timer: 0,
        prefixes: vec![deprecating(old.prefix)],
        mtu: None,
        rdnss: None,
        dnssl: None,
    }
    .encode(ALL_NODES)
}

#[cfg(test)]
#[path = "neighbors_tests.rs"]
mod tests;

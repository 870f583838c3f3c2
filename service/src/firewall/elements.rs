//! The set elements of vmnetd's tables: each guest's (tap, MAC, addresses) facts and the
//! uplink, as the key bytes the kernel compares with its registers.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ruleset::{Family, ARP_SENDERS, TAP_MACS, TAP_SOURCES, TAP_SOURCES6, UPLINKS};
use super::GuestFilter;
use crate::model::Mac;

/// One set element: which table and set, and its key bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub family: Family,
    pub set: &'static str,
    pub key: Vec<u8>,
}

pub(super) fn ifname(name: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // Interface names are at most 15 bytes; a longer one cannot exist and is cut.
    let len = name.len().min(15);
    bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    bytes
}

fn ether(mac: Mac) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&mac.0);
    bytes
}

/// The set elements one guest's filter consists of.
pub fn guest_elements(guest: &GuestFilter) -> Vec<Element> {
    let tap = ifname(&guest.tap);
    let mac = ether(guest.mac);
    let element = |family, set, parts: &[&[u8]]| Element { family, set, key: parts.concat() };
    let mut elements = vec![element(Family::Inet, TAP_MACS, &[&tap, &mac])];
    // A probe's sender is 0.0.0.0 (RFC 5227): allowed before the guest has an address.
    let senders = [Some(Ipv4Addr::UNSPECIFIED), guest.address];
    for address in senders.into_iter().flatten() {
        elements.push(element(Family::Arp, ARP_SENDERS, &[&tap, &mac, &mac, &address.octets()]));
    }
    if let Some(address) = guest.address {
        elements.push(element(Family::Inet, TAP_SOURCES, &[&tap, &address.octets()]));
    }
    // Global unicast only, once each (a duplicate would fail the whole batch).
    let addresses6: BTreeSet<&Ipv6Addr> = guest.addresses6.iter().filter(|a| is_global_unicast(a)).collect();
    for address in addresses6 {
        elements.push(element(Family::Inet, TAP_SOURCES6, &[&tap, &address.octets()]));
    }
    elements
}

/// Not `::`, loopback, multicast or link-local (which the rules allow, or never forward).
fn is_global_unicast(address: &Ipv6Addr) -> bool {
    let link_local = address.segments()[0] & 0xffc0 == 0xfe80;
    !(address.is_unspecified() || address.is_loopback() || address.is_multicast() || link_local)
}

/// The uplink's element.
pub fn uplink_element(interface: &str) -> Element {
    Element { family: Family::Inet, set: UPLINKS, key: ifname(interface).to_vec() }
}

//! vmnetd's nftables tables (`inet vmnet`, `arp vmnet`): anti-spoofing on every tap and
//! forwarding limited to what vmnet owns. See [`ruleset`] for what they hold.
//!
//! Crate: Mullvad's `nftnl` (libnftnl underneath): every change is one netlink batch, applied
//! by the kernel atomically, from vmnetd's own socket in well under a millisecond; the
//! `nftables` crate would run the `nft` binary for each change. Sets with concatenated keys,
//! lookups into other registers and named counters are written over its `nftnl-sys`
//! bindings ([`encode`]), not by hand-encoding netlink.
//!
//! Discipline, as with routes: a full sync replaces both tables in one batch (counters carried
//! over), which sweeps anything stale or edited and never duplicates a rule; a guest's change
//! adds and removes only its set elements; with no guest left the tables are deleted.

mod counter;
mod elements;
mod encode;
pub mod ruleset;
mod socket;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::Mac;
use counter::Count;
use ruleset::{Element, Family, FAMILIES};
use socket::NfSocket;

/// One guest as its tap's filter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFilter {
    pub tap: String,
    pub mac: Mac,
    /// The address the guest may send from (and be forwarded to); `None` offline or without one.
    pub address: Option<Ipv4Addr>,
    /// The guest's learned, confirmed global IPv6 addresses (sorted, deduplicated): the only
    /// IPv6 sources it may send from beyond link-local, and the only IPv6 destinations
    /// forwarded to it.
    pub addresses6: Vec<Ipv6Addr>,
}

/// Everything the tables hold beyond their fixed skeleton.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterPlan {
    pub uplink: Option<String>,
    pub guests: Vec<GuestFilter>,
    /// vmnetd routes IPv6 for the guests (the uplink has an IPv6 prefix, IPv6 is enabled);
    /// without it no IPv6 is forwarded to or from a tap.
    pub ipv6: bool,
}

/// Which forwarded traffic that is no guest's is dropped: that of each IP version whose
/// forwarding vmnetd turned on (the host did not forward it before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blocking {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// What the tables' rules depend on (their elements aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skeleton {
    blocking: Blocking,
    ipv6: bool,
}

/// A named counter of dropped packets, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub name: String,
    pub what: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// The tables as vmnetd last wrote them.
#[derive(Default)]
pub struct Firewall {
    socket: Option<NfSocket>,
    /// `Some` while the tables are in place, as they were written.
    installed: Option<Skeleton>,
    uplink: Option<String>,
    ipv6: bool,
    guests: BTreeMap<String, GuestFilter>,
}

impl Firewall {
    fn socket(&mut self) -> Result<&mut NfSocket, String> {
        if self.socket.is_none() {
            self.socket = Some(NfSocket::open().map_err(|e| format!("nftables socket: {e}"))?);
        }
        self.socket.as_mut().ok_or_else(|| "nftables socket: not open".to_owned())
    }

    /// Replaces both tables with `plan` in one batch, the counters carried over.
    pub fn replace(&mut self, plan: &FilterPlan, blocking: Blocking) -> Result<(), String> {
        self.uplink = plan.uplink.clone();
        self.ipv6 = plan.ipv6;
        self.guests = plan.guests.iter().map(|g| (g.tap.clone(), g.clone())).collect();
        self.write_all(Skeleton { blocking, ipv6: plan.ipv6 })
    }

    /// Whether the tables are in place, as vmnetd last wrote them.
    pub fn is_installed(&self) -> bool {
        self.installed.is_some()
    }

    /// The uplink the tables will name, and whether they forward IPv6, once they are written.
    pub fn set_uplink(&mut self, uplink: Option<String>, ipv6: bool) {
        self.uplink = uplink;
        self.ipv6 = ipv6;
    }

    /// The tables in place (with what is known of the guests) before forwarding is turned on.
    pub fn ensure_installed(&mut self, blocking: Blocking) -> Result<(), String> {
        let wanted = Skeleton { blocking, ipv6: self.ipv6 };
        if self.installed == Some(wanted) {
            return Ok(());
        }
        self.write_all(wanted)
    }

    fn write_all(&mut self, skeleton: Skeleton) -> Result<(), String> {
        // A missing table counted nothing; counts that cannot be read start again from 0.
        let counts = self.counts().unwrap_or_else(|e| {
            tracing::warn!("{e}: the counters start from 0");
            BTreeMap::new()
        });
        let mut elements: Vec<Element> = self.guests.values().flat_map(ruleset::guest_elements).collect();
        elements.extend(self.uplink.as_deref().map(ruleset::uplink_element));
        let tables = [ruleset::inet_table(skeleton.ipv6, skeleton.blocking), ruleset::arp_table()];
        let batch = encode::replace(&tables, &elements, &counts);
        self.installed = None;
        self.socket()?.apply(&batch).map_err(|e| format!("writing the nftables table vmnet: {e}"))?;
        self.installed = Some(skeleton);
        Ok(())
    }

    /// One guest's elements added (or changed, e.g. a new address). Without the tables in
    /// place, or when the kernel's elements differ from what vmnetd wrote, both tables are
    /// written anew.
    pub fn ensure_guest(&mut self, guest: &GuestFilter, blocking: Blocking) -> Result<(), String> {
        let old = self.guests.insert(guest.tap.clone(), guest.clone());
        if old.as_ref() == Some(guest) && self.installed.is_some() {
            return Ok(());
        }
        let Some(installed) = self.installed else {
            return self.write_all(Skeleton { blocking, ipv6: self.ipv6 });
        };
        let (removed, added) = changed_elements(old.as_ref(), Some(guest));
        self.change_or_rewrite(&removed, &added, installed)
    }

    /// One guest's elements removed; the tables stay until the host stops forwarding.
    pub fn remove_guest(&mut self, tap: &str) -> Result<(), String> {
        let Some(old) = self.guests.remove(tap) else { return Ok(()) };
        let Some(installed) = self.installed else { return Ok(()) };
        let (removed, added) = changed_elements(Some(&old), None);
        self.change_or_rewrite(&removed, &added, installed)
    }

    fn change_or_rewrite(
        &mut self,
        removed: &[Element],
        added: &[Element],
        installed: Skeleton,
    ) -> Result<(), String> {
        let batch = encode::change_elements(removed, added);
        match self.socket()?.apply(&batch) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!("nftables elements of vmnet: {e}; writing the tables anew");
                self.write_all(installed)
            }
        }
    }

    /// Deletes both tables (absent ones are fine). Every failure is reported.
    pub fn delete(&mut self) -> Vec<String> {
        self.guests.clear();
        self.installed = None;
        let mut errors = Vec::new();
        for family in FAMILIES {
            let socket = match self.socket() {
                Ok(socket) => socket,
                Err(e) => return vec![e],
            };
            match socket.apply(&encode::delete(family)) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                    errors.push(format!("deleting the nftables table {family:?} vmnet: {e}"))
                }
                _ => {}
            }
        }
        errors
    }

    fn counts(&mut self) -> Result<BTreeMap<(Family, String), Count>, String> {
        let socket = self.socket()?;
        let mut counts = BTreeMap::new();
        for family in FAMILIES {
            let counters = socket.counters(family).map_err(|e| format!("reading vmnet's counters: {e}"))?;
            counts.extend(counters.into_iter().map(|(name, count)| ((family, name), count)));
        }
        Ok(counts)
    }
}

/// The dropped-packet counters of the tables in place (none without them), read from the
/// kernel on a socket of their own: callable from anywhere, beside the reconciler.
pub fn dropped() -> Result<Vec<Dropped>, String> {
    let mut socket = NfSocket::open().map_err(|e| format!("nftables socket: {e}"))?;
    let mut found = Vec::new();
    for family in FAMILIES {
        let counters = socket.counters(family).map_err(|e| format!("reading vmnet's counters: {e}"))?;
        for (name, count) in counters {
            let what =
                ruleset::COUNTERS.iter().find(|(f, n, _)| *f == family && *n == name).map_or("", |c| c.2);
            found.push(Dropped { name, what, packets: count.packets, bytes: count.bytes });
        }
    }
    Ok(found)
}

/// The elements to remove and to add when a guest's filter goes from `old` to `new`.
fn changed_elements(old: Option<&GuestFilter>, new: Option<&GuestFilter>) -> (Vec<Element>, Vec<Element>) {
    let old = old.map(ruleset::guest_elements).unwrap_or_default();
    let new = new.map(ruleset::guest_elements).unwrap_or_default();
    let removed = old.iter().filter(|e| !new.contains(e)).cloned().collect();
    let added = new.iter().filter(|e| !old.contains(e)).cloned().collect();
    (removed, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(address: Option<&str>) -> GuestFilter {
        GuestFilter {
            tap: "vmt-web".into(),
            mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 3]),
            address: address.map(|a| a.parse().unwrap()),
            addresses6: Vec::new(),
        }
    }

    fn with6(mut guest: GuestFilter, addresses: &[&str]) -> GuestFilter {
        guest.addresses6 = addresses.iter().map(|a| a.parse().unwrap()).collect();
        guest
    }

    #[test]
    fn a_new_address_replaces_only_the_address_elements() {
        let (old, new) = (guest(Some("198.51.100.200")), guest(Some("203.0.113.200")));
        let (removed, added) = changed_elements(Some(&old), Some(&new));
        let sets = |elements: &[Element]| elements.iter().map(|e| e.set).collect::<Vec<_>>();
        // The MAC and the probe sender (0.0.0.0) stay.
        assert_eq!(sets(&removed), [ruleset::ARP_SENDERS, ruleset::TAP_SOURCES]);
        assert_eq!(sets(&added), [ruleset::ARP_SENDERS, ruleset::TAP_SOURCES]);
        assert!(added.iter().all(|e| e.key.ends_with(&[203, 0, 113, 200])));
        assert_eq!(changed_elements(Some(&new), Some(&new)), (vec![], vec![]));
    }

    #[test]
    fn adding_and_removing_a_guest_are_symmetric() {
        let g = guest(Some("198.51.100.200"));
        let (none, added) = changed_elements(None, Some(&g));
        let (removed, none_again) = changed_elements(Some(&g), None);
        assert!(none.is_empty() && none_again.is_empty());
        assert_eq!(added, removed);
        assert_eq!(added.len(), 4, "MAC, two ARP senders, source address");
        // Without an address: the MAC and the probe sender only.
        assert_eq!(changed_elements(None, Some(&guest(None))).1.len(), 2);
        let g6 = with6(g, &["2001:db8:1::200", "2001:db8:1::201"]);
        let (_, added) = changed_elements(None, Some(&g6));
        assert_eq!(changed_elements(Some(&g6), None).0, added);
        assert_eq!(added.len(), 6, "and one per IPv6 address");
    }

    #[test]
    fn a_new_ipv6_address_changes_only_its_element() {
        let old = with6(guest(Some("198.51.100.200")), &["2001:db8:1::200", "2001:db8:1::201"]);
        let new = with6(guest(Some("198.51.100.200")), &["2001:db8:1::201", "2001:db8:1::202"]);
        let (removed, added) = changed_elements(Some(&old), Some(&new));
        assert_eq!(removed.len(), 1);
        assert_eq!(added.len(), 1);
        assert!(removed[0].set == ruleset::TAP_SOURCES6 && removed[0].key.ends_with(&[2, 0]));
        assert!(added[0].set == ruleset::TAP_SOURCES6 && added[0].key.ends_with(&[2, 2]));
    }

    #[test]
    fn only_global_unicast_ipv6_addresses_become_elements_once_each() {
        let odd = ["fe80::1", "::", "::1", "ff02::1", "2001:db8:1::200", "2001:db8:1::200"];
        let elements = ruleset::guest_elements(&with6(guest(None), &odd));
        let sources6: Vec<_> = elements.iter().filter(|e| e.set == ruleset::TAP_SOURCES6).collect();
        assert_eq!(sources6.len(), 1);
        assert!(sources6[0].key.ends_with(&[2, 0]));
    }
}

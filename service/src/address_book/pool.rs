//! The pool and the occupancy rules: which host numbers of the uplink's subnet a guest may get.
//!
//! Addresses are kept as host numbers (the place after the network address), so a guest keeps
//! its host part when the laptop roams to another subnet of the same size.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Deserialize;

use super::numbers::Given;
use super::Network;
use crate::model::Subnet;

/// Host numbers guests get addresses from, relative to the subnet: positive numbers count from
/// the network address, negative ones back from the broadcast address (-1 is the broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub first: i64,
    pub last: i64,
}

impl Default for Pool {
    /// .200 to .249 in a /24.
    fn default() -> Self {
        Pool { first: 200, last: 249 }
    }
}

impl Pool {
    /// The pool's host numbers in `subnet`, clipped to the subnet; `None` if none remain.
    pub fn range(&self, subnet: Subnet) -> Option<(u32, u32)> {
        let size = subnet.size() as i64;
        let resolve = |n: i64| if n < 0 { size + n } else { n };
        let first = resolve(self.first).max(1);
        let last = resolve(self.last).min(size - 2);
        (first <= last).then_some((first as u32, last as u32))
    }
}

/// The addresses no guest may have in the uplink's subnet, and those already given.
pub struct Occupancy<'a> {
    subnet: Subnet,
    taken: BTreeSet<u32>,
    /// The guests' numbers, when they count (the address book keeps them).
    given: Option<&'a Given>,
    /// `(first, end)`: every number from `first` (a pool's) up to `end` is taken.
    scanned: (u32, u32),
}

impl Occupancy<'static> {
    /// Reserves the host's own address, the gateway and the addresses found in use on the LAN
    /// (`in_use`) in `network`'s subnet.
    pub fn new(network: &Network, in_use: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let subnet = network.subnet;
        let taken = [network.host]
            .into_iter()
            .chain(network.gateway)
            .chain(in_use)
            .filter_map(|addr| subnet.host_number(addr))
            .collect();
        Self { subnet, taken, given: None, scanned: (0, 0) }
    }

    /// These guests' numbers are taken too.
    pub fn with_given(self, given: &Given) -> Occupancy<'_> {
        Occupancy { given: Some(given), ..self }
    }
}

impl Occupancy<'_> {
    /// Whether `number` can be given to a guest now.
    pub fn is_free(&self, number: u32) -> bool {
        self.subnet.is_assignable(number)
            && !self.taken.contains(&number)
            && !self.given.is_some_and(|given| given.contains_key(&number))
    }

    /// Marks `number` as given; false if it was not free.
    pub fn take(&mut self, number: u32) -> bool {
        self.is_free(number) && self.taken.insert(number)
    }

    /// Takes the first free number of `pool`. Walks the guests' numbers alongside rather than
    /// looking each up, and starts where the last call for this pool ended.
    pub fn take_from(&mut self, pool: &Pool) -> Option<u32> {
        let (first, last) = pool.range(self.subnet)?;
        let start = if self.scanned.0 == first { self.scanned.1.max(first) } else { first };
        let mut given =
            self.given.into_iter().flat_map(|g| g.range(start..=last).map(|(n, _)| *n)).peekable();
        let (subnet, taken) = (self.subnet, &self.taken);
        let number = (start..=last).find(|&n| {
            while given.next_if(|&g| g < n).is_some() {}
            given.next_if_eq(&n).is_none() && subnet.is_assignable(n) && !taken.contains(&n)
        })?;
        self.taken.insert(number);
        self.scanned = (first, number.saturating_add(1));
        Some(number)
    }

    /// Checks that a requested address can be given, and takes it.
    pub fn take_address(&mut self, address: Ipv4Addr) -> Result<u32, String> {
        let number = self
            .subnet
            .host_number(address)
            .ok_or_else(|| format!("{address} is not in the uplink's subnet {}", self.subnet))?;
        if !self.subnet.is_assignable(number) {
            return Err(format!("{address} is the network or broadcast address of {}", self.subnet));
        }
        if !self.take(number) {
            return Err(format!("{address} is the host's, the gateway's or another guest's address"));
        }
        Ok(number)
    }
}

/// Gives every guest an address in `network`'s subnet: each keeps its host number when that is
/// still free (not in use on the LAN either), the others get the first free numbers of `pool`
/// (or `None`: no room). Guests are served in the order given. Returns whether any host number
/// changed.
pub fn assign<'a>(
    network: &Network,
    pool: &Pool,
    in_use: impl IntoIterator<Item = Ipv4Addr>,
    host_numbers: impl IntoIterator<Item = &'a mut Option<u32>>,
) -> bool {
    let mut occupancy = Occupancy::new(network, in_use);
    let mut homeless = Vec::new();
    for slot in host_numbers {
        match *slot {
            Some(number) if occupancy.take(number) => {}
            _ => homeless.push(slot),
        }
    }
    let mut changed = false;
    for slot in homeless {
        let number = occupancy.take_from(pool);
        changed |= *slot != number;
        *slot = number;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(addr: &str, prefix_len: u8, gateway: &str) -> Network {
        let host = addr.parse().unwrap();
        let subnet = Subnet::containing(host, prefix_len).unwrap();
        Network { interface: "wlan0".into(), subnet, host, gateway: gateway.parse().ok(), connection: None }
    }

    #[test]
    fn pool_is_relative_and_clipped() {
        let s24 = uplink("198.51.100.10", 24, "").subnet;
        assert_eq!(Pool::default().range(s24), Some((200, 249)));
        assert_eq!(Pool { first: -10, last: -2 }.range(s24), Some((246, 254)));
        assert_eq!(Pool { first: 0, last: 1000 }.range(s24), Some((1, 254)));
        let s28 = uplink("198.51.100.10", 28, "").subnet;
        assert_eq!(Pool::default().range(s28), None);
        assert_eq!(Pool { first: -4, last: -2 }.range(s28), Some((12, 14)));
    }

    #[test]
    fn never_network_broadcast_host_gateway_or_taken() {
        let up = uplink("198.51.100.201", 24, "198.51.100.200");
        let mut slots = vec![None, None, Some(202)];
        assert!(assign(&up, &Pool { first: 200, last: 204 }, [], slots.iter_mut()));
        assert_eq!(slots, vec![Some(203), Some(204), Some(202)]);
        let mut more = [None];
        assign(&up, &Pool { first: 254, last: 300 }, [], more.iter_mut());
        assert_eq!(more, [Some(254)]);
    }

    #[test]
    fn rehome_keeps_host_numbers_that_fit() {
        let office = uplink("203.0.113.50", 24, "203.0.113.1");
        let mut slots = vec![Some(200), Some(50), Some(201)];
        assert!(assign(&office, &Pool::default(), [], slots.iter_mut()));
        // 50 is the host's own address in the new subnet: that guest moves to the first free.
        assert_eq!(slots, vec![Some(200), Some(202), Some(201)]);
        assert!(!assign(&office, &Pool::default(), [], slots.iter_mut()), "stable");
    }

    #[test]
    fn the_first_free_number_skips_the_guests_and_everything_taken_since() {
        let up = uplink("198.51.100.10", 24, "198.51.100.1");
        let given = Given::from([(200, 1), (201, 1), (203, 1), (249, 1)]);
        let mut occ = Occupancy::new(&up, ["198.51.100.205".parse().unwrap()]).with_given(&given);
        assert!(!occ.is_free(201) && occ.is_free(202) && !occ.is_free(205));
        assert_eq!(occ.take_from(&Pool::default()), Some(202));
        assert!(occ.take(204));
        assert_eq!(occ.take_from(&Pool::default()), Some(206), "204 taken, 205 in use on the LAN");
        // Another pool starts from its own first number.
        assert_eq!(occ.take_from(&Pool { first: 2, last: 3 }), Some(2));
        let mut rest = std::iter::from_fn(|| occ.take_from(&Pool::default()));
        assert_eq!(rest.by_ref().count(), 42, "207 to 248");
        assert_eq!(occ.take_from(&Pool::default()), None, "249 is a guest's");
    }

    #[test]
    fn smaller_subnet_and_exhaustion() {
        let small = uplink("192.0.2.1", 29, "192.0.2.6");
        let mut slots = vec![Some(200), None, None, None, None, None];
        assign(&small, &Pool { first: 1, last: -2 }, [], slots.iter_mut());
        assert_eq!(slots, vec![Some(2), Some(3), Some(4), Some(5), None, None]);
    }

    #[test]
    fn requested_addresses() {
        let up = uplink("198.51.100.10", 24, "198.51.100.1");
        let mut occ = Occupancy::new(&up, []);
        assert_eq!(occ.take_address("198.51.100.77".parse().unwrap()), Ok(77));
        for bad in [
            "198.51.100.77",
            "198.51.100.10",
            "198.51.100.1",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.5",
        ] {
            assert!(occ.take_address(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_in_use_on_the_lan_are_skipped_and_their_guests_moved() {
        let up = uplink("198.51.100.10", 24, "198.51.100.1");
        let in_use: [Ipv4Addr; 1] = ["198.51.100.200".parse().unwrap()];
        let mut slots = vec![Some(200), None];
        assert!(assign(&up, &Pool::default(), in_use, slots.iter_mut()));
        assert_eq!(slots, vec![Some(201), Some(202)]);
    }
}

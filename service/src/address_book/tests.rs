//! The address book's rules, with a fake LAN behind the prober.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::model::{Mac, Uplink};

/// A LAN where `taken` addresses answer probes; records every probe.
#[derive(Default)]
pub struct FakeLan {
    pub taken: RefCell<BTreeSet<Ipv4Addr>>,
    /// Who answers for a taken address (default 02:00:00:00:00:09).
    pub macs: RefCell<BTreeMap<Ipv4Addr, Mac>>,
    pub probed: RefCell<Vec<Ipv4Addr>>,
    pub broken: bool,
}

impl Prober for &FakeLan {
    async fn probe(
        &self,
        _: &str,
        candidates: &[Ipv4Addr],
        _: Duration,
    ) -> io::Result<BTreeMap<Ipv4Addr, Mac>> {
        if self.broken {
            return Err(io::Error::other("no such interface"));
        }
        self.probed.borrow_mut().extend(candidates);
        let (taken, macs) = (self.taken.borrow(), self.macs.borrow());
        let mac = |c: &Ipv4Addr| macs.get(c).copied().unwrap_or(Mac([2, 0, 0, 0, 0, 9]));
        Ok(candidates.iter().filter(|c| taken.contains(c)).map(|c| (*c, mac(c))).collect())
    }
}

pub fn uplink(address: &str, prefix_len: u8, gateway: &str) -> Uplink {
    Uplink {
        interface: "wlan0".into(),
        address: address.parse().unwrap(),
        prefix_len,
        gateway: gateway.parse().ok(),
        mtu: 1500,
        nameservers: vec![],
        domains: vec![],
        connection: None,
        ipv6: None,
    }
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn book(lan: &FakeLan, pool: Pool) -> AddressBook<&FakeLan> {
    AddressBook::new(pool, Duration::from_millis(200), lan)
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

const HOME: (&str, u8, &str) = ("198.51.100.10", 24, "198.51.100.1");

#[test]
fn new_guests_get_probed_pool_addresses_and_the_lan_holder_is_skipped() {
    let lan = FakeLan::default();
    lan.taken.borrow_mut().insert(ip("198.51.100.200"));
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    assert_eq!(run(book.admit("web", None)), Ok(Some(ip("198.51.100.201"))));
    assert_eq!(run(book.admit("db", None)), Ok(Some(ip("198.51.100.202"))));
    assert_eq!(book.status("web"), AddressStatus::Active(ip("198.51.100.201")));
    assert_eq!(book.number("db"), Some(202));
    assert!(lan.probed.borrow().contains(&ip("198.51.100.200")));
}

#[test]
fn requested_addresses_are_honoured_or_refused() {
    let lan = FakeLan::default();
    lan.taken.borrow_mut().insert(ip("198.51.100.99"));
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    assert_eq!(run(book.admit("web", Some(ip("198.51.100.77")))), Ok(Some(ip("198.51.100.77"))));
    for (taken, why) in [
        ("198.51.100.77", "another guest's"),
        ("198.51.100.10", "the host's"),
        ("198.51.100.1", "the gateway's"),
        ("198.51.100.0", "network"),
        ("198.51.100.255", "broadcast"),
        ("203.0.113.5", "not in the uplink's subnet"),
        ("198.51.100.99", "in use on the LAN"),
    ] {
        let refused = run(book.admit("db", Some(ip(taken)))).unwrap_err();
        assert!(refused.0.contains(why), "{taken}: {refused}");
        assert_eq!(book.number("db"), None, "a refusal gives nothing");
    }
}

#[test]
fn offline_gives_nothing_and_refuses_requests() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    assert_eq!(run(book.admit("web", None)), Ok(None));
    assert_eq!(book.status("web"), AddressStatus::Offline);
    assert!(run(book.admit("db", Some(ip("198.51.100.77")))).unwrap_err().0.contains("offline"));
    assert!(lan.probed.borrow().is_empty());
}

#[test]
fn rehome_keeps_host_parts_and_moves_guests_that_do_not_fit() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    run(book.admit("a", None)).unwrap();
    run(book.admit("b", Some(ip("198.51.100.50")))).unwrap();
    // Office: the host is .50 there, so b moves to the first free pool address.
    run(book.set_uplink(Some(&uplink("203.0.113.50", 24, "203.0.113.1"))));
    assert_eq!(run(book.rehome(["a", "b"])), ["b"], "a keeps its host part");
    assert_eq!(book.address("a"), Some(ip("203.0.113.200")));
    assert_eq!(book.address("b"), Some(ip("203.0.113.201")));
    assert!(run(book.rehome(["a", "b"])).is_empty(), "stable once homed");
}

#[test]
fn rehome_to_a_smaller_subnet_leaves_the_guests_without_room_in_conflict() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool { first: 1, last: -2 });
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    for name in ["a", "b", "c", "d", "e"] {
        run(book.admit(name, None)).unwrap();
    }
    // A /29: 6 usable, of them the host (.1) and the gateway (.6): four guests fit.
    run(book.set_uplink(Some(&uplink("192.0.2.1", 29, "192.0.2.6"))));
    run(book.rehome(["a", "b", "c", "d", "e"]));
    let homed: Vec<_> = ["a", "b", "c", "d", "e"].iter().filter_map(|n| book.address(n)).collect();
    assert_eq!(homed, [ip("192.0.2.2"), ip("192.0.2.3"), ip("192.0.2.4"), ip("192.0.2.5")]);
    let AddressStatus::Conflict(reason) = book.status("e") else { panic!("{:?}", book.status("e")) };
    assert!(reason.contains("192.0.2.0/29"), "{reason}");
}

#[test]
fn rehome_probes_the_new_subnet_and_moves_guests_off_answered_addresses() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    run(book.admit("a", None)).unwrap();
    lan.taken.borrow_mut().insert(ip("203.0.113.200"));
    run(book.set_uplink(Some(&uplink("203.0.113.9", 24, "203.0.113.1"))));
    run(book.rehome(["a"]));
    assert_eq!(book.address("a"), Some(ip("203.0.113.201")));
}

#[test]
fn a_declined_address_is_not_given_again_until_the_uplink_changes() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    let home = uplink(HOME.0, HOME.1, HOME.2);
    run(book.set_uplink(Some(&home)));
    run(book.admit("a", None)).unwrap();
    assert!(!book.declined("a", ip("198.51.100.77")), "not its address: ignored");
    assert!(book.declined("a", ip("198.51.100.200")));
    assert_eq!(book.address("a"), None);
    assert_eq!(run(book.place("a")), Some(ip("198.51.100.201")));
    assert_eq!(run(book.admit("b", None)), Ok(Some(ip("198.51.100.202"))), ".200 stays avoided");
    // Another network: what was found in use is forgotten.
    run(book.set_uplink(Some(&uplink("198.51.100.11", 24, "198.51.100.1"))));
    assert_eq!(run(book.admit("c", None)), Ok(Some(ip("198.51.100.200"))));
}

#[test]
fn an_exhausted_pool_is_a_typed_refusal_naming_the_pool() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool { first: 200, last: 201 });
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    run(book.admit("a", None)).unwrap();
    run(book.admit("b", None)).unwrap();
    let refused = run(book.admit("c", None)).unwrap_err();
    assert!(refused.0.contains("no free address left in the pool (200 to 201)"), "{refused}");
    book.release("a");
    assert_eq!(run(book.admit("c", None)), Ok(Some(ip("198.51.100.200"))));
}

#[test]
fn restored_addresses_in_the_same_subnet_are_not_probed_again() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    let home = uplink(HOME.0, HOME.1, HOME.2);
    book.restore([("a".to_owned(), 200)], Some(home.subnet()), Some(&home));
    assert!(run(book.rehome(["a"])).is_empty());
    assert!(lan.probed.borrow().is_empty());
    assert_eq!(book.address("a"), Some(ip("198.51.100.200")));
}

#[test]
fn a_failing_prober_gives_addresses_unprobed() {
    let lan = FakeLan { broken: true, ..FakeLan::default() };
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    assert_eq!(run(book.admit("a", None)), Ok(Some(ip("198.51.100.200"))));
}

#[test]
fn the_same_subnet_behind_another_gateway_is_another_network() {
    let lan = FakeLan::default();
    let gateway = ip(HOME.2);
    lan.taken.borrow_mut().insert(gateway);
    lan.macs.borrow_mut().insert(gateway, Mac([2, 0, 0, 0, 0, 1]));
    let mut book = book(&lan, Pool::default());
    let home = uplink(HOME.0, HOME.1, HOME.2);
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::NewNetwork);
    run(book.admit("a", None)).unwrap();
    // Offline and back, the same router answers: the same network, addresses probed again.
    assert_eq!(run(book.set_uplink(None)), NetworkChange::Moved);
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::Moved);
    // Another address from the same router: still the same network.
    let renewed = uplink("198.51.100.11", 24, HOME.2);
    assert_eq!(run(book.set_uplink(Some(&renewed))), NetworkChange::Moved);
    // Offline, then the same subnet but another router: another network.
    run(book.set_uplink(None));
    lan.macs.borrow_mut().insert(gateway, Mac([2, 0, 0, 0, 0, 2]));
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::NewNetwork);
    // NetworkManager names the connection: the first name is no news.
    let named = |uuid: &str| Uplink { connection: Some(uuid.into()), ..home.clone() };
    let first = named("b6f0ad2c-0000-4000-8000-000000000001");
    assert_eq!(run(book.set_uplink(Some(&first))), NetworkChange::Moved);
    assert_eq!(run(book.set_uplink(Some(&first))), NetworkChange::None);
    // While the next connection activates it has no name yet, and the device keeps the old
    // address: not another network. Once named, another connection in the same subnet is
    // another network, whoever answers for the gateway.
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::Moved);
    assert_eq!(
        run(book.set_uplink(Some(&named("0c3e5a1e-0000-4000-8000-000000000002")))),
        NetworkChange::NewNetwork
    );
}

#[test]
fn a_guest_that_declines_everything_cannot_empty_the_pool() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    run(book.set_uplink(Some(&uplink(HOME.0, HOME.1, HOME.2))));
    run(book.admit("greedy", None)).unwrap();
    for _ in 0..MAX_DECLINES {
        let address = book.address("greedy").expect("an address to decline");
        assert!(book.declined("greedy", address));
        run(book.place("greedy"));
    }
    assert_eq!(book.address("greedy"), None, "held back after {MAX_DECLINES} declines");
    let AddressStatus::Conflict(reason) = book.status("greedy") else { panic!() };
    assert!(reason.contains("declined 3 addresses"), "{reason}");
    assert!(
        run(book.rehome(["greedy"])).is_empty() && book.address("greedy").is_none(),
        "not even on a re-home"
    );
    assert_eq!(run(book.admit("other", None)), Ok(Some(ip("198.51.100.203"))), "the others are served");
    book.forget_lan();
    run(book.rehome(["greedy", "other"]));
    assert!(book.address("greedy").is_some(), "a resync gives it another chance");
}

#[test]
fn a_wifi_roam_through_an_activating_connection_is_one_new_network() {
    let lan = FakeLan::default();
    let mut book = book(&lan, Pool::default());
    let named = |up: Uplink, uuid: &str| Uplink { connection: Some(uuid.into()), ..up };
    let home = uplink(HOME.0, HOME.1, HOME.2);
    let office = uplink("203.0.113.144", 24, "203.0.113.1");
    run(book.set_uplink(Some(&named(home.clone(), "home"))));
    // NM activates "office" while wlan0 still has the home address: not yet a new network.
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::Moved);
    // The office address (the connection still activating, so unnamed): the new network.
    assert_eq!(run(book.set_uplink(Some(&office))), NetworkChange::NewNetwork);
    // Activated, it is named: the same network.
    assert_eq!(run(book.set_uplink(Some(&named(office.clone(), "office")))), NetworkChange::Moved);
    // And back home the same way: one new network again.
    assert_eq!(run(book.set_uplink(Some(&office))), NetworkChange::Moved);
    assert_eq!(run(book.set_uplink(Some(&home))), NetworkChange::NewNetwork);
    assert_eq!(run(book.set_uplink(Some(&named(home, "home")))), NetworkChange::Moved);
}

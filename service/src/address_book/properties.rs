//! Property tests of the address book's rules over random subnets, pools, guests and roams.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{uplink, FakeLan};
use super::*;

/// An uplink: a subnet of /22 to /30 somewhere in 198.18.0.0/15, the host and maybe a gateway.
fn an_uplink() -> impl Strategy<Value = Uplink> {
    (22u8..=30, any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(prefix, host, gateway, has_gateway)| {
        let size = 1u32 << (32 - prefix);
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (host % (1 << 17)) / size * size;
        let address = Ipv4Addr::from(base + 1 + host % (size - 2));
        let gateway = Ipv4Addr::from(base + 1 + gateway % (size - 2));
        let gateway = if has_gateway && gateway != address { gateway.to_string() } else { String::new() };
        uplink(&address.to_string(), prefix, &gateway)
    })
}

fn a_pool() -> impl Strategy<Value = Pool> {
    (-40i64..300, -40i64..300).prop_map(|(first, last)| Pool { first, last })
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

/// Every address given is in the subnet, not its network or broadcast address, not the host's
/// or the gateway's, and no two guests share one.
fn check_addresses(
    book: &AddressBook<&FakeLan>,
    up: &Uplink,
    guests: &[String],
) -> Result<(), TestCaseError> {
    let subnet = up.subnet();
    let mut seen = BTreeSet::new();
    for name in guests {
        let Some(address) = book.address(name) else { continue };
        prop_assert!(subnet.contains(address), "{address} outside {subnet}");
        prop_assert!(Some(address) != subnet.host(0), "{address} is the network address");
        prop_assert!(address != subnet.broadcast(), "{address} is the broadcast address");
        prop_assert!(
            Some(address) != up.gateway && address != up.address,
            "{address} is the host's or gateway's"
        );
        prop_assert!(seen.insert(address), "{address} given twice");
    }
    Ok(())
}

proptest! {
    #[test]
    fn addresses_follow_the_rules_before_and_after_a_roam(
        home in an_uplink(), away in an_uplink(), pool in a_pool(), count in 0usize..24,
    ) {
        let lan = FakeLan::default();
        let mut book = AddressBook::new(pool, Duration::ZERO, &lan);
        run(book.set_uplink(Some(&home)));
        let guests: Vec<String> = (0..count).map(|i| format!("g{i}")).collect();
        for name in &guests {
            let _ = run(book.admit(name, None));
        }
        check_addresses(&book, &home, &guests)?;
        let before: Vec<Option<u32>> = guests.iter().map(|g| book.number(g)).collect();
        run(book.set_uplink(Some(&away)));
        run(book.rehome(guests.iter().map(String::as_str)));
        check_addresses(&book, &away, &guests)?;
        // A host number that is still free in the new subnet is kept.
        let subnet = away.subnet();
        let reserved: BTreeSet<u32> =
            [Some(away.address), away.gateway].into_iter().flatten().filter_map(|a| subnet.host_number(a)).collect();
        let mut kept_candidates = BTreeSet::new();
        for (name, number) in guests.iter().zip(before) {
            if let Some(n) = number.filter(|&n| subnet.is_assignable(n) && !reserved.contains(&n)) {
                if kept_candidates.insert(n) {
                    prop_assert_eq!(book.number(name), Some(n), "{} lost host number {}", name, n);
                }
            }
        }
    }

    #[test]
    fn a_requested_address_is_given_exactly_or_refused(
        up in an_uplink(), taken in 0usize..6, offset in any::<u32>(),
    ) {
        let lan = FakeLan::default();
        let mut book = AddressBook::new(Pool { first: 1, last: -2 }, Duration::ZERO, &lan);
        run(book.set_uplink(Some(&up)));
        for i in 0..taken {
            let _ = run(book.admit(&format!("t{i}"), None));
        }
        let subnet = up.subnet();
        let wanted = subnet.host(offset % subnet.size() as u32).unwrap_or(up.address);
        let holders: BTreeSet<Ipv4Addr> = (0..taken).filter_map(|i| book.address(&format!("t{i}"))).collect();
        let number = subnet.host_number(wanted).unwrap_or(0);
        let free = subnet.is_assignable(number)
            && wanted != up.address
            && Some(wanted) != up.gateway
            && !holders.contains(&wanted);
        match run(book.admit("asked", Some(wanted))) {
            Ok(given) => {
                prop_assert!(free, "{wanted} was not free but was given");
                prop_assert_eq!(given, Some(wanted));
            }
            Err(_) => {
                prop_assert!(!free, "{wanted} was free but refused");
                prop_assert_eq!(book.address("asked"), None);
            }
        }
    }
}

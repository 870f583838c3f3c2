use super::super::elements::ifname;
use super::super::GuestFilter;
use super::tests_support::chain;
use super::*;
use crate::model::Mac;

const OPEN: Blocking = Blocking { ipv4: false, ipv6: false };
const CLOSED: Blocking = Blocking { ipv4: true, ipv6: true };

/// Every variant of both tables: IPv6 routed or not, each blocking.
fn all_tables() -> Vec<TableSpec> {
    let mut tables = vec![arp_table()];
    for ipv6 in [false, true] {
        for (ipv4_blocked, ipv6_blocked) in [(false, false), (true, false), (false, true), (true, true)] {
            tables.push(inet_table(ipv6, Blocking { ipv4: ipv4_blocked, ipv6: ipv6_blocked }));
        }
    }
    tables
}

fn counts(rule: &RuleSpec, counter: &'static str) -> bool {
    rule.steps.contains(&Step::Count(counter))
}

#[test]
fn every_reference_names_something_of_its_own_table() {
    for table in all_tables() {
        let chains: Vec<_> = table.chains.iter().map(|c| c.name).collect();
        let sets: Vec<_> = table.sets.iter().map(|s| s.name).collect();
        for rule in &table.rules {
            assert!(chains.contains(&rule.chain), "{rule:?}");
            for step in &rule.steps {
                match step {
                    Step::Jump(chain) => assert!(chains.contains(chain), "{step:?}"),
                    Step::InSet { set, .. } => assert!(sets.contains(set), "{step:?}"),
                    Step::Count(name) => assert!(table.counters.contains(name), "{step:?}"),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn every_drop_is_counted_and_every_rule_ends_in_a_verdict() {
    for table in all_tables() {
        for rule in &table.rules {
            let last = rule.steps.last();
            assert!(matches!(last, Some(Step::Accept | Step::Drop | Step::Jump(_))), "{rule:?}");
            if last == Some(&Step::Drop) {
                assert!(matches!(rule.steps[rule.steps.len() - 2], Step::Count(_)), "{rule:?}");
            }
        }
    }
}

#[test]
fn lookups_load_exactly_the_registers_of_their_key() {
    // Each lookup is preceded by loads that fill its key, part by part, from its register.
    for table in all_tables() {
        for rule in &table.rules {
            for (at, step) in rule.steps.iter().enumerate() {
                let Step::InSet { set, register, .. } = step else { continue };
                let spec = table.sets.iter().find(|s| s.name == *set).unwrap();
                let mut word = *register;
                let loads: Vec<_> = rule.steps[..at].iter().rev().take(spec.key.len()).rev().collect();
                for (part, load) in spec.key.iter().zip(loads) {
                    let Step::Load(field, to) = load else { panic!("{rule:?}") };
                    assert_eq!(*to, word, "{rule:?}");
                    let len = match field {
                        Field::IifName | Field::OifName => 16,
                        Field::Link { len, .. } | Field::Network { len, .. } => *len as usize,
                        other => panic!("{other:?} in a key"),
                    };
                    assert_eq!(len.div_ceil(4) * 4, part.size(), "{rule:?}");
                    word += part.size() as u32 / 4;
                }
                assert!(word <= 16, "a key fits the 16 registers");
            }
        }
    }
}

#[test]
fn other_forwarding_is_dropped_only_when_the_host_did_not_forward() {
    let counted = |table: &TableSpec| {
        table.rules.iter().any(|r| r.chain == "forward" && r.steps.contains(&Step::Count("forward_other")))
    };
    let counted6 = |table: &TableSpec| {
        table.rules.iter().any(|r| r.chain == "forward" && r.steps.contains(&Step::Count("forward_other6")))
    };
    for ipv6 in [false, true] {
        assert!(counted(&inet_table(ipv6, Blocking { ipv4: true, ipv6: false })));
        assert!(!counted(&inet_table(ipv6, Blocking { ipv4: false, ipv6: true })));
        assert!(counted6(&inet_table(ipv6, Blocking { ipv4: false, ipv6: true })));
        assert!(!counted6(&inet_table(ipv6, Blocking { ipv4: true, ipv6: false })));
        // Only these rules differ otherwise, last in the forward chain (after the guests' jumps).
        let (open, closed) = (inet_table(ipv6, OPEN), inet_table(ipv6, CLOSED));
        assert_eq!(open.rules.len() + 2, closed.rules.len());
        assert_eq!(closed.rules[..closed.rules.len() - 2], open.rules[..]);
        let forward = chain(&closed, "forward");
        assert!(forward[..2].iter().all(|r| matches!(r.steps.last(), Some(Step::Jump(_)))));
        let last_two = &closed.rules[closed.rules.len() - 2..];
        assert!(counts(&last_two[0], "forward_other") && counts(&last_two[1], "forward_other6"));
        assert_eq!(last_two[1].steps[..2], protocol(Field::NfProto, NFPROTO_IPV6));
    }
    let closed = inet_table(false, CLOSED);
    // Every base chain accepts by default: the host's own traffic is left alone.
    assert!(closed.chains.iter().all(|c| c.hook.is_none() || c.hook.is_some()));
}

#[test]
fn taps_are_told_by_their_prefix_first() {
    // A tap vmnetd does not know is filtered too (fail closed): the base chains match the
    // prefix, not a set of known taps.
    for table in [inet_table(false, OPEN), arp_table()] {
        let first = table.rules.iter().find(|r| table.chains[0].name == r.chain).unwrap();
        assert_eq!(first.steps[1], Step::Equals(0, TAP_PREFIX.as_bytes().to_vec()));
    }
}

#[test]
fn keys_are_laid_out_like_the_registers() {
    let guest = GuestFilter {
        tap: "vmt-web".into(),
        mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 3]),
        address: Some("198.51.100.200".parse().unwrap()),
        addresses6: vec!["2001:db8:1::200".parse().unwrap()],
    };
    let elements = guest_elements(&guest);
    assert_eq!(elements.len(), 5);
    for element in &elements {
        let table = if element.family == Family::Inet { inet_table(true, OPEN) } else { arp_table() };
        let spec = table.sets.iter().find(|s| s.name == element.set).unwrap();
        assert_eq!(element.key.len(), spec.key_len(), "{element:?}");
        assert_eq!(&element.key[..7], b"vmt-web");
        assert!(element.key[7..16].iter().all(|b| *b == 0));
    }
    let mac = elements.iter().find(|e| e.set == TAP_MACS).unwrap();
    assert_eq!(&mac.key[16..], [0x0a, 0x76, 0x6d, 1, 2, 3, 0, 0]);
    let probe = elements.iter().find(|e| e.set == ARP_SENDERS && e.key.ends_with(&[0; 4])).unwrap();
    assert_eq!(&probe.key[16..30], [0x0a, 0x76, 0x6d, 1, 2, 3, 0, 0, 0x0a, 0x76, 0x6d, 1, 2, 3]);
    let source = elements.iter().find(|e| e.set == TAP_SOURCES).unwrap();
    assert_eq!(&source.key[16..], [198, 51, 100, 200]);
    let source6 = elements.iter().find(|e| e.set == TAP_SOURCES6).unwrap();
    assert_eq!(&source6.key[16..], [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
    let inet = inet_table(true, OPEN);
    let sources6 = inet.sets.iter().find(|s| s.name == TAP_SOURCES6).unwrap();
    // ifname . ipv6_addr.
    assert_eq!((sources6.key_len(), sources6.key_type()), (32, 41 << 6 | 8));
    // nft's datatypes: ifname . ether_addr . ether_addr . ipv4_addr.
    let arp = arp_table();
    assert_eq!(arp.sets[0].key_type(), ((41 << 6 | 9) << 6 | 9) << 6 | 7);
    assert_eq!(uplink_element("wlan0").key, ifname("wlan0").to_vec());
}

use super::super::elements::ifname;
use super::super::GuestFilter;
use super::*;
use crate::model::Mac;

fn tables(block: bool) -> [TableSpec; 2] {
    [inet_table(block), arp_table()]
}

#[test]
fn every_reference_names_something_of_its_own_table() {
    for block in [false, true] {
        for table in tables(block) {
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
}

#[test]
fn every_drop_is_counted_and_every_rule_ends_in_a_verdict() {
    for table in tables(true) {
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
    for table in tables(true) {
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
    assert!(counted(&inet_table(true)));
    assert!(!counted(&inet_table(false)));
    // Only the guests' chains differ otherwise.
    let (open, closed) = (inet_table(false), inet_table(true));
    assert_eq!(open.rules.len() + 1, closed.rules.len());
    // Every base chain accepts by default: the host's own traffic is left alone.
    assert!(closed.chains.iter().all(|c| c.hook.is_none() || c.hook.is_some()));
}

#[test]
fn taps_are_told_by_their_prefix_first() {
    // A tap vmnetd does not know is filtered too (fail closed): the base chains match the
    // prefix, not a set of known taps.
    for table in tables(false) {
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
    };
    let elements = guest_elements(&guest);
    for element in &elements {
        let table = if element.family == Family::Inet { inet_table(false) } else { arp_table() };
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
    // nft's datatypes: ifname . ether_addr . ether_addr . ipv4_addr.
    let arp = arp_table();
    assert_eq!(arp.sets[0].key_type(), ((41 << 6 | 9) << 6 | 9) << 6 | 7);
    assert_eq!(uplink_element("wlan0").key, ifname("wlan0").to_vec());
}

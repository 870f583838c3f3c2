//! The `inet` table's IPv6 rules: what a guest may send over IPv6 (chain `tap_ipv6`, reached
//! after the MAC check), and what is forwarded to and from it.

use super::*;

/// The IPv6 header's source and destination addresses.
const SOURCE6: Field = Field::Network { offset: 8, len: 16 };
const DESTINATION6: Field = Field::Network { offset: 24, len: 16 };
/// The first 8 bytes of the source: fe80::/64 is link-local (RFC 4291).
const SOURCE6_PREFIX: Field = Field::Network { offset: 8, len: 8 };
const LINK_LOCAL_PREFIX: [u8; 8] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0];

/// ICMPv6 types a guest never sends: router advertisement, redirect, router renumbering.
const ROUTER_TYPES: [u8; 3] = [134, 137, 138];
/// ICMPv6 types sent from `::` before an address is usable: neighbour solicitation (DAD) and
/// MLDv2 report (RFC 4862, RFC 3810).
const UNSPECIFIED_SOURCE_TYPES: [u8; 2] = [135, 143];

fn icmpv6_type(value: u8) -> Vec<Step> {
    [protocol(Field::L4Proto, IPPROTO_ICMPV6), protocol(Field::Transport { offset: 0, len: 1 }, value)]
        .concat()
}

fn is_ipv6() -> [Step; 2] {
    protocol(Field::NfProto, NFPROTO_IPV6)
}

/// `iif . ip6 saddr` (or `oif . ip6 daddr`) is a guest's learned address on its tap.
fn guest_address(interface: Field, address: Field) -> [Step; 3] {
    [Step::Load(interface, 0), Step::Load(address, 4), in_set(TAP_SOURCES6, 0)]
}

/// Chain `tap_ipv6`: no router messages or DHCPv6 server replies; sources only link-local,
/// `::` for DAD and MLD, or the guest's learned addresses. Ends in a verdict.
pub(super) fn tap_rules() -> Vec<RuleSpec> {
    let mut rules: Vec<RuleSpec> = ROUTER_TYPES
        .iter()
        .map(|t| rule("tap_ipv6", [&icmpv6_type(*t)[..], &counted_drop("ipv6_router")].concat()))
        .collect();
    rules.push(rule(
        "tap_ipv6",
        [&protocol(Field::L4Proto, IPPROTO_UDP)[..], &port(0, 547), &counted_drop("dhcp_server")].concat(),
    ));
    rules.push(rule(
        "tap_ipv6",
        vec![Step::Load(SOURCE6_PREFIX, 0), Step::Equals(0, LINK_LOCAL_PREFIX.to_vec()), Step::Accept],
    ));
    for t in UNSPECIFIED_SOURCE_TYPES {
        let unspecified = [Step::Load(SOURCE6, 0), Step::Equals(0, vec![0; 16])];
        rules.push(rule("tap_ipv6", [&unspecified[..], &icmpv6_type(t), &[Step::Accept]].concat()));
    }
    rules.push(rule("tap_ipv6", [&guest_address(Field::IifName, SOURCE6)[..], &[Step::Accept]].concat()));
    rules.push(rule("tap_ipv6", counted_drop("spoofed_source6").to_vec()));
    rules
}

/// Chain `from_guest`, IPv6 first: with `ipv6`, a guest's learned source to the uplink or to
/// another tap; nothing else (and without `ipv6` nothing at all).
pub(super) fn from_guest_rules(ipv6: bool) -> Vec<RuleSpec> {
    if !ipv6 {
        return vec![rule("from_guest", [&is_ipv6()[..], &counted_drop("ipv6_forward")].concat())];
    }
    let source = [&is_ipv6()[..], &guest_address(Field::IifName, SOURCE6)].concat();
    vec![
        rule(
            "from_guest",
            [&source[..], &[Step::Load(Field::OifName, 0), in_set(UPLINKS, 0), Step::Accept]].concat(),
        ),
        rule("from_guest", [&source[..], &is_tap(Field::OifName), &[Step::Accept]].concat()),
        rule("from_guest", [&is_ipv6()[..], &counted_drop("not_guest_forward")].concat()),
    ]
}

/// Chain `to_guest`, IPv6 first: with `ipv6`, from the uplink to a guest's learned address
/// (guest to guest is accepted in `from_guest`); nothing else.
pub(super) fn to_guest_rules(ipv6: bool) -> Vec<RuleSpec> {
    if !ipv6 {
        return vec![rule("to_guest", [&is_ipv6()[..], &counted_drop("ipv6_forward")].concat())];
    }
    let destination = [&is_ipv6()[..], &guest_address(Field::OifName, DESTINATION6)].concat();
    vec![
        rule(
            "to_guest",
            [&destination[..], &[Step::Load(Field::IifName, 0), in_set(UPLINKS, 0), Step::Accept]].concat(),
        ),
        rule("to_guest", [&is_ipv6()[..], &counted_drop("not_guest_forward")].concat()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::chain;
    use super::*;

    const OPEN: Blocking = Blocking { ipv4: false, ipv6: false };

    fn starts_with_ipv6(rule: &RuleSpec) -> bool {
        rule.steps.starts_with(&is_ipv6())
    }

    #[test]
    fn a_tap_sends_ipv6_only_from_link_local_unspecified_for_dad_or_learned_addresses() {
        for ipv6 in [false, true] {
            let table = inet_table(ipv6, OPEN);
            // The MAC is checked first, then IPv6 goes to its chain.
            let tap_in = chain(&table, "tap_in");
            assert!(tap_in[0].steps.contains(&Step::Count("foreign_mac")));
            assert_eq!(tap_in[1].steps.last(), Some(&Step::Jump("tap_ipv6")));
            let rules = chain(&table, "tap_ipv6");
            let ends = |rule: &RuleSpec, counter| rule.steps.ends_with(&counted_drop(counter));
            assert!(rules[..3].iter().all(|r| ends(r, "ipv6_router")));
            for (rule, t) in rules.iter().zip(ROUTER_TYPES) {
                assert_eq!(rule.steps[..4], icmpv6_type(t)[..]);
            }
            assert!(ends(rules[3], "dhcp_server"));
            assert_eq!(rules[4].steps[1], Step::Equals(0, vec![0xfe, 0x80, 0, 0, 0, 0, 0, 0]));
            for (rule, t) in rules[5..7].iter().zip([135, 143]) {
                assert_eq!(rule.steps[..2], [Step::Load(SOURCE6, 0), Step::Equals(0, vec![0; 16])]);
                assert_eq!(rule.steps[2..6], icmpv6_type(t)[..]);
            }
            assert!(rules[4..8].iter().all(|r| r.steps.last() == Some(&Step::Accept)));
            assert_eq!(rules[7].steps[..3], guest_address(Field::IifName, SOURCE6));
            assert_eq!(rules[8].steps, counted_drop("spoofed_source6"), "the rest, last");
            assert_eq!(rules.len(), 9);
        }
    }

    #[test]
    fn without_ipv6_routing_no_ipv6_is_forwarded_to_or_from_a_tap() {
        let table = inet_table(false, OPEN);
        for name in ["from_guest", "to_guest"] {
            let rules = chain(&table, name);
            assert_eq!(rules[0].steps, [&is_ipv6()[..], &counted_drop("ipv6_forward")].concat());
            assert!(rules[1..].iter().all(|r| !starts_with_ipv6(r)), "{name}");
        }
    }

    #[test]
    fn with_ipv6_routing_only_learned_addresses_are_forwarded() {
        let table = inet_table(true, OPEN);
        assert!(table.rules.iter().all(|r| !r.steps.contains(&Step::Count("ipv6_forward"))));
        let from = chain(&table, "from_guest");
        // IPv6 first, all of it decided there: the IPv4 rules after it load IPv4 offsets.
        assert!(from[..3].iter().all(|r| starts_with_ipv6(r)));
        assert!(from[..2].iter().all(|r| r.steps[2..5] == guest_address(Field::IifName, SOURCE6)));
        assert_eq!(from[0].steps[5..], [Step::Load(Field::OifName, 0), in_set(UPLINKS, 0), Step::Accept]);
        assert_eq!(from[1].steps[5..], [&is_tap(Field::OifName)[..], &[Step::Accept]].concat());
        assert_eq!(from[2].steps[2..], counted_drop("not_guest_forward"));
        assert!(from[3..].iter().all(|r| !starts_with_ipv6(r)));
        let to = chain(&table, "to_guest");
        assert_eq!(to[0].steps[2..5], guest_address(Field::OifName, DESTINATION6));
        assert_eq!(to[0].steps[5..], [Step::Load(Field::IifName, 0), in_set(UPLINKS, 0), Step::Accept]);
        assert_eq!(to[1].steps, [&is_ipv6()[..], &counted_drop("not_guest_forward")].concat());
        // The IPv4 rules are the same either way.
        let ipv4 = |table: &TableSpec| {
            let rules = table.rules.iter().filter(|r| r.chain != "tap_ipv6" && !starts_with_ipv6(r));
            rules.cloned().collect::<Vec<_>>()
        };
        assert_eq!(ipv4(&table), ipv4(&inet_table(false, OPEN)));
    }
}

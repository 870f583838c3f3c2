//! vmnetd's nftables ruleset as data: two tables named `vmnet` (family `inet` for IPv4/IPv6,
//! family `arp` for ARP), their chains, rules, named counters and sets. Nothing here touches
//! the kernel; [`super::encode`] turns it into netlink messages.
//!
//! Per-packet cost does not grow with the guest count: every per-guest fact is an element of a
//! hash set keyed by tap name (and MAC, address), matched by one lookup, and a tap is told by
//! its name prefix, so a tap vmnetd does not know fails closed.

use crate::names::TAP_PREFIX;

pub use super::elements::{guest_elements, uplink_element, Element};
use super::Blocking;

pub const TABLE: &str = "vmnet";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
    Arp,
}

pub const FAMILIES: [Family; 2] = [Family::Inet, Family::Arp];

/// A base chain's hook. `ArpIn` is `NF_ARP_IN` (numbered apart from the inet hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Forward,
    ArpIn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: &'static str,
    /// `None`: a regular chain, reached by jumps.
    pub hook: Option<(Hook, i32)>,
}

/// What a set's keys are made of, in order (a concatenation when more than one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    IfName,
    Ether,
    Ipv4,
    Ipv6,
}

impl KeyPart {
    /// The bytes the part takes in a key: registers are 4 bytes wide, so each part is padded.
    pub fn size(self) -> usize {
        match self {
            KeyPart::IfName => 16,
            KeyPart::Ether => 8,
            KeyPart::Ipv4 => 4,
            KeyPart::Ipv6 => 16,
        }
    }

    /// nft's datatype number (so that `nft list` shows the keys as names and addresses).
    pub fn datatype(self) -> u32 {
        match self {
            KeyPart::IfName => 41,
            KeyPart::Ether => 9,
            KeyPart::Ipv4 => 7,
            KeyPart::Ipv6 => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: &'static str,
    pub key: &'static [KeyPart],
}

impl SetSpec {
    pub fn key_len(&self) -> usize {
        self.key.iter().map(|part| part.size()).sum()
    }

    /// The concatenated datatype, 6 bits per part, as nft encodes it.
    pub fn key_type(&self) -> u32 {
        self.key.iter().fold(0, |acc, part| (acc << 6) | part.datatype())
    }
}

/// Where a value is loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    IifName,
    OifName,
    /// The layer-3 protocol (`meta nfproto`): `NFPROTO_IPV4` or `NFPROTO_IPV6`.
    NfProto,
    /// The layer-4 protocol (`meta l4proto`).
    L4Proto,
    /// Link-layer header bytes.
    Link {
        offset: u32,
        len: u32,
    },
    /// Network header bytes (the ARP header in the arp family).
    Network {
        offset: u32,
        len: u32,
    },
    /// Transport header bytes.
    Transport {
        offset: u32,
        len: u32,
    },
}

/// One expression of a rule. Registers are numbered by 32-bit word, 0..16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Load(Field, u32),
    /// The bytes at the register equal these.
    Equals(u32, Vec<u8>),
    /// The key starting at the register is (or, inverted, is not) in the set.
    InSet {
        set: &'static str,
        register: u32,
        inverted: bool,
    },
    /// Counts the packet in the named counter.
    Count(&'static str),
    Accept,
    Drop,
    Jump(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub chain: &'static str,
    pub steps: Vec<Step>,
}

/// One table's whole skeleton (everything but set elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub family: Family,
    pub chains: Vec<ChainSpec>,
    pub sets: Vec<SetSpec>,
    pub counters: Vec<&'static str>,
    pub rules: Vec<RuleSpec>,
}

// Sets.
pub const TAP_MACS: &str = "tap_macs";
pub const TAP_SOURCES: &str = "tap_sources";
pub const TAP_SOURCES6: &str = "tap_sources6";
pub const UPLINKS: &str = "uplinks";
pub const ARP_SENDERS: &str = "arp_senders";

/// Named counters of dropped packets, what each counts.
pub const COUNTERS: [(Family, &str, &str); 11] = [
    (Family::Inet, "foreign_mac", "frames from a tap with another source MAC than its guest's"),
    (Family::Inet, "spoofed_source", "IPv4 from a tap with another source than its guest's address"),
    (
        Family::Inet,
        "spoofed_source6",
        "IPv6 from a tap with another source than its guest's link-local or learned addresses",
    ),
    (Family::Inet, "dhcp_server", "DHCP or DHCPv6 server messages from a guest"),
    (Family::Inet, "icmp_redirect", "ICMP redirects from a guest"),
    (Family::Inet, "ipv6_router", "IPv6 router advertisements, redirects and renumbering from a guest"),
    (Family::Inet, "ipv6_forward", "IPv6 to be forwarded to or from a tap while vmnetd routes no IPv6"),
    (
        Family::Inet,
        "not_guest_forward",
        "forwarded to or from a tap, not between its guest and the uplink or another guest",
    ),
    (
        Family::Inet,
        "forward_other",
        "IPv4 forwarded without a guest while the host did not forward IPv4 before vmnetd",
    ),
    (
        Family::Inet,
        "forward_other6",
        "IPv6 forwarded without a guest while the host did not forward IPv6 before vmnetd",
    ),
    (Family::Arp, "spoofed_arp", "ARP from a tap with another sender than its guest"),
];

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
/// ARP over Ethernet for IPv4: hardware type 1, protocol 0x0800, lengths 6 and 4.
const ARP_ETHER_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];

fn rule(chain: &'static str, steps: Vec<Step>) -> RuleSpec {
    RuleSpec { chain, steps }
}

fn is_tap(field: Field) -> [Step; 2] {
    [Step::Load(field, 0), Step::Equals(0, TAP_PREFIX.as_bytes().to_vec())]
}

fn counted_drop(counter: &'static str) -> [Step; 2] {
    [Step::Count(counter), Step::Drop]
}

fn protocol(field: Field, value: u8) -> [Step; 2] {
    [Step::Load(field, 0), Step::Equals(0, vec![value])]
}

fn port(offset: u32, value: u16) -> [Step; 2] {
    [Step::Load(Field::Transport { offset, len: 2 }, 0), Step::Equals(0, value.to_be_bytes().to_vec())]
}

fn in_set(set: &'static str, register: u32) -> Step {
    Step::InSet { set, register, inverted: false }
}

/// The `inet` table. `ipv6`: vmnetd routes the guests' learned IPv6 addresses (without it no
/// IPv6 is forwarded to or from a tap). `blocking`: per IP version, the host did not forward
/// before vmnetd, so every forwarded packet of it that is not a guest's is dropped.
pub fn inet_table(ipv6: bool, blocking: Blocking) -> TableSpec {
    let chains = vec![
        ChainSpec { name: "prerouting", hook: Some((Hook::Prerouting, -300)) },
        ChainSpec { name: "forward", hook: Some((Hook::Forward, 0)) },
        ChainSpec { name: "tap_in", hook: None },
        ChainSpec { name: "tap_ipv6", hook: None },
        ChainSpec { name: "from_guest", hook: None },
        ChainSpec { name: "to_guest", hook: None },
    ];
    let sets = vec![
        SetSpec { name: TAP_MACS, key: &[KeyPart::IfName, KeyPart::Ether] },
        SetSpec { name: TAP_SOURCES, key: &[KeyPart::IfName, KeyPart::Ipv4] },
        SetSpec { name: TAP_SOURCES6, key: &[KeyPart::IfName, KeyPart::Ipv6] },
        SetSpec { name: UPLINKS, key: &[KeyPart::IfName] },
    ];
    let source_mac = Field::Link { offset: 6, len: 6 };
    let ipv4_source = Field::Network { offset: 12, len: 4 };
    let ipv4_destination = Field::Network { offset: 16, len: 4 };
    let guest_source = [Step::Load(Field::IifName, 0), Step::Load(ipv4_source, 4), in_set(TAP_SOURCES, 0)];
    let mut rules = vec![
        // Before conntrack (-200): spoofed packets leave no connection entry behind.
        rule("prerouting", [&is_tap(Field::IifName)[..], &[Step::Jump("tap_in")]].concat()),
        rule(
            "tap_in",
            [
                Step::Load(Field::IifName, 0),
                Step::Load(source_mac, 4),
                Step::InSet { set: TAP_MACS, register: 0, inverted: true },
                Step::Count("foreign_mac"),
                Step::Drop,
            ]
            .to_vec(),
        ),
        rule("tap_in", [&protocol(Field::NfProto, NFPROTO_IPV6)[..], &[Step::Jump("tap_ipv6")]].concat()),
        // IPv4 from here on.
        rule(
            "tap_in",
            [&protocol(Field::L4Proto, IPPROTO_UDP)[..], &port(0, 67), &counted_drop("dhcp_server")].concat(),
        ),
        rule(
            "tap_in",
            [
                &protocol(Field::L4Proto, IPPROTO_ICMP)[..],
                &protocol(Field::Transport { offset: 0, len: 1 }, 5),
                &counted_drop("icmp_redirect"),
            ]
            .concat(),
        ),
        // DHCP clients, from 0.0.0.0 or an address of before a re-home: only vmnetd's server
        // gets them (the forward chain checks the source again).
        rule(
            "tap_in",
            [&protocol(Field::L4Proto, IPPROTO_UDP)[..], &port(0, 68), &port(2, 67), &[Step::Accept]]
                .concat(),
        ),
        rule("tap_in", [&guest_source[..], &[Step::Accept]].concat()),
        rule("tap_in", counted_drop("spoofed_source").to_vec()),
    ];
    rules.extend(ipv6::tap_rules());
    rules.extend([
        rule("forward", [&is_tap(Field::IifName)[..], &[Step::Jump("from_guest")]].concat()),
        rule("forward", [&is_tap(Field::OifName)[..], &[Step::Jump("to_guest")]].concat()),
    ]);
    rules.extend([]);
    rules.extend(ipv6::from_guest_rules(ipv6));
    rules.extend([
        rule(
            "from_guest",
            [&guest_source[..], &[Step::Load(Field::OifName, 0), in_set(UPLINKS, 0), Step::Accept]].concat(),
        ),
        rule("from_guest", [&guest_source[..], &is_tap(Field::OifName), &[Step::Accept]].concat()),
        rule("from_guest", counted_drop("not_guest_forward").to_vec()),
    ]);
    rules.extend(ipv6::to_guest_rules(ipv6));
    rules.extend([
        rule(
            "to_guest",
            vec![
                Step::Load(Field::OifName, 0),
                Step::Load(ipv4_destination, 4),
                in_set(TAP_SOURCES, 0),
                Step::Load(Field::IifName, 0),
                in_set(UPLINKS, 0),
                Step::Accept,
            ],
        ),
        rule("to_guest", counted_drop("not_guest_forward").to_vec()),
    ]);
    // Each IP version apart: ip_forward says nothing about IPv6 forwarding, and back.
    for (blocked, nfproto, counter) in
        [(blocking.ipv4, NFPROTO_IPV4, "forward_other"), (blocking.ipv6, NFPROTO_IPV6, "forward_other6")]
    {
        if blocked {
            rules.push(rule(
                "forward",
                [&protocol(Field::NfProto, nfproto)[..], &counted_drop(counter)].concat(),
            ));
        }
    }
    TableSpec { family: Family::Inet, chains, sets, counters: counters_of(Family::Inet), rules }
}

/// The `arp` table: ARP from a tap only with its guest's MAC (frame and sender) and address
/// (or 0.0.0.0, a probe) as sender.
pub fn arp_table() -> TableSpec {
    let chains = vec![
        ChainSpec { name: "input", hook: Some((Hook::ArpIn, 0)) },
        ChainSpec { name: "tap_arp", hook: None },
    ];
    let sets = vec![SetSpec {
        name: ARP_SENDERS,
        key: &[KeyPart::IfName, KeyPart::Ether, KeyPart::Ether, KeyPart::Ipv4],
    }];
    let rules = vec![
        rule("input", [&is_tap(Field::IifName)[..], &[Step::Jump("tap_arp")]].concat()),
        rule(
            "tap_arp",
            vec![
                Step::Load(Field::Network { offset: 0, len: 6 }, 0),
                Step::Equals(0, ARP_ETHER_IPV4.to_vec()),
                Step::Load(Field::IifName, 0),
                Step::Load(Field::Link { offset: 6, len: 6 }, 4),
                Step::Load(Field::Network { offset: 8, len: 6 }, 6),
                Step::Load(Field::Network { offset: 14, len: 4 }, 8),
                in_set(ARP_SENDERS, 0),
                Step::Accept,
            ],
        ),
        rule("tap_arp", counted_drop("spoofed_arp").to_vec()),
    ];
    TableSpec { family: Family::Arp, chains, sets, counters: counters_of(Family::Arp), rules }
}

fn counters_of(family: Family) -> Vec<&'static str> {
    COUNTERS.iter().filter(|(f, _, _)| *f == family).map(|(_, name, _)| *name).collect()
}

#[path = "ruleset6.rs"]
mod ipv6;

#[cfg(test)]
mod tests_support {
    use super::{RuleSpec, TableSpec};

    /// The rules of one chain, in order.
    pub fn chain<'a>(table: &'a TableSpec, name: &str) -> Vec<&'a RuleSpec> {
        table.rules.iter().filter(|r| r.chain == name).collect()
    }
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;

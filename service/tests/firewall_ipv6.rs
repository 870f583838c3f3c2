//! vmnetd's nftables tables in the kernel, without the rest of vmnetd: a `Firewall` writes
//! them from a thread inside a private network namespace ("host"), between a guest namespace
//! behind a veth named like a tap and a LAN namespace behind the "uplink", and real IPv6
//! packets show what passes. Needs root; nothing outside the test's namespaces is touched.

use std::net::Ipv6Addr;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use vmnetd::firewall::{self, Blocking, FilterPlan, Firewall, GuestFilter};
use vmnetd::model::Mac;

const TAP: &str = "vmt-fw6t";
const UPLINK: &str = "up0";
const GUEST_MAC: &str = "0a:76:6d:01:02:03";
const LAN_HOST: &str = "2001:db8:1::1";
const LEARNED: &str = "2001:db8:1::100";
const SPOOFED: &str = "2001:db8:1::bad";
const UNLEARNED: &str = "2001:db8:1::101";
const NEIGHBOUR_TAP: &str = "vmt-fw6u";
const NEIGHBOUR_MAC: &str = "0a:76:6d:01:02:04";
const NEIGHBOUR: &str = "2001:db8:1::200";
/// A host on another network of the host's (a VPN's stand-in), routed from the LAN through it.
const OTHER_NETWORK_HOST: &str = "2001:db8:9::5";

/// The test's named namespaces, deleted on drop (also after a failure).
struct Namespaces {
    host: String,
    guest: String,
    /// A second guest, behind `vmt-fw6u`.
    neighbour: String,
    lan: String,
    other: String,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let id = format!("fw6{tag}{}", std::process::id());
        let [host, guest, neighbour, lan, other] = ["h", "g", "n", "l", "o"].map(|n| format!("{id}-{n}"));
        let ns = Namespaces { host, guest, neighbour, lan, other };
        for name in ns.all() {
            run(&["ip", "netns", "add", name]);
        }
        ns
    }

    fn all(&self) -> [&String; 5] {
        [&self.host, &self.guest, &self.neighbour, &self.lan, &self.other]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.all() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output();
    let output = output.unwrap_or_else(|e| panic!("{args:?}: {e} (is it installed?)"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    run(&[&["ip", "netns", "exec", ns][..], args].concat())
}

fn pings(ns: &str, from: &str, to: &str) -> bool {
    let ping = ["ip", "netns", "exec", ns, "busybox", "ping", "-6", "-c1", "-W1", "-I", from, to];
    // The first try may wait for neighbour discovery; a yes ends the wait.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if Command::new(ping[0]).args(&ping[1..]).output().is_ok_and(|o| o.status.success()) {
            return true;
        }
    }
    false
}

/// Host link `link` (with `host_address`) ↔ `eth0` of `peer` (with `mac`, `addresses`, and a
/// default route via `gateway`), both up.
fn link(ns: &Namespaces, link: &str, host_address: &str, peer: &str, mac: Option<&str>, addresses: &[&str]) {
    in_ns(&ns.host, &["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", peer]);
    if let Some(mac) = mac {
        in_ns(peer, &["ip", "link", "set", "eth0", "address", mac]);
    }
    in_ns(&ns.host, &["ip", "-6", "addr", "add", host_address, "dev", link, "nodad"]);
    for address in addresses {
        in_ns(peer, &["ip", "-6", "addr", "add", address, "dev", "eth0", "nodad"]);
    }
    in_ns(&ns.host, &["ip", "link", "set", link, "up"]);
    in_ns(peer, &["ip", "link", "set", "eth0", "up"]);
    let gateway = host_address.split('/').next().unwrap_or_default();
    in_ns(peer, &["ip", "-6", "route", "add", "default", "via", gateway, "dev", "eth0"]);
}

/// The namespaces wired to the host, which forwards IPv6: the guests behind `vmt-fw6t`
/// (2001:db8:1::100, ::101, ::bad) and `vmt-fw6u` (::200), each host-routed to its tap; the
/// LAN host 2001:db8:1::1 behind `up0`, routing the guests' addresses and 2001:db8:9::/64 (the
/// other network, `other0`) via the host.
fn wire(ns: &Namespaces) {
    in_ns(&ns.host, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let guest = [LEARNED, UNLEARNED, SPOOFED].map(|a| format!("{a}/128"));
    let guest: Vec<&str> = guest.iter().map(String::as_str).collect();
    link(ns, TAP, "fe80::1/64", &ns.guest, Some(GUEST_MAC), &guest);
    link(ns, NEIGHBOUR_TAP, "fe80::1/64", &ns.neighbour, Some(NEIGHBOUR_MAC), &[&format!("{NEIGHBOUR}/128")]);
    link(ns, UPLINK, "2001:db8:1::2/64", &ns.lan, None, &["2001:db8:1::1/64"]);
    link(ns, "other0", "2001:db8:9::1/64", &ns.other, None, &["2001:db8:9::5/64"]);
    for (address, tap) in [(LEARNED, TAP), (UNLEARNED, TAP), (SPOOFED, TAP), (NEIGHBOUR, NEIGHBOUR_TAP)] {
        in_ns(&ns.host, &["ip", "-6", "route", "add", address, "dev", tap]);
        in_ns(&ns.lan, &["ip", "-6", "route", "add", address, "via", "2001:db8:1::2"]);
    }
    in_ns(&ns.lan, &["ip", "-6", "route", "add", "2001:db8:9::/64", "via", "2001:db8:1::2"]);
}

/// Moves the calling thread into `ns` and checks that it is there (so that nothing is ever
/// written to another namespace's tables).
fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let inode = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).expect(p);
    assert_eq!(inode("/proc/thread-self/ns/net"), inode(&path), "the thread is in {ns}");
}

fn guest(addresses6: &[&str]) -> GuestFilter {
    GuestFilter {
        tap: TAP.into(),
        mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 3]),
        address: None,
        addresses6: addresses6.iter().map(|a| a.parse::<Ipv6Addr>().expect("an address")).collect(),
    }
}

fn neighbour() -> GuestFilter {
    GuestFilter {
        tap: NEIGHBOUR_TAP.into(),
        mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 4]),
        address: None,
        addresses6: vec![NEIGHBOUR.parse().expect("an address")],
    }
}

fn dropped(counter: &str) -> u64 {
    let counters = firewall::dropped().expect("reading the counters");
    counters.iter().find(|c| c.name == counter).unwrap_or_else(|| panic!("{counter}: {counters:?}")).packets
}

/// `tap_sources6`'s elements as `nft -j` lists them, sorted, e.g. `["vmt-fw6t", "2001:db8:1::100"]`.
fn listed_sources6(host: &str) -> Vec<serde_json::Value> {
    let listing = in_ns(host, &["nft", "-j", "list", "set", "inet", "vmnet", "tap_sources6"]);
    let json: serde_json::Value = serde_json::from_str(&listing).expect("nft's JSON");
    let set = json["nftables"].as_array().and_then(|items| items.iter().find_map(|i| i.get("set")));
    let elements = set.and_then(|s| s.get("elem")).and_then(|e| e.as_array()).cloned().unwrap_or_default();
    let mut listed: Vec<serde_json::Value> = elements.iter().map(|e| e["concat"].clone()).collect();
    listed.sort_by_key(|e| e.to_string()); // a hash set's order
    listed
}

/// Runs `body` on a thread inside the host namespace of freshly wired namespaces.
fn with_host(tag: &str, body: impl FnOnce(&Namespaces) + Send) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (network namespaces, nftables)");
    let ns = Namespaces::new(tag);
    wire(&ns);
    std::thread::scope(|scope| {
        let result = scope
            .spawn(|| {
                enter(&ns.host);
                body(&ns);
            })
            .join();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}

#[test]
fn only_a_guests_learned_ipv6_addresses_are_forwarded() {
    with_host("a", |ns| {
        let mut firewall = Firewall::default();
        let guests = vec![guest(&[LEARNED]), neighbour()];
        let plan = FilterPlan { uplink: Some(UPLINK.into()), guests, ipv6: true };
        firewall.replace(&plan, Blocking { ipv4: true, ipv6: true }).expect("writing the tables");
        let neighbours = serde_json::json!([NEIGHBOUR_TAP, NEIGHBOUR]);
        assert_eq!(listed_sources6(&ns.host), [serde_json::json!([TAP, LEARNED]), neighbours.clone()]);

        assert!(pings(&ns.guest, LEARNED, LAN_HOST), "a learned address reaches the LAN and back");
        assert_eq!(dropped("spoofed_source6"), 0, "link-local, DAD and MLD from the guest pass");
        assert!(!pings(&ns.guest, SPOOFED, LAN_HOST), "a spoofed source gets through");
        let spoofed = dropped("spoofed_source6");
        assert!(spoofed > 0);
        assert!(pings(&ns.neighbour, NEIGHBOUR, LEARNED), "guest reaches guest");
        // Another guest's address is spoofed too.
        in_ns(&ns.guest, &["ip", "-6", "addr", "add", &format!("{NEIGHBOUR}/128"), "dev", "eth0", "nodad"]);
        assert!(!pings(&ns.guest, NEIGHBOUR, LAN_HOST), "a guest sent from another guest's address");
        assert!(dropped("spoofed_source6") > spoofed);
        assert!(!pings(&ns.lan, LAN_HOST, UNLEARNED), "an address not learned is reached");
        assert!(dropped("not_guest_forward") > 0);
        assert!(!pings(&ns.lan, LAN_HOST, OTHER_NETWORK_HOST));
        assert!(dropped("forward_other6") > 0, "the host's other network is not open to the LAN");

        // A new address: only the guest's elements change.
        firewall.ensure_guest(&guest(&[UNLEARNED]), Blocking::default()).expect("changing the guest");
        assert_eq!(listed_sources6(&ns.host), [serde_json::json!([TAP, UNLEARNED]), neighbours.clone()]);
        assert!(pings(&ns.guest, UNLEARNED, LAN_HOST), "the new address works");
        assert!(!pings(&ns.guest, LEARNED, LAN_HOST), "the old one is gone");
        firewall.remove_guest(TAP).expect("removing the guest");
        assert_eq!(listed_sources6(&ns.host), [neighbours]);
        assert!(firewall.delete().is_empty());
    });
}

#[test]
fn without_ipv6_routing_nothing_ipv6_is_forwarded_to_or_from_a_tap() {
    with_host("b", |ns| {
        let mut firewall = Firewall::default();
        let plan = FilterPlan { uplink: Some(UPLINK.into()), guests: vec![guest(&[LEARNED])], ipv6: false };
        firewall.replace(&plan, Blocking::default()).expect("writing the tables");
        assert!(!pings(&ns.guest, LEARNED, LAN_HOST), "IPv6 forwarded while vmnetd routes none");
        assert!(dropped("ipv6_forward") > 0);
        assert!(pings(&ns.guest, "eth0", "fe80::1%eth0"), "the host answers the guest over link-local");
        assert_eq!(dropped("spoofed_source6"), 0);
        assert!(pings(&ns.lan, LAN_HOST, OTHER_NETWORK_HOST), "the host's own forwarding is left alone");
        assert_eq!(dropped("forward_other6"), 0);
        assert!(firewall.delete().is_empty());
    });
}

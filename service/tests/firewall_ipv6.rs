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
/// A host on another network of the host's (a VPN's stand-in), routed from the LAN through it.
const OTHER_NETWORK_HOST: &str = "2001:db8:9::5";

/// The test's named namespaces, deleted on drop (also after a failure).
struct Namespaces {
    host: String,
    guest: String,
    lan: String,
    other: String,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let id = format!("fw6{tag}{}", std::process::id());
        let [host, guest, lan, other] = ["h", "g", "l", "o"].map(|n| format!("{id}-{n}"));
        let ns = Namespaces { host, guest, lan, other };
        for name in ns.all() {
            run(&["ip", "netns", "add", name]);
        }
        ns
    }
}

impl Namespaces {
    fn all(&self) -> [&String; 4] {
        [&self.host, &self.guest, &self.lan, &self.other]
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

/// The namespaces wired: guest `eth0` (the guest's MAC) ↔ host `vmt-fw6t` (fe80::1), host
/// `up0` (2001:db8:1::2) ↔ LAN `eth0` (2001:db8:1::1), which routes the guest addresses and
/// 2001:db8:9::/64 (host `other0` ↔ `eth0` of the other network's host) via the host.
fn wire(ns: &Namespaces) {
    in_ns(&ns.host, &["ip", "link", "add", TAP, "type", "veth", "peer", "name", "eth0", "netns", &ns.guest]);
    in_ns(&ns.host, &["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", &ns.lan]);
    in_ns(
        &ns.host,
        &["ip", "link", "add", "other0", "type", "veth", "peer", "name", "eth0", "netns", &ns.other],
    );
    in_ns(&ns.guest, &["ip", "link", "set", "eth0", "address", GUEST_MAC]);
    in_ns(&ns.host, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    for (namespace, link) in [(&ns.host, TAP), (&ns.host, UPLINK), (&ns.host, "other0"), (&ns.guest, "eth0")]
    {
        in_ns(namespace, &["ip", "link", "set", link, "up"]);
    }
    in_ns(&ns.lan, &["ip", "link", "set", "eth0", "up"]);
    in_ns(&ns.other, &["ip", "link", "set", "eth0", "up"]);
    let addresses = [
        (&ns.host, TAP, "fe80::1/64"),
        (&ns.host, UPLINK, "2001:db8:1::2/64"),
        (&ns.host, "other0", "2001:db8:9::1/64"),
        (&ns.lan, "eth0", "2001:db8:1::1/64"),
        (&ns.other, "eth0", "2001:db8:9::5/64"),
        (&ns.guest, "eth0", "2001:db8:1::100/128"),
        (&ns.guest, "eth0", "2001:db8:1::101/128"),
        (&ns.guest, "eth0", "2001:db8:1::bad/128"),
    ];
    for (namespace, link, address) in addresses {
        in_ns(namespace, &["ip", "-6", "addr", "add", address, "dev", link, "nodad"]);
    }
    in_ns(&ns.guest, &["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"]);
    for address in [LEARNED, UNLEARNED, SPOOFED] {
        in_ns(&ns.host, &["ip", "-6", "route", "add", address, "dev", TAP]);
        in_ns(&ns.lan, &["ip", "-6", "route", "add", address, "via", "2001:db8:1::2"]);
    }
    in_ns(&ns.lan, &["ip", "-6", "route", "add", "2001:db8:9::/64", "via", "2001:db8:1::2"]);
    in_ns(&ns.other, &["ip", "-6", "route", "add", "default", "via", "2001:db8:9::1"]);
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

fn dropped(counter: &str) -> u64 {
    let counters = firewall::dropped().expect("reading the counters");
    counters.iter().find(|c| c.name == counter).unwrap_or_else(|| panic!("{counter}: {counters:?}")).packets
}

/// `tap_sources6`'s elements as `nft -j` lists them, e.g. `["vmt-fw6t", "2001:db8:1::100"]`.
fn listed_sources6(host: &str) -> Vec<serde_json::Value> {
    let listing = in_ns(host, &["nft", "-j", "list", "set", "inet", "vmnet", "tap_sources6"]);
    let json: serde_json::Value = serde_json::from_str(&listing).expect("nft's JSON");
    let set = json["nftables"].as_array().and_then(|items| items.iter().find_map(|i| i.get("set")));
    let elements = set.and_then(|s| s.get("elem")).and_then(|e| e.as_array()).cloned().unwrap_or_default();
    elements.iter().map(|e| e["concat"].clone()).collect()
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
        let plan = FilterPlan { uplink: Some(UPLINK.into()), guests: vec![guest(&[LEARNED])], ipv6: true };
        firewall.replace(&plan, Blocking { ipv4: true, ipv6: true }).expect("writing the tables");
        assert_eq!(listed_sources6(&ns.host), [serde_json::json!([TAP, LEARNED])]);

        assert!(pings(&ns.guest, LEARNED, LAN_HOST), "a learned address reaches the LAN and back");
        assert_eq!(dropped("spoofed_source6"), 0, "link-local, DAD and MLD from the guest pass");
        assert!(!pings(&ns.guest, SPOOFED, LAN_HOST), "a spoofed source gets through");
        assert!(dropped("spoofed_source6") > 0);
        assert!(!pings(&ns.lan, LAN_HOST, UNLEARNED), "an address not learned is reached");
        assert!(dropped("not_guest_forward") > 0);
        assert!(!pings(&ns.lan, LAN_HOST, OTHER_NETWORK_HOST));
        assert!(dropped("forward_other6") > 0, "the host's other network is not open to the LAN");

        // A new address: only the guest's elements change.
        firewall.ensure_guest(&guest(&[UNLEARNED]), Blocking::default()).expect("changing the guest");
        assert_eq!(listed_sources6(&ns.host), [serde_json::json!([TAP, UNLEARNED])]);
        assert!(pings(&ns.guest, UNLEARNED, LAN_HOST), "the new address works");
        assert!(!pings(&ns.guest, LEARNED, LAN_HOST), "the old one is gone");
        firewall.remove_guest(TAP).expect("removing the guest");
        assert!(listed_sources6(&ns.host).is_empty());
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

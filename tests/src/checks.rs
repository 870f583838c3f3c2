//! Reading back what vmnetd did, from the kernel of the World's host netns.

use crate::world::{World, UPLINK};

/// The route protocol number vmnetd marks its routes with.
pub const VMNET_PROTO: &str = "118";

/// The kernel state vmnetd is responsible for, as text, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelState {
    /// `ip route show proto 118` of both families, one line per route, sorted.
    pub routes: Vec<String>,
    /// Tap names (`ip tuntap show`), sorted.
    pub taps: Vec<String>,
    pub ip_forward: String,
    /// The uplink's own proxy_arp: vmnetd leaves it alone.
    pub uplink_proxy_arp: String,
    /// How long the uplink waits before answering ARP for a proxied address.
    pub uplink_proxy_delay: String,
    /// IPv6 forwarding (`all`), the uplink's proxy_ndp and accept_ra.
    pub ipv6_forwarding: String,
    pub uplink_proxy_ndp: String,
    pub uplink_accept_ra: String,
    /// vmnetd's proxy neighbour entries ([`World::vmnet_proxies`]).
    pub proxies: Vec<String>,
    /// `nft -s list ruleset` (counter values left out): vmnetd's tables, and nothing else.
    pub nftables: String,
}

impl World {
    /// vmnetd's routes of both families, sorted, as `ip route` prints them.
    pub fn vmnet_routes(&self) -> Vec<String> {
        let show = |family| {
            self.ip(self.host_ns(), &[family, "route", "show", "proto", VMNET_PROTO]).expect("ip route")
        };
        let out = show("-4") + &show("-6");
        let mut lines: Vec<String> =
            out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        lines.sort();
        lines
    }

    /// `read` of the World once it equals `want`, or after 2 s: for what the full sync that
    /// follows a re-home sweeps (the old subnet's routes and proxy entries) a moment after the
    /// `Rehomed` signal.
    pub fn settled<T: PartialEq>(&self, read: impl Fn(&World) -> T, want: &T) -> T {
        let step = std::time::Duration::from_millis(10);
        crate::cmd::wait_until(std::time::Duration::from_secs(2), step, || read(self) == *want);
        read(self)
    }

    /// vmnetd's proxy neighbour entries (protocol 118), as `ADDRESS dev DEV`, sorted.
    pub fn vmnet_proxies(&self) -> Vec<String> {
        let show =
            |family| self.ip(self.host_ns(), &[family, "-N", "neigh", "show", "proxy"]).expect("ip neigh");
        let out = show("-4") + &show("-6");
        // "198.51.100.200 dev wlan0 proxy proto 118"
        let mut lines: Vec<String> = out
            .lines()
            .filter(|l| l.split_whitespace().collect::<Vec<_>>().ends_with(&["proto", VMNET_PROTO]))
            .filter_map(|l| l.split(" proxy").next().map(str::to_owned))
            .collect();
        lines.sort();
        lines
    }

    /// Every tun/tap device of the host netns, sorted. vmnetd takes a removed guest's tap down
    /// and deletes it after it has replied (the kernel takes tens of ms), so a tap that is down
    /// is waited for (1 s at most) until it is gone.
    pub fn taps(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let out = self.ip(self.host_ns(), &["-o", "link", "show", "type", "tun"]).expect("ip link");
            // "7: vmt-web: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 ..."
            let links: Vec<(String, bool)> = out
                .lines()
                .filter_map(|l| {
                    let mut fields = l.split(": ");
                    let name = fields.nth(1)?.split('@').next()?.to_string();
                    let up = fields.next()?.split(['<', '>', ',']).any(|flag| flag == "UP");
                    Some((name, up))
                })
                .collect();
            if links.iter().all(|(_, up)| *up) || std::time::Instant::now() >= deadline {
                let mut taps: Vec<String> = links.into_iter().map(|(name, _)| name).collect();
                taps.sort();
                return taps;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The uid owning a tap (from sysfs inside the host netns); -1 for none.
    pub fn tap_owner(&self, tap: &str) -> i64 {
        let out = self
            .exec_in(self.host_ns(), &["cat", &format!("/sys/class/net/{tap}/owner")])
            .expect("cat owner");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(i64::MIN)
    }

    /// A link's ifindex in the host netns.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out =
            self.exec_in(self.host_ns(), &["cat", &format!("/sys/class/net/{dev}/ifindex")]).expect("cat");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("ifindex")
    }

    pub fn kernel_state(&self) -> KernelState {
        KernelState {
            routes: self.vmnet_routes(),
            taps: self.taps(),
            ip_forward: self.sysctl(self.host_ns(), "net.ipv4.ip_forward").expect("sysctl"),
            uplink_proxy_arp: self
                .sysctl(self.host_ns(), &format!("net.ipv4.conf.{UPLINK}.proxy_arp"))
                .expect("sysctl"),
            uplink_proxy_delay: self
                .sysctl(self.host_ns(), &format!("net.ipv4.neigh.{UPLINK}.proxy_delay"))
                .expect("sysctl"),
            ipv6_forwarding: self.sysctl(self.host_ns(), "net.ipv6.conf.all.forwarding").expect("sysctl"),
            uplink_proxy_ndp: self
                .sysctl(self.host_ns(), &format!("net.ipv6.conf.{UPLINK}.proxy_ndp"))
                .expect("sysctl"),
            uplink_accept_ra: self
                .sysctl(self.host_ns(), &format!("net.ipv6.conf.{UPLINK}.accept_ra"))
                .expect("sysctl"),
            proxies: self.vmnet_proxies(),
            nftables: self.nftables(),
        }
    }

    /// The host netns's whole nftables ruleset as `nft -s list ruleset` prints it (without
    /// counter values). Panics when nft is missing (tests/apt-packages installs it).
    pub fn nftables(&self) -> String {
        let out =
            self.exec_in(self.host_ns(), &["nft", "-s", "list", "ruleset"]).expect("nft (package nftables)");
        assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The named counters of vmnetd's tables with their packet counts, from `nft list
    /// counters`: `(name, packets)`.
    pub fn nft_counters(&self) -> Vec<(String, u64)> {
        let out = self.exec_in(self.host_ns(), &["nft", "list", "counters"]).expect("nft (package nftables)");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut counters = Vec::new();
        let mut name = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("counter ") {
                name = rest.split_whitespace().next().map(str::to_owned);
            } else if let (Some(n), Some(rest)) = (&name, line.strip_prefix("packets ")) {
                let packets = rest.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0);
                counters.push((n.clone(), packets));
                name = None;
            }
        }
        counters
    }

    /// Packets counted by vmnetd's named counter `name` (0 when it does not exist).
    pub fn dropped(&self, name: &str) -> u64 {
        self.nft_counters().into_iter().filter(|(n, _)| n == name).map(|(_, p)| p).sum()
    }
}

/// vmnetd's configuration for tests: the kernel source on the World's uplink, DNS from a
/// resolv.conf in the World's directory.
pub fn kernel_config(world: &World, extra: &str) -> String {
    let resolv = world.dir().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 198.51.100.1\n").expect("write resolv.conf");
    format!(
        "[uplink]\nsource = \"kernel\"\ninterface = \"{UPLINK}\"\nresolv_conf = \"{}\"\n{extra}",
        resolv.display()
    )
}

impl World {
    /// Waits up to 5 s for a manager property to have `value`.
    pub fn wait_for_property(&self, client: &crate::Client, name: &str, value: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if client.manager_property(name).is_ok_and(|v| v == value) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl World {
    /// Stops polkitd, for tests of what happens without it.
    pub fn stop_polkit(&self) -> std::io::Result<()> {
        self.procs.stop(self.polkit().pid()).map(drop)
    }
}

impl World {
    /// An org.vmnet client on this World's bus (as root).
    pub fn client(&self) -> crate::Client {
        crate::Client::connect(self.bus_address()).expect("connect to the World's bus")
    }
}

impl crate::GuestHandle<'_> {
    /// Configures the guest as a user would from the service's properties: the guest's
    /// `Address` with the uplink's prefix, the host's address as gateway. Returns the address.
    pub fn configure_from(&self, client: &crate::Client, guest: &str) -> String {
        let address = client.guest_property(guest, "Address").expect("Address");
        let subnet = client.manager_property("Subnet").expect("Subnet");
        let gateway = client.manager_property("HostAddress").expect("HostAddress");
        let prefix = subnet.split_once('/').expect("Subnet in CIDR form").1;
        self.configure(&format!("{address}/{prefix}"), &gateway).expect("configure the guest");
        address
    }
}

//! Stand-ins for vmnetd, for tests of the guests themselves: a routed tap made by hand (the
//! layout vmnetd builds) and busybox udhcpd as the DHCP server on it.

use crate::cmd::{error, wait_until};
use crate::world::{World, HOST_ADDR, LAN_ROUTER, UPLINK};
use std::fs;
use std::io;
use std::time::Duration;

impl World {
    /// What vmnetd does for a guest, by hand: a persistent tap `tap` without an address in the
    /// host netns, up, proxy ARP on it and the uplink (answering at once), forwarding on, and a
    /// /32 route to `guest_addr` through the tap.
    pub fn tap_by_hand(&self, tap: &str, guest_addr: &str) -> io::Result<()> {
        let host = self.host_ns();
        self.ip(host, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
        self.ip(host, &["link", "set", tap, "up"])?;
        for dev in [UPLINK, tap] {
            self.set_sysctl(host, &format!("net.ipv4.conf.{dev}.proxy_arp"), "1")?;
        }
        self.set_sysctl(host, "net.ipv4.ip_forward", "1")?;
        self.fast_proxy_arp(tap)?;
        self.route_by_hand(tap, guest_addr)
    }

    /// Points the tap's /32 route at `guest_addr` instead (a guest's new address).
    pub fn route_by_hand(&self, tap: &str, guest_addr: &str) -> io::Result<()> {
        self.ip(self.host_ns(), &["route", "flush", "dev", tap])?;
        self.ip(self.host_ns(), &["route", "add", &format!("{guest_addr}/32"), "dev", tap]).map(drop)
    }
}

/// A `busybox udhcpd` configuration handing out one address on one tap.
#[derive(Debug, Clone)]
pub struct Udhcpd {
    pub tap: String,
    /// The one address it leases.
    pub address: String,
    pub netmask: String,
    pub router: Option<String>,
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub mtu: Option<u32>,
    pub lease_secs: u32,
}

impl Udhcpd {
    /// `address` on `tap` in the World's /24, router the host's uplink address, DNS the LAN
    /// router, domain `example.test`, MTU 1500, 90 s leases.
    pub fn new(tap: &str, address: &str) -> Udhcpd {
        Udhcpd {
            tap: tap.to_string(),
            address: address.to_string(),
            netmask: "255.255.255.0".into(),
            router: Some(HOST_ADDR.into()),
            dns: vec![LAN_ROUTER.into()],
            domain: Some("example.test".into()),
            mtu: Some(1500),
            lease_secs: 90,
        }
    }

    fn config(&self, name: &str, world: &World) -> String {
        let file = |ext: &str| world.dir().join(format!("{name}.{ext}")).to_string_lossy().into_owned();
        let mut lines = vec![
            format!("interface {}", self.tap),
            format!("start {}", self.address),
            format!("end {}", self.address),
            "max_leases 1".into(),
            format!("lease_file {}", file("leases")),
            format!("pidfile {}", file("pid")),
            format!("opt subnet {}", self.netmask),
            format!("opt lease {}", self.lease_secs),
        ];
        lines.extend(self.router.as_ref().map(|r| format!("opt router {r}")));
        if !self.dns.is_empty() {
            lines.push(format!("opt dns {}", self.dns.join(" ")));
        }
        lines.extend(self.domain.as_ref().map(|d| format!("opt domain {d}")));
        lines.extend(self.mtu.map(|m| format!("opt mtu {m}")));
        lines.join("\n") + "\n"
    }
}

/// A running udhcpd; stopped on Drop (and by the World's Drop).
pub struct DhcpServer<'w> {
    world: &'w World,
    pid: u32,
}

impl World {
    /// Starts `busybox udhcpd` in the host netns for `config` and waits until it serves. The tap
    /// has no address: `-I` gives udhcpd the uplink's as its own (the server identifier), and
    /// `-a 100` shortens its ARP check of an address before offering it (2 s by default).
    pub fn start_udhcpd(&self, config: &Udhcpd) -> io::Result<DhcpServer<'_>> {
        let n = self.guests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("udhcpd{n}");
        let conf = self.dir().join(format!("{name}.conf"));
        fs::write(&conf, config.config(&name, self))?;
        fs::write(self.dir().join(format!("{name}.leases")), "")?;
        let conf = conf.to_string_lossy();
        let argv = ["busybox", "udhcpd", "-f", "-I", HOST_ADDR, "-a", "100", &conf];
        let pid = self.spawn_in(self.host_ns(), &name, &argv)?;
        let log = self.dir().join(format!("{name}.log"));
        let started = || fs::read_to_string(&log).is_ok_and(|l| l.contains("udhcpd: started"));
        if !wait_until(Duration::from_secs(5), Duration::from_millis(10), started) {
            let text = fs::read_to_string(&log).unwrap_or_default();
            return Err(error(format!("udhcpd did not start: {}", text.trim())));
        }
        Ok(DhcpServer { world: self, pid })
    }
}

impl DhcpServer<'_> {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stop(&self) -> io::Result<()> {
        self.world.procs.stop(self.pid).map(drop)
    }
}

impl Drop for DhcpServer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("vmnet-tests: cannot stop udhcpd {}: {e}", self.pid);
        }
    }
}

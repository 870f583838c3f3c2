//! The two LANs (bridge, router, LAN client, dnsmasq), the uplink's address, and roaming.

use super::{Lan, Lease, NmWorld, AP_DEV, BRIDGE};
use crate::cmd::{error, in_netns, ip, wait_until};
use crate::world::UPLINK;
use std::fs;
use std::io;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// What a roam did and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roam {
    pub from: Lan,
    pub to: Lan,
    /// The new address (CIDR).
    pub address: String,
    /// How long the link was down.
    pub link_away: Duration,
    /// From the move until NM had the device activated with the new address.
    pub elapsed: Duration,
    /// From link-up on the new LAN until then.
    pub after_link_up: Duration,
}

/// The LAN whose netns holds `ap0` (None if neither does: a broken world).
pub(super) fn current_lan_of(home: &str, office: &str) -> Option<Lan> {
    Lan::ALL.into_iter().find(|&lan| {
        let ns = if lan == Lan::Home { home } else { office };
        ip(ns, &["link", "show", AP_DEV]).is_ok()
    })
}

/// `busybox ping` from `source` (iputils is not installed here), once a try, for about 3 s.
fn ping_from_source(ns: &str, source: &str, addr: &str) -> bool {
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        in_netns(ns, &["busybox", "ping", "-c1", "-W1", "-q", "-I", source, addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl NmWorld {
    /// Netns `<id>-<lan>` with bridge br0 (.1 router first, so the DHCP server identifier, then
    /// .2 the LAN client) and dnsmasq serving DHCP (.100-.150, 2 min leases, authoritative, no
    /// ping check) and DNS (no upstream) on br0; addresses relative to the network of
    /// [`super::NmOptions::lans`].
    pub(super) fn setup_lan(&self, lan: Lan) -> io::Result<()> {
        let ns = self.lan_ns(lan).to_string();
        self.add_netns(&ns)?;
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        self.ip(&ns, &["link", "add", BRIDGE, "type", "bridge"])?;
        let lans = &self.options.lans;
        let (router, prefix) = (lans.router(lan), lans.prefix_len);
        self.ip(&ns, &["addr", "add", &format!("{router}/{prefix}"), "dev", BRIDGE])?;
        self.ip(&ns, &["addr", "add", &format!("{}/{prefix}", lans.client(lan)), "dev", BRIDGE])?;
        let ra = if self.options.ipv6 { self.setup_lan6(lan, &ns)? } else { Vec::new() };
        self.ip(&ns, &["link", "set", BRIDGE, "up"])?;
        let (first, last, mask) = (lans.host(lan, 100), lans.host(lan, 150), lans.netmask());
        let dir = self.dir().display().to_string();
        let name = lan.name();
        let mut args = vec![
            "dnsmasq".to_string(),
            "--conf-file=/dev/null".to_string(),
            "--keep-in-foreground".to_string(),
            "--log-facility=-".to_string(),
            "--log-dhcp".to_string(),
            "--no-resolv".to_string(),
            "--no-hosts".to_string(),
            format!("--interface={BRIDGE}"),
            "--except-interface=lo".to_string(),
            "--bind-interfaces".to_string(),
            format!("--dhcp-range={first},{last},{mask},2m"),
            format!("--dhcp-option=option:router,{router}"),
            format!("--dhcp-option=option:dns-server,{router}"),
            format!("--dhcp-leasefile={dir}/dnsmasq-{name}.leases"),
            format!("--pid-file={dir}/dnsmasq-{name}.pid"),
            "--dhcp-authoritative".to_string(),
            "--no-ping".to_string(),
        ];
        args.extend(ra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = self.spawn_in(&ns, &format!("dnsmasq-{name}"), &argv)?;
        // Serving as soon as it has bound its sockets (logged before "DHCP, IP range").
        let log = self.dir().join(format!("dnsmasq-{name}.log"));
        let ready = || fs::read_to_string(&log).is_ok_and(|l| l.contains("DHCP, IP range"));
        if !wait_until(Duration::from_secs(10), Duration::from_millis(10), ready) {
            let status = self.world.procs.try_wait(pid);
            let text = fs::read_to_string(&log).unwrap_or_default();
            return Err(error(format!("dnsmasq in {ns} is not ready ({status:?}): {}", text.trim())));
        }
        Ok(())
    }

    /// The LAN the uplink is on now (whose netns holds `ap0`, also while its link is down).
    pub fn current_lan(&self) -> Option<Lan> {
        current_lan_of(&self.home, &self.office)
    }

    /// The uplink's global IPv4 address as CIDR ("198.51.100.117/24"), from the kernel.
    pub fn uplink_address(&self) -> Option<String> {
        let out =
            self.ip(self.host_ns(), &["-4", "-o", "addr", "show", "dev", UPLINK, "scope", "global"]).ok()?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next().map(str::to_string)
    }

    /// Waits up to `timeout` until the uplink has an address in `lan` and NM has the device
    /// activated (GENERAL.STATE 100).
    pub fn wait_for_lease(&self, lan: Lan, timeout: Duration) -> io::Result<Lease> {
        self.wait_for_lease_since(lan, timeout, Instant::now())
    }

    pub(super) fn wait_for_lease_since(&self, lan: Lan, timeout: Duration, t0: Instant) -> io::Result<Lease> {
        let end = t0 + timeout;
        let in_lan = || self.uplink_address().filter(|a| self.options.lans.contains(lan, a));
        // The kernel address first (cheap to poll), then NM's device state (nmcli).
        let mut address = None;
        while Instant::now() < end {
            address = in_lan();
            if address.is_some() {
                break;
            }
            sleep(Duration::from_millis(10));
        }
        let activated = || self.nm_device_state() == Some(100);
        let left = end.saturating_duration_since(Instant::now());
        if address.is_none() || !wait_until(left, Duration::from_millis(20), activated) {
            return Err(error(format!(
                "no lease from {lan} ({}) on {UPLINK} within {timeout:?}: address {:?}, NM device state {:?}",
                self.options.lans.subnet(lan),
                self.uplink_address(),
                self.nm_device_state()
            )));
        }
        let address = in_lan().ok_or_else(|| error(format!("{UPLINK} lost its {lan} address again")))?;
        Ok(Lease { address, lan, elapsed: t0.elapsed() })
    }

    /// Moves `ap0` to `to`'s bridge: link down, into `to`'s netns, `away` later enslaved and up.
    /// Does not wait for NM. Away for less than the carrier-wait-timeout is a blip that NM
    /// rides out (the old lease stays until the DHCP rebind, ~100 s with 2 min leases).
    pub fn move_link(&self, to: Lan, away: Duration) -> io::Result<()> {
        let from = self.current_lan().ok_or_else(|| error(format!("{AP_DEV} is on no LAN")))?;
        if from == to {
            return Err(error(format!("the uplink is already on {to}")));
        }
        let (from_ns, to_ns) = (self.lan_ns(from).to_string(), self.lan_ns(to).to_string());
        self.ip(&from_ns, &["link", "set", AP_DEV, "down"])?;
        self.ip(&from_ns, &["link", "set", AP_DEV, "netns", &to_ns])?;
        sleep(away);
        self.ip(&to_ns, &["link", "set", AP_DEV, "master", BRIDGE, "up"]).map(drop)
    }

    /// Roams to `to`: the link goes down for [`super::NmOptions::link_away`] (longer than the
    /// carrier-wait-timeout), comes up on `to`'s bridge, and this waits (up to `lease_timeout`)
    /// until NM has re-activated the profile with an address from `to`.
    pub fn roam(&self, to: Lan) -> io::Result<Roam> {
        let from = self.current_lan().ok_or_else(|| error(format!("{AP_DEV} is on no LAN")))?;
        let away = self.options.link_away();
        let t0 = Instant::now();
        self.move_link(to, away)?;
        let t1 = Instant::now();
        let lease = self.wait_for_lease_since(to, self.options.lease_timeout, t1).map_err(|e| {
            error(format!("roam {from} -> {to}: {e}\n{}", crate::cmd::tail(&self.nm_log(), 20)))
        })?;
        let roam = Roam {
            from,
            to,
            address: lease.address,
            link_away: away,
            elapsed: t0.elapsed(),
            after_link_up: lease.elapsed,
        };
        eprintln!(
            "[{}] roam {from} -> {to}: {} after {:.3}s ({:.3}s after link-up)",
            self.id(),
            roam.address,
            roam.elapsed.as_secs_f64(),
            roam.after_link_up.as_secs_f64()
        );
        Ok(roam)
    }

    /// Pings `addr` from `lan`'s client (.2), once a try, for up to about 3 s.
    pub fn ping_from(&self, lan: Lan, addr: &str) -> bool {
        ping_from_source(self.lan_ns(lan), &self.options.lans.client(lan), addr)
    }

    /// Connects from `lan`'s client (.2) to `addr:port` and returns what the server sent
    /// (trimmed), or None if the connection failed or nothing came back within 3 s.
    pub fn tcp_from(&self, lan: Lan, addr: &str, port: u16) -> Option<String> {
        let target = format!("TCP:{addr}:{port},connect-timeout=3,bind={}", self.options.lans.client(lan));
        let out = self.exec_in(self.lan_ns(lan), &["socat", "-T3", "-", &target]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// [`NmWorld::ping_from`] the current LAN (shadows `World::ping_from_lan`, which would use
    /// the home LAN).
    pub fn ping_from_lan(&self, addr: &str) -> bool {
        self.current_lan().is_some_and(|lan| self.ping_from(lan, addr))
    }

    /// [`NmWorld::tcp_from`] the current LAN (shadows `World::tcp_from_lan`).
    pub fn tcp_from_lan(&self, addr: &str, port: u16) -> Option<String> {
        self.tcp_from(self.current_lan()?, addr, port)
    }

    /// dnsmasq's lease file of `lan` (`EXPIRY MAC IP HOSTNAME CLIENT-ID` lines).
    pub fn dhcp_leases(&self, lan: Lan) -> String {
        fs::read_to_string(self.dir().join(format!("dnsmasq-{}.leases", lan.name()))).unwrap_or_default()
    }
}

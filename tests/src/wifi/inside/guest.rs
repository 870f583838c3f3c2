//! The guest behind its tap in the laptop VM: the project's netns guest (`tapguest --dhcp
//! --qmp`, netns `guest`) on the tap `vmnetctl add` made, with a TCP server on port 80 and
//! the kernel's default IPv6 (SLAAC); an IPv6-only one without QMP; and what the APs'
//! namespaces see of them (ping, TCP).

use super::lines::Lines;
use super::world::{Laptop, RUN_DIR};
use crate::cmd::{error, in_netns, run, wait_until};
use crate::guest6::Ipv6Guest;
use crate::lan::ping_once;
use crate::lease::Lease;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const NS: &str = "guest";
pub const PORT: u16 = 80;

pub struct Guest {
    pub tap: String,
    pub mac: String,
    pub events: Lines,
    /// tapguest's.
    pub pid: u32,
}

/// Pings until one is answered, for up to `timeout`; returns when it was.
pub fn ping_until(ns: &str, addr: &str, timeout: Duration) -> Option<Instant> {
    wait_until(timeout, Duration::from_millis(20), || ping_once(ns, addr)).then(Instant::now)
}

/// `count` pings, one at a time: how many were answered.
pub fn pings(ns: &str, addr: &str, count: usize) -> usize {
    (0..count).filter(|_| ping_once(ns, addr)).count()
}

/// Connects from netns `ns` to `addr:PORT` and returns what the server sent (trimmed).
pub fn tcp(ns: &str, addr: &str) -> Option<String> {
    let target = format!("TCP:{addr}:{PORT},connect-timeout=3");
    let out = crate::cmd::output(in_netns(ns, &["socat", "-T3", "-", &target]).stdin(Stdio::null())).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

impl Laptop {
    /// `vmnetctl add NAME --qmp SOCKET` as the test user (a member of group `vmnet`: polkit's
    /// rule allows it), then the netns guest on the new tap with the guest's MAC, its DHCP
    /// client and QMP socket, and a TCP server in it; IPv6 as a stock guest has it.
    pub fn add_guest(&self, name: &str) -> io::Result<Guest> {
        let qmp = format!("{RUN_DIR}/{name}.qmp");
        let guest = self.add_netns_guest(name, NS, Some(&qmp))?;
        let listen = format!("TCP-LISTEN:{PORT},fork,reuseaddr");
        self.spawn("guest tcp server", Some(NS), &["socat", &listen, "SYSTEM:echo hi"], "guest-socat.log")?;
        Ok(guest)
    }

    /// A guest in netns `ns` with IPv6 only: no QMP (vmnetd cannot flap its link), no DHCP; eth0 up.
    pub fn add_ipv6_guest(&self, name: &str, ns: &str) -> io::Result<Guest> {
        self.add_netns_guest(name, ns, None)
    }

    /// `vmnetctl add` as the test user, then tapguest in netns `ns` on the tap, with the
    /// kernel's default IPv6 settings and, given a QMP socket, QMP and DHCP.
    fn add_netns_guest(&self, name: &str, ns: &str, qmp: Option<&str>) -> io::Result<Guest> {
        let mut args = vec!["--json", "add", name];
        args.extend(qmp.iter().flat_map(|qmp| ["--qmp", *qmp]));
        let (ok, stdout, stderr) = self.vmnetctl(Some(self.tester), &args)?;
        if !ok {
            return Err(error(format!("vmnetctl add {name} as the test user failed: {stderr}")));
        }
        let added: serde_json::Value = serde_json::from_str(&stdout)
            .map_err(|e| error(format!("vmnetctl add printed {stdout:?}: {e}")))?;
        let text = |k: &str| added[k].as_str().unwrap_or("").to_string();
        let (tap, mac) = (text("tap"), text("mac"));
        if tap.is_empty() || mac.is_empty() {
            return Err(error(format!("vmnetctl add printed no tap or MAC: {stdout}")));
        }
        run(Command::new("ip").args(["netns", "add", ns]))?;
        crate::cmd::ip(ns, &["link", "set", "lo", "up"])?;
        // Before tapguest makes eth0, which takes its settings from `default`.
        for (key, value) in Ipv6Guest::default().sysctls() {
            run(&mut in_netns(ns, &["sysctl", "-qw", &format!("{key}={value}")]))?;
        }
        let bin = self.bins.tapguest.to_string_lossy().into_owned();
        let mut argv: Vec<&str> = vec![&bin, &tap, ns, "--mac", &mac];
        // Its QEMU would run as the guest's owner: vmnetd drives only such a QMP.
        let owner = self.tester.to_string();
        if let Some(qmp) = qmp {
            argv.extend(["--qmp", qmp, "--qmp-owner", &owner, "--dhcp", "--hostname", name]);
        }
        let mut cmd = Command::new(argv[0]);
        let err = self.log(&format!("tapguest-{name}.err"))?;
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        let (pid, stdout) = self.procs.spawn(&format!("tapguest {name}"), cmd)?;
        let stdout = stdout.ok_or_else(|| error("tapguest's stdout is not piped"))?;
        let mut events = Lines::read(stdout, Some(self.log(&format!("tapguest-{name}.log"))?));
        let started = Instant::now();
        if events.wait_for(started, Duration::from_secs(10), |l| l == "relay ready").is_none() {
            return Err(error("tapguest: no `relay ready` within 10 s"));
        }
        if qmp.is_none() {
            // Its DHCP client would have.
            crate::cmd::ip(ns, &["link", "set", "eth0", "up"])?;
        }
        Ok(Guest { tap, mac, events, pid })
    }
}

impl Guest {
    /// The next `dhcp bound` after `since` (a new lease), parsed, with when it came.
    pub fn lease_after(&mut self, since: Instant, timeout: Duration) -> io::Result<(Instant, Lease)> {
        let (at, line) = self
            .events
            .wait_for(since, timeout, |l| l.starts_with("dhcp bound ") || l.starts_with("dhcp error "))
            .ok_or_else(|| error(format!("no DHCP lease within {timeout:?}")))?;
        let lease = line
            .strip_prefix("dhcp ")
            .filter(|l| !l.starts_with("error "))
            .ok_or_else(|| error(line.clone()))?;
        Ok((at, Lease::parse(lease)?))
    }

    /// When the guest's link went down (a QMP `set_link` off) after `since`.
    pub fn link_down_after(&mut self, since: Instant, timeout: Duration) -> Option<Instant> {
        self.events.wait_for(since, timeout, |l| l == "link down").map(|(at, _)| at)
    }
}

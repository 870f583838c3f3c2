//! Guests: a netns `<id>-g<n>` whose `eth0` is relayed to a tap in the host netns by the
//! `tapguest` binary, configured by hand or by its own DHCP client. The World's Drop stops the
//! relay and its servers and deletes the netns.

use crate::cmd::{error, in_netns, ip, output, run, wait_until};
pub use crate::guest6::Ipv6Guest;
use crate::lease::Lease;
use crate::qmp::{Qmp, QmpError};
use crate::world::World;
use serde_json::Value;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct GuestHandle<'w> {
    pub(crate) world: &'w World,
    ns: String,
    tap: String,
    relay: u32,
    qmp: Option<PathBuf>,
    events: Mutex<Receiver<String>>,
}

/// The `tapguest` binary: env `VMNET_TAPGUEST`, else next to the test executable's directory
/// (tests run from `target/<profile>/deps/`; cargo builds the bin for integration tests).
pub fn tapguest_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VMNET_TAPGUEST") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let deps = exe.parent().ok_or_else(|| error("test executable has no directory"))?;
    [deps.join("../tapguest"), deps.join("tapguest")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| error("tapguest binary not found (set VMNET_TAPGUEST)"))
}

/// How a guest is started: QMP socket or not, DHCP client or not, IPv6 set up or left alone.
#[derive(Debug, Clone, Copy)]
struct Kind {
    qmp: bool,
    dhcp: bool,
    ipv6: Option<Ipv6Guest>,
}

impl World {
    /// A guest behind the existing tap `tap` (in the host netns), with MAC `mac` ("" = random)
    /// and a QMP socket; configure it by hand ([`GuestHandle::configure`]). Panics if it cannot
    /// be started.
    #[track_caller]
    pub fn add_guest(&self, tap: &str, mac: &str) -> GuestHandle<'_> {
        match self.try_add_guest(tap, mac) {
            Ok(guest) => guest,
            Err(e) => panic!("cannot start a guest on {tap}: {e}"),
        }
    }

    /// A guest behind the existing tap `tap`: creates its netns, starts the relay (with a QMP
    /// socket: NIC `virtio-net-pci.0`, netdev id `n0`) and waits for "relay ready".
    pub fn try_add_guest(&self, tap: &str, mac: &str) -> io::Result<GuestHandle<'_>> {
        self.start_guest(tap, mac, Kind { qmp: true, dhcp: false, ipv6: None })
    }

    /// A guest that configures eth0 by DHCP, as a VM would (`busybox udhcpc`, restarted when
    /// QMP set_link brings its link back up), with a QMP socket if `qmp`. Wait for its lease
    /// with [`GuestHandle::wait_for_lease`]. Panics if it cannot be started.
    #[track_caller]
    pub fn dhcp_guest(&self, tap: &str, mac: &str, qmp: bool) -> GuestHandle<'_> {
        match self.start_guest(tap, mac, Kind { qmp, dhcp: true, ipv6: None }) {
            Ok(guest) => guest,
            Err(e) => panic!("cannot start a DHCP guest on {tap}: {e}"),
        }
    }

    /// [`World::dhcp_guest`], with errors.
    pub fn try_dhcp_guest(&self, tap: &str, mac: &str, qmp: bool) -> io::Result<GuestHandle<'_>> {
        self.start_guest(tap, mac, Kind { qmp, dhcp: true, ipv6: None })
    }

    /// A guest with IPv6 as a stock Linux guest has it (see [`Ipv6Guest`]): eth0 comes up
    /// at once and takes RAs, SLAAC and DAD; with `dhcp` also IPv4 by DHCP ([`World::dhcp_guest`]),
    /// else no IPv4 unless [`GuestHandle::configure`]d. A QMP socket as usual.
    pub fn try_ipv6_guest(
        &self,
        tap: &str,
        mac: &str,
        ipv6: Ipv6Guest,
        dhcp: bool,
    ) -> io::Result<GuestHandle<'_>> {
        let guest = self.start_guest(tap, mac, Kind { qmp: true, dhcp, ipv6: Some(ipv6) })?;
        guest.ip(&["link", "set", "lo", "up"])?;
        guest.ip(&["link", "set", "eth0", "up"])?;
        Ok(guest)
    }

    /// [`World::try_ipv6_guest`]; panics if the guest cannot be started.
    #[track_caller]
    pub fn ipv6_guest(&self, tap: &str, mac: &str, ipv6: Ipv6Guest, dhcp: bool) -> GuestHandle<'_> {
        match self.try_ipv6_guest(tap, mac, ipv6, dhcp) {
            Ok(guest) => guest,
            Err(e) => panic!("cannot start an IPv6 guest on {tap}: {e}"),
        }
    }

    fn start_guest(&self, tap: &str, mac: &str, kind: Kind) -> io::Result<GuestHandle<'_>> {
        let n = self.guests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ns = format!("{}-g{n}", self.id());
        self.add_netns(&ns)?;
        if let Some(ipv6) = kind.ipv6 {
            // Before the relay creates eth0, which takes its settings from `default`.
            for (key, value) in ipv6.sysctls() {
                self.set_sysctl(&ns, key, value)?;
            }
        }
        let qmp = kind.qmp.then(|| self.dir().join(format!("g{n}.qmp")));
        let bin = tapguest_binary()?.to_string_lossy().into_owned();
        let mut argv: Vec<String> = vec![bin, tap.into(), ns.clone()];
        if let Some(path) = &qmp {
            argv.extend(["--qmp".into(), path.to_string_lossy().into_owned()]);
        }
        if !mac.is_empty() {
            argv.extend(["--mac".into(), mac.into()]);
        }
        if kind.dhcp {
            argv.extend(["--dhcp".into(), "--hostname".into(), format!("g{n}")]);
        }
        let log_path = self.dir().join(format!("g{n}.log"));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = in_netns(self.host_ns(), &argv);
        let mut log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log.try_clone()?);
        let (relay, stdout) = self.procs.spawn(&format!("tapguest g{n}"), cmd)?;
        let stdout = stdout.ok_or_else(|| error("relay stdout is not piped"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let _ = tx.send(line); // keep draining after the handle is gone: no EPIPE
            }
        });
        let guest = GuestHandle { world: self, ns, tap: tap.to_string(), relay, qmp, events: Mutex::new(rx) };
        guest.wait_for_event("relay ready", Duration::from_secs(10)).map_err(|e| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            error(format!("{e}; relay log: {}", log.trim()))
        })?;
        Ok(guest)
    }
}

/// Waits up to 5 s until something in netns `ns` listens on TCP `port` (IPv6 if `v6`, else IPv4).
pub(crate) fn wait_listening(ns: &str, port: u16, v6: bool) -> io::Result<()> {
    let filter = format!("sport = :{port}");
    let family = if v6 { "-6" } else { "-4" };
    let listening = || {
        output(in_netns(ns, &["ss", "-Hltn", family, &filter]).stdin(Stdio::null()))
            .is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
    };
    if !wait_until(Duration::from_secs(5), Duration::from_millis(10), listening) {
        return Err(error(format!(
            "nothing in {ns} listens on TCP{} port {port}",
            if v6 { "6" } else { "" }
        )));
    }
    Ok(())
}

impl GuestHandle<'_> {
    /// The guest's netns.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The host-side tap the relay is attached to.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The relay's pid.
    pub fn relay_pid(&self) -> u32 {
        self.relay
    }

    /// The relay's QMP socket (NIC `virtio-net-pci.0`, netdev id `n0`). Panics for a guest
    /// started without QMP.
    #[track_caller]
    pub fn qmp_socket(&self) -> &Path {
        self.qmp.as_deref().expect("this guest was started without a QMP socket")
    }

    /// `ip -n <guest ns> ARGS...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        ip(&self.ns, args)
    }

    /// Runs `argv` in the guest's netns; the output whatever the exit status.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        output(in_netns(&self.ns, argv).stdin(Stdio::null()))
    }

    /// Static configuration: eth0 gets `addr_cidr` as its only IPv4 address (IPv6 is left as it is), lo and eth0 go up, default route via
    /// `gateway` (on-link: the host's uplink address, reachable through proxy ARP).
    pub fn configure(&self, addr_cidr: &str, gateway: &str) -> io::Result<()> {
        self.ip(&["-4", "addr", "flush", "dev", "eth0"])?; // IPv6 (link-local, SLAAC) stays
        self.ip(&["link", "set", "lo", "up"])?;
        self.ip(&["link", "set", "eth0", "up"])?;
        self.ip(&["addr", "add", addr_cidr, "dev", "eth0"])?;
        let route = ["route", "replace", "default", "via", gateway, "dev", "eth0", "onlink"];
        self.ip(&route).map(drop)
    }

    /// Starts `socat TCP-LISTEN:PORT,fork,reuseaddr SYSTEM:'echo hi'` in the guest and waits
    /// until it listens. Connections get "hi".
    pub fn start_tcp_server(&self, port: u16) -> io::Result<()> {
        let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
        let name = format!("tcp-{}-{port}", self.ns);
        self.world.spawn_in(&self.ns, &name, &["socat", &listen, "SYSTEM:echo hi"])?;
        wait_listening(&self.ns, port, false)
    }

    /// As [`GuestHandle::start_tcp_server`] over IPv6 only (`[::]:PORT`, "hi"); the IPv4
    /// server listens on 0.0.0.0 only, so both can run on the same port.
    pub fn start_tcp_server6(&self, port: u16) -> io::Result<()> {
        let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=1");
        let name = format!("tcp6-{}-{port}", self.ns);
        self.world.spawn_in(&self.ns, &name, &["socat", &listen, "SYSTEM:echo hi"])?;
        wait_listening(&self.ns, port, true)
    }

    /// Pings `addr` from the guest, once a try, for up to about 3 s.
    pub fn ping_from_guest(&self, addr: &str) -> bool {
        crate::lan::ping(&self.ns, addr)
    }

    /// Waits for a line of the relay's stdout that contains `text` ("relay ready", "link up",
    /// "link down", "dhcp deconfig"); earlier lines are consumed.
    pub fn wait_for_event(&self, text: &str, timeout: Duration) -> io::Result<String> {
        self.wait_for_event_where(timeout, text, |line| line.contains(text))
    }

    fn wait_for_event_where(
        &self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> io::Result<String> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(error(format!("no `{what}` from the relay within {timeout:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(error(format!("the relay exited before `{what}`")))
                }
            }
        }
    }

    /// Waits for the next `dhcp bound` event (a new lease, not a renewal) and returns the lease;
    /// earlier events are consumed. Fails at once on `dhcp error`.
    pub fn wait_for_lease(&self, timeout: Duration) -> io::Result<Lease> {
        let line = self.wait_for_event_where(timeout, "dhcp bound", |l| {
            l.starts_with("dhcp bound ") || l.starts_with("dhcp error ")
        })?;
        match line.strip_prefix("dhcp ") {
            Some(lease) if !lease.starts_with("error ") => Lease::parse(lease),
            _ => Err(error(format!("{}: {line}", self.ns))),
        }
    }

    /// Asks the guest's DHCP client to renew its lease now (SIGUSR1 to its udhcpc, found
    /// among the processes of the guest's netns); wait for `dhcp renew` to see it done.
    pub fn renew_lease(&self) -> io::Result<()> {
        let pids = run(Command::new("ip").args(["netns", "pids", &self.ns]))?;
        let udhcpc = pids
            .split_whitespace()
            .find(|pid| {
                let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                argv.split(|&b| b == 0).nth(1) == Some(&b"udhcpc"[..]) // busybox udhcpc ...
            })
            .and_then(|pid| pid.parse::<i32>().ok())
            .ok_or_else(|| error(format!("no udhcpc runs in {}", self.ns)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(udhcpc), nix::sys::signal::Signal::SIGUSR1)
            .map_err(io::Error::from)
    }

    /// Connects to the relay's QMP socket (capabilities negotiated).
    pub fn qmp_connect(&self) -> Result<Qmp, QmpError> {
        Qmp::connect(self.qmp_socket())
    }

    /// Sends QMP commands (JSON objects) after `qmp_capabilities` and returns their replies.
    pub fn qmp(&self, commands: &[Value]) -> io::Result<Vec<Value>> {
        let mut qmp = self.qmp_connect().map_err(io::Error::other)?;
        commands.iter().map(|cmd| qmp.send_raw(&format!("{cmd}\n"))).collect()
    }

    /// QMP `set_link n0 up|down`: the guest's eth0 carrier goes on or off, as with QEMU.
    pub fn set_link(&self, up: bool) -> io::Result<()> {
        self.qmp_connect().and_then(|mut q| q.set_link("n0", up)).map_err(io::Error::other)
    }

    /// Waits up to `timeout` for the relay to exit (after QMP `quit`).
    pub fn wait_for_exit(&self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let status = self.world.procs.wait_exit(self.relay, timeout)?;
        status.ok_or_else(|| error(format!("the relay of {} still runs after {timeout:?}", self.ns)))
    }

    /// Stops the relay (eth0 vanishes; the netns and its servers stay until the World's Drop).
    pub fn stop_relay(&self) -> io::Result<()> {
        self.world.procs.stop(self.relay).map(drop)
    }
}

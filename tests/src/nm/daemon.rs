//! NetworkManager itself: its configuration, starting and stopping it, and nmcli.

use super::{Lease, NmWorld, NM_BUS_NAME, PROFILE};
use crate::cmd::{describe, error, in_netns, output, tail, wait_until};
use crate::world::UPLINK;
use nix::sys::signal::Signal;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const NETWORKMANAGER: &str = "/usr/sbin/NetworkManager";
/// How long NM gets to own its bus name, and to exit after a signal.
const NM_TIMEOUT: Duration = Duration::from_secs(20);

/// The host directories NM's mount namespace gets private copies of (mount points that must
/// exist), in `<dir>/nm/`.
const MOUNTS: [(&str, &str); 3] = [
    ("etc", "/etc/NetworkManager"),
    ("lib", "/var/lib/NetworkManager"),
    ("lib-dispatcher.d", "/usr/lib/NetworkManager/dispatcher.d"),
];

impl NmWorld {
    /// `<dir>/nm/etc` (NetworkManager.conf, the profile, dispatcher.d), `<dir>/nm/lib`,
    /// `<dir>/nm/run` and an empty `<dir>/nm/lib-dispatcher.d`, as testbed.sh's write_nm_config.
    pub(super) fn write_nm_config(&self) -> io::Result<()> {
        for (_, mount_point) in MOUNTS {
            if !Path::new(mount_point).is_dir() {
                return Err(error(format!("{mount_point} is missing: is network-manager installed?")));
            }
        }
        let etc = self.nm_dir.join("etc");
        for sub in ["conf.d", "system-connections", "dispatcher.d/no-wait.d", "dispatcher.d/pre-up.d"] {
            fs::create_dir_all(etc.join(sub))?;
        }
        fs::create_dir_all(etc.join("dispatcher.d/pre-down.d"))?;
        for sub in ["lib", "run", "lib-dispatcher.d/no-wait.d", "lib-dispatcher.d/pre-up.d"] {
            fs::create_dir_all(self.nm_dir.join(sub))?;
        }
        fs::create_dir_all(self.nm_dir.join("lib-dispatcher.d/pre-down.d"))?;
        // In NM's mount namespace /run is <dir>/nm/run: the standard system bus socket there
        // leads to the World's bus, so dispatcher scripts reach it without any environment.
        let socket = self.bus_address().strip_prefix("unix:path=").unwrap_or(self.bus_address()).to_owned();
        fs::create_dir_all(self.nm_dir.join("run/dbus"))?;
        std::os::unix::fs::symlink(socket, self.nm_dir.join("run/dbus/system_bus_socket"))?;
        let o = &self.options;
        let conf = format!(
            "[main]\nplugins=keyfile\ndhcp=internal\nno-auto-default=*\ndns=none\nrc-manager=unmanaged\n\
             hostname-mode=none\n\n[connectivity]\nenabled=false\n\n[logging]\nlevel={}\n\n\
             [device]\ncarrier-wait-timeout={}\n\n{}",
            o.log_level,
            o.carrier_wait.as_millis(),
            o.extra_config
        );
        fs::write(etc.join("NetworkManager.conf"), conf)?;
        let profile = format!(
            "[connection]\nid={PROFILE}\nuuid={}\ntype=ethernet\ninterface-name={UPLINK}\nautoconnect=true\n\n\
             [ipv4]\nmethod=auto\n\n[ipv6]\n{}",
            self.uuid,
            if o.ipv6 {
                // A laptop's usual profile, without privacy addresses (one stable address per
                // prefix, easy to assert on); either family may fail alone.
                "method=auto\naddr-gen-mode=stable-privacy\nip6-privacy=0\nmay-fail=true\n"
            } else {
                "method=disabled\n"
            }
        );
        let keyfile = etc.join(format!("system-connections/{PROFILE}.nmconnection"));
        // NM ignores keyfiles that others can read: create it 0600 before writing.
        let file = fs::OpenOptions::new().create(true).truncate(true).write(true).open(&keyfile)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        io::Write::write_all(&mut &file, profile.as_bytes())?;
        if self.options.record_dispatcher {
            self.write_recorder()?;
        }
        Ok(())
    }

    /// Starts NetworkManager (it must not run), waits until it owns its bus name and has
    /// activated the profile with a lease from the current LAN (by autoconnect).
    pub fn start_nm(&self) -> io::Result<Lease> {
        let t0 = Instant::now();
        let pid = self.spawn_nm()?;
        let bus = self.bus();
        let procs = &self.world.procs;
        let up = wait_until(NM_TIMEOUT, Duration::from_millis(20), || {
            bus.has_owner(NM_BUS_NAME) || !matches!(procs.try_wait(pid), Ok(None))
        });
        if let Ok(Some(status)) = procs.try_wait(pid) {
            self.nm_pid.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(error(format!("NetworkManager exited ({status}); log:\n{}", self.nm_log_tail())));
        }
        if !up {
            return Err(error(format!("{NM_BUS_NAME} has no owner after {NM_TIMEOUT:?}")));
        }
        let lan = self.current_lan().ok_or_else(|| error("the uplink is on no LAN"))?;
        self.wait_for_lease_since(lan, self.options.lease_timeout, t0)
    }

    fn spawn_nm(&self) -> io::Result<u32> {
        let mut guard = self.nm_pid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid) = *guard {
            if matches!(self.world.procs.try_wait(pid), Ok(None)) {
                return Err(error(format!("NetworkManager already runs ({pid})")));
            }
        }
        // In the host netns, own mount and UTS namespaces: a read-only /sys (NM skips udev then)
        // and private /etc/NetworkManager, /var/lib/NetworkManager, dispatcher.d and /run. The
        // bus socket is under /tmp, so it stays reachable.
        let mut script = String::from("mount -o remount,ro /sys");
        for (n, (_, mount_point)) in MOUNTS.iter().enumerate() {
            script.push_str(&format!(" && mount --bind \"${}\" {mount_point}", n + 1));
        }
        script.push_str(&format!(" && mount --bind \"$4\" /run && exec {NETWORKMANAGER} --debug"));
        let mut argv = vec!["unshare", "-m", "-u", "--propagation", "private", "sh", "-c", &script, "sh"];
        let dirs: Vec<String> = MOUNTS
            .iter()
            .map(|(sub, _)| *sub)
            .chain(["run"])
            .map(|sub| self.nm_dir.join(sub).to_string_lossy().into_owned())
            .collect();
        argv.extend(dirs.iter().map(String::as_str));
        let log =
            fs::OpenOptions::new().create(true).append(true).open(self.dir().join("NetworkManager.log"))?;
        let mut cmd = in_netns(self.host_ns(), &argv);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // ip netns exec, unshare and sh all exec: the pid is NetworkManager's.
        let pid = self.world.spawn("NetworkManager", cmd)?;
        fs::write(self.nm_dir.join("nm.pid"), format!("{pid}\n"))?;
        *guard = Some(pid);
        Ok(pid)
    }

    /// The running NetworkManager's pid (None after `kill_nm`). `nsenter -t PID -n -m` gives its
    /// view (netns and mounts).
    pub fn nm_pid(&self) -> Option<u32> {
        let pid = *self.nm_pid.lock().unwrap_or_else(|p| p.into_inner());
        pid.filter(|&pid| matches!(self.world.procs.try_wait(pid), Ok(None)))
    }

    /// Stops NetworkManager with SIGTERM; see [`NmWorld::kill_nm_with`].
    pub fn kill_nm(&self) -> io::Result<ExitStatus> {
        self.kill_nm_with(Signal::SIGTERM)
    }

    /// Sends `sig` to NetworkManager (SIGKILL: a crash), waits up to 20 s for it to exit and
    /// then for its bus name to go. NM leaves the uplink configured when it exits.
    pub fn kill_nm_with(&self, sig: Signal) -> io::Result<ExitStatus> {
        let pid = self.nm_pid().ok_or_else(|| error("NetworkManager is not running"))?;
        self.world.procs.signal(pid, sig)?;
        let status = self.world.procs.wait_exit(pid, NM_TIMEOUT)?;
        let status =
            status.ok_or_else(|| error(format!("NetworkManager did not exit within {NM_TIMEOUT:?}")))?;
        self.nm_pid.lock().unwrap_or_else(|p| p.into_inner()).take();
        let bus = self.bus();
        if !wait_until(Duration::from_secs(5), Duration::from_millis(10), || !bus.has_owner(NM_BUS_NAME)) {
            return Err(error(format!("{NM_BUS_NAME} still has an owner after NetworkManager exited")));
        }
        Ok(status)
    }

    /// `nmcli ARGS...` as root on the World's bus (nmcli speaks only D-Bus), with the output
    /// whatever the exit status.
    pub fn nmcli(&self, args: &[&str]) -> io::Result<Output> {
        let mut cmd = Command::new("nmcli");
        cmd.args(args).env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address()).stdin(Stdio::null());
        output(&mut cmd)
    }

    /// `nmcli ARGS...`: stdout, or an error with stderr.
    fn nmcli_ok(&self, args: &[&str]) -> io::Result<String> {
        let out = self.nmcli(args)?;
        if !out.status.success() {
            let cmd = format!("nmcli {}", args.join(" "));
            return Err(error(format!(
                "`{cmd}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nmcli connection down vmnet-uplink` (a user's deactivation: autoconnect stays blocked
    /// until `nm_up`), then waits until the uplink has no IPv4 address.
    pub fn nm_down(&self) -> io::Result<()> {
        self.nmcli_ok(&["--wait", "20", "connection", "down", PROFILE])?;
        let gone =
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || self.uplink_address().is_none());
        if !gone {
            return Err(error(format!(
                "{UPLINK} still has {:?} after `connection down`",
                self.uplink_address()
            )));
        }
        Ok(())
    }

    /// `nmcli connection up vmnet-uplink`, then waits for the lease from the current LAN.
    pub fn nm_up(&self) -> io::Result<Lease> {
        let t0 = Instant::now();
        self.nmcli_ok(&["--wait", "20", "connection", "up", PROFILE])?;
        let lan = self.current_lan().ok_or_else(|| error("the uplink is on no LAN"))?;
        self.wait_for_lease_since(lan, self.options.lease_timeout, t0)
    }

    /// NM's state of the uplink device: `GENERAL.STATE`'s number (100 = activated, 30 =
    /// disconnected, 20 = unavailable), None if nmcli cannot tell (NM not running...).
    pub fn nm_device_state(&self) -> Option<u32> {
        let out = self.nmcli(&["-g", "GENERAL.STATE", "device", "show", UPLINK]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success().then_some(())?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Everything NetworkManager wrote to stdout and stderr, over all its runs.
    pub fn nm_log(&self) -> String {
        fs::read_to_string(self.dir().join("NetworkManager.log")).unwrap_or_default()
    }

    fn nm_log_tail(&self) -> String {
        tail(&self.nm_log(), 30)
    }

    /// Runs `argv` with NetworkManager's view (its netns, mounts and UTS namespace), through
    /// `nsenter -t <NM pid> -n -m -u`; the output whatever the exit status.
    pub fn exec_in_nm(&self, argv: &[&str]) -> io::Result<Output> {
        let pid = self.nm_pid().ok_or_else(|| error("NetworkManager is not running"))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(pid.to_string()).args(["-n", "-m", "-u"]).args(argv).stdin(Stdio::null());
        output(&mut cmd).map_err(|e| error(format!("{}: {e}", describe(&cmd))))
    }
}

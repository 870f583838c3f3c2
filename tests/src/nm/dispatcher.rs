//! nm-dispatcher on the World's bus: NM asks for `org.freedesktop.nm_dispatcher`, the bus
//! activates it through a service file in its service dir whose Exec is a wrapper that enters
//! NM's namespaces (net, mount, UTS) and execs the real `/usr/lib/NetworkManager/nm-dispatcher`.
//! It has no option for its script directory; in NM's mount namespace
//! `/etc/NetworkManager/dispatcher.d` is `<dir>/nm/etc/dispatcher.d` and
//! `/usr/lib/NetworkManager/dispatcher.d` is the (empty) `<dir>/nm/lib-dispatcher.d`, so scripts
//! installed on the machine never run in a test. It exits after 10 s idle; the bus activates it
//! again on the next event. The wrapper records each instance's pid (and in `<dir>/pids`, for
//! the stale sweep); NmWorld's Drop stops it.

use super::{NmWorld, DISPATCHER_BUS_NAME};
use crate::cmd::error;
use crate::procs::start_time;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

const NM_DISPATCHER: &str = "/usr/lib/NetworkManager/nm-dispatcher";
/// The recorder script's name in dispatcher.d.
pub const RECORDER: &str = "50-record";

/// One run of the recorder: `$1`, `$2` and the environment nm-dispatcher gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherCall {
    /// Unix time (seconds) of the call.
    pub time: f64,
    /// `$1`: the interface ("" for events without one, e.g. connectivity-change).
    pub iface: String,
    /// `$2`: "up", "down", "dhcp4-change", "pre-up", "connectivity-change", "hostname"...
    pub action: String,
    /// `CONNECTION_UUID`, `CONNECTION_ID`, `DEVICE_IFACE`, `IP4_ADDRESS_0`, `DHCP4_IP_ADDRESS`...
    pub env: BTreeMap<String, String>,
}

impl DispatcherCall {
    /// An environment variable ("" if unset).
    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map_or("", String::as_str)
    }
}

/// Parses the recorder's log: `=== TIME [IFACE] [ACTION]` lines, each followed by `env | sort`.
fn parse_calls(log: &str) -> Vec<DispatcherCall> {
    let mut calls: Vec<DispatcherCall> = Vec::new();
    let mut last_key: Option<String> = None;
    for line in log.lines() {
        if let Some(header) = line.strip_prefix("=== ") {
            let (time, rest) = header.split_once(' ').unwrap_or((header, ""));
            let inner = rest.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or("");
            let (iface, action) = inner.split_once("] [").unwrap_or((inner, ""));
            calls.push(DispatcherCall {
                time: time.parse().unwrap_or(0.0),
                iface: iface.to_string(),
                action: action.to_string(),
                env: BTreeMap::new(),
            });
            last_key = None;
            continue;
        }
        let Some(call) = calls.last_mut() else { continue };
        match line.split_once('=') {
            Some((key, value))
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                call.env.insert(key.to_string(), value.to_string());
                last_key = Some(key.to_string());
            }
            // A value with a newline in it.
            _ => {
                if let Some(value) = last_key.as_ref().and_then(|k| call.env.get_mut(k)) {
                    value.push('\n');
                    value.push_str(line);
                }
            }
        }
    }
    calls
}

/// Writes `text` to `path` as an executable script, through a rename (nm-dispatcher must never
/// see it half-written).
fn install_executable(from: Option<&Path>, text: &str, path: &Path) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| error("no parent directory"))?;
    let name = path.file_name().ok_or_else(|| error("no file name"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    match from {
        Some(source) => {
            fs::copy(source, &tmp).map_err(|e| error(format!("cannot copy {}: {e}", source.display())))?;
        }
        None => fs::write(&tmp, text)?,
    }
    // nm-dispatcher runs only scripts owned by root, executable, not writable by others.
    std::os::unix::fs::chown(&tmp, Some(0), Some(0))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, path)
}

impl NmWorld {
    /// The wrapper and `org.freedesktop.nm_dispatcher.service` in the bus's service dir.
    pub(super) fn write_dispatcher_service(&self) -> io::Result<()> {
        let nm = self.nm_dir.display();
        let dir = self.dir().display();
        let wrapper = self.nm_dir.join("nm-dispatcher-wrapper");
        let script = format!(
            "#!/bin/sh\n\
             # Started by the World's dbus-daemon (activation of {DISPATCHER_BUS_NAME}).\n\
             start=$(cut -d' ' -f22 /proc/$$/stat)\n\
             echo \"$$ $start\" >>{nm}/dispatcher.pids\n\
             echo \"$$ $start nm-dispatcher\" >>{dir}/pids\n\
             export DBUS_SYSTEM_BUS_ADDRESS={bus}\n\
             exec nsenter -t \"$(cat {nm}/nm.pid)\" -m -n -u {NM_DISPATCHER} --debug >>{dir}/nm-dispatcher.log 2>&1\n",
            bus = self.bus_address()
        );
        install_executable(None, &script, &wrapper)?;
        let service =
            format!("[D-BUS Service]\nName={DISPATCHER_BUS_NAME}\nExec={}\nUser=root\n", wrapper.display());
        fs::write(self.bus().service_dir().join(format!("{DISPATCHER_BUS_NAME}.service")), service)
    }

    /// `50-record`, which appends `=== TIME [$1] [$2]` and `env | sort` to `<dir>/dispatcher.log`.
    pub(super) fn write_recorder(&self) -> io::Result<()> {
        let log = self.dispatcher_log_path();
        let script = format!(
            "#!/bin/sh\n{{ echo \"=== $(date +%s.%N) [$1] [$2]\"; env | sort; }} >>{}\n",
            log.display()
        );
        install_executable(None, &script, &self.dispatcher_dir().join(RECORDER))
    }

    /// NM's `/etc/NetworkManager/dispatcher.d` (`<dir>/nm/etc/dispatcher.d`, with `pre-up.d`,
    /// `pre-down.d`, `no-wait.d`). Scripts must be root-owned and 0755.
    pub fn dispatcher_dir(&self) -> PathBuf {
        self.nm_dir.join("etc/dispatcher.d")
    }

    /// NM's `/usr/lib/NetworkManager/dispatcher.d`, where packages install their plugins
    /// (`<dir>/nm/lib-dispatcher.d`, empty at first).
    pub fn lib_dispatcher_dir(&self) -> PathBuf {
        self.nm_dir.join("lib-dispatcher.d")
    }

    /// Copies `executable` to `/etc/NetworkManager/dispatcher.d/NAME` as NM sees it (root-owned,
    /// 0755); it runs from the next event on. `name` may be `pre-up.d/NAME` etc.
    pub fn install_dispatcher_script(&self, name: &str, executable: &Path) -> io::Result<PathBuf> {
        let path = self.dispatcher_dir().join(name);
        install_executable(Some(executable), "", &path)?;
        Ok(path)
    }

    /// As [`NmWorld::install_dispatcher_script`], into `/usr/lib/NetworkManager/dispatcher.d`
    /// (where vmnet installs `90-vmnet`). A script of the same name in /etc takes precedence.
    pub fn install_lib_dispatcher_script(&self, name: &str, executable: &Path) -> io::Result<PathBuf> {
        let path = self.lib_dispatcher_dir().join(name);
        install_executable(Some(executable), "", &path)?;
        Ok(path)
    }

    fn dispatcher_log_path(&self) -> PathBuf {
        self.dir().join("dispatcher.log")
    }

    /// What the recorder `50-record` wrote ("" without [`super::NmOptions::record_dispatcher`]).
    pub fn dispatcher_log(&self) -> String {
        fs::read_to_string(self.dispatcher_log_path()).unwrap_or_default()
    }

    /// The recorder's log, parsed: every dispatcher call so far, oldest first.
    pub fn dispatcher_calls(&self) -> Vec<DispatcherCall> {
        parse_calls(&self.dispatcher_log())
    }

    /// Waits up to `timeout` for a recorded call for `iface` and `action` among the calls after
    /// the first `after` (e.g. `dispatcher_calls().len()` taken before the action), and
    /// returns the first such call.
    pub fn wait_for_dispatch(
        &self,
        after: usize,
        iface: &str,
        action: &str,
        timeout: Duration,
    ) -> io::Result<DispatcherCall> {
        let end = Instant::now() + timeout;
        loop {
            let calls = self.dispatcher_calls();
            let found = calls.iter().skip(after).find(|c| c.iface == iface && c.action == action);
            if let Some(call) = found {
                return Ok(call.clone());
            }
            if Instant::now() >= end {
                let seen: Vec<String> =
                    calls.iter().skip(after).map(|c| format!("[{}] [{}]", c.iface, c.action)).collect();
                return Err(error(format!(
                    "no dispatcher call `{iface} {action}` within {timeout:?}; seen: {seen:?}"
                )));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The pids of the nm-dispatcher instances that still run (at most one, normally).
    pub fn dispatcher_pids(&self) -> Vec<u32> {
        let text = fs::read_to_string(self.nm_dir.join("dispatcher.pids")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut it = line.split_whitespace().map(|f| f.parse::<u64>().ok());
                let (pid, start) = (it.next().flatten()?, it.next().flatten()?);
                (start_time(pid as u32) == Some(start)).then_some(pid as u32)
            })
            .collect()
    }

    /// Stops every nm-dispatcher instance that still runs: SIGTERM, SIGKILL after 2 s.
    pub(super) fn stop_dispatcher(&self) {
        let pids = self.dispatcher_pids();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(2);
        while !self.dispatcher_pids().is_empty() && Instant::now() < end {
            sleep(Duration::from_millis(20));
        }
        for pid in self.dispatcher_pids() {
            eprintln!("vmnet-tests: killing nm-dispatcher {pid}");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// `busctl` check: whether nm-dispatcher is on the bus right now.
    pub fn dispatcher_running(&self) -> bool {
        self.bus().has_owner(DISPATCHER_BUS_NAME)
    }
}

//! vmnetd in the laptop VM and what the tests ask of it: the tree's binaries installed where
//! the package puts them, vmnetd started with no options (its default configuration), its state
//! through `vmnetctl`, its signals through `vmnetctl watch`, its routes, the dispatcher's runs.

use super::lines::Lines;
use super::world::Laptop;
use crate::cmd::{command_as, error, output, run, wait_until};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Laptop {
    /// `vmnetctl ARGS...` as root (`None`) or as `uid`: (success, stdout, stderr).
    pub fn vmnetctl(&self, uid: Option<u32>, args: &[&str]) -> io::Result<(bool, String, String)> {
        let out = output(command_as(uid, "/usr/bin/vmnetctl").args(args).stdin(Stdio::null()))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
    }

    /// `vmnetctl --json status`, parsed.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (ok, stdout, _) = self.vmnetctl(None, &["--json", "status"]).ok()?;
        ok.then(|| serde_json::from_str(&stdout).ok()).flatten()
    }

    /// Waits until vmnetd's `State` is `state` (and, if given, its `Subnet` is `subnet`).
    pub fn wait_for_state(&self, state: &str, subnet: Option<&str>, timeout: Duration) -> Option<Instant> {
        let wanted =
            || self.status().is_some_and(|s| s["state"] == state && subnet.is_none_or(|n| s["subnet"] == n));
        wait_until(timeout, Duration::from_millis(50), wanted).then(Instant::now)
    }

    /// The laptop's routes that vmnetd made (`proto vmnet` = 118).
    pub fn vmnet_routes(&self) -> Vec<String> {
        let text = run(Command::new("ip").args(["-4", "route", "show", "table", "all", "proto", "118"]));
        text.unwrap_or_default().lines().map(str::trim).map(str::to_string).collect()
    }

    /// The laptop's proxy neighbour entries that vmnetd made (protocol 118).
    pub fn vmnet_proxies(&self) -> Vec<String> {
        let text = run(Command::new("ip").args(["-4", "-N", "neigh", "show", "proxy"]));
        text.unwrap_or_default()
            .lines()
            .filter(|l| l.contains("proto 118"))
            .map(|l| l.trim().to_string())
            .collect()
    }

    pub fn sysctl(&self, name: &str) -> String {
        fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).unwrap_or_default().trim().into()
    }

    /// Installs the product's files that need the tree's binaries: vmnetctl as /usr/bin/vmnetctl
    /// (executable by every user) and vmnet-dispatcher as NM's dispatcher plugin `90-vmnet`
    /// (root-owned, 0755, as nm-dispatcher demands).
    pub fn install_binaries(&self) -> io::Result<()> {
        for (from, to) in [
            (&self.bins.vmnetctl, "/usr/bin/vmnetctl"),
            (&self.bins.dispatcher, "/usr/lib/NetworkManager/dispatcher.d/90-vmnet"),
        ] {
            let to = Path::new(to);
            fs::create_dir_all(to.parent().ok_or_else(|| error("no parent"))?)?;
            fs::copy(from, to)
                .map_err(|e| error(format!("cannot copy {} to {}: {e}", from.display(), to.display())))?;
            std::os::unix::fs::chown(to, Some(0), Some(0))?;
            fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    /// Starts vmnetd with no options (the default /etc/vmnet/vmnetd.toml and /var/lib/vmnet),
    /// its log on the share, and waits until it answers.
    pub fn start_vmnetd(&self) -> io::Result<()> {
        let bin = self.bins.vmnetd.to_string_lossy().into_owned();
        let mut cmd = Command::new(&bin);
        let log = self.log("vmnetd.log")?;
        cmd.env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let (pid, _) = self.procs.spawn("vmnetd", cmd)?;
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.status().is_some() || !matches!(self.procs.try_wait(pid), Ok(None))
        });
        if let Ok(Some(status)) = self.procs.try_wait(pid) {
            return Err(error(format!("vmnetd exited ({status})")));
        }
        if !up {
            return Err(error("vmnetd does not answer `vmnetctl status` after 20 s"));
        }
        Ok(())
    }

    /// Starts `vmnetctl --json watch` as root; its lines go to `self.watch`.
    pub fn start_watch(&mut self) -> io::Result<()> {
        let mut cmd = Command::new("/usr/bin/vmnetctl");
        cmd.args(["--json", "watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log("watch.err")?);
        let (_, stdout) = self.procs.spawn("vmnetctl watch", cmd)?;
        let stdout = stdout.ok_or_else(|| error("watch's stdout is not piped"))?;
        self.watch = Some(Lines::read(stdout, Some(self.log("watch.log")?)));
        Ok(())
    }

    /// The `Rehomed` signals `vmnetctl watch` printed since `since`: (when, old, new).
    pub fn rehomed_since(&mut self, since: Instant) -> Vec<(Instant, String, String)> {
        let Some(watch) = self.watch.as_mut() else { return Vec::new() };
        watch
            .since(since)
            .into_iter()
            .filter_map(|(at, line)| {
                let event: serde_json::Value = serde_json::from_str(&line).ok()?;
                (event["event"] == "rehomed").then(|| {
                    let text = |k: &str| event[k].as_str().unwrap_or("").to_string();
                    (at, text("old_subnet"), text("new_subnet"))
                })
            })
            .collect()
    }

    /// How many times the journal shows the dispatcher plugin handling `wlan0 up`.
    pub fn dispatcher_runs(&self) -> usize {
        let journal = output(Command::new("journalctl").args(["-b", "-o", "cat", "--no-pager"]));
        let text = journal.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines().filter(|l| l.contains("vmnet-dispatcher: wlan0 up: vmnetd resynced")).count()
    }

    /// When `vmnetctl watch` printed vmnetd's `State` changing to `state` after `since`.
    pub fn state_changed_to(&mut self, since: Instant, state: &str, timeout: Duration) -> Option<Instant> {
        let changed = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|e| e["event"] == "manager-changed" && e["changes"]["state"] == state)
        };
        self.watch.as_mut()?.wait_for(since, timeout, changed).map(|(at, _)| at)
    }
}

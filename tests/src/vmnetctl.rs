//! Runs vmnetctl on the World's bus, as root or as another user, once or as a process whose
//! output lines arrive as it prints them (`vmnetctl watch`).

use crate::cmd::{command_as, error, output};
use crate::vmnetd::vmnetctl_binary;
use crate::world::{Packaging, World};
use nix::sys::signal::Signal;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

impl World {
    /// A copy of the vmnetctl binary (the checkout's, or the installed /usr/bin/vmnetctl) in
    /// the World's directory (mode 0755, under /tmp), which every user can run wherever the
    /// checkout is.
    fn vmnetctl_copy(&self) -> io::Result<PathBuf> {
        let copy = self.dir().join("vmnetctl");
        if !copy.exists() {
            let staging = self.dir().join("vmnetctl.part");
            let binary = match self.packaging() {
                Packaging::Checkout => vmnetctl_binary()?,
                Packaging::Installed => PathBuf::from("/usr/bin/vmnetctl"),
            };
            fs::copy(binary, &staging)?;
            fs::rename(&staging, &copy)?;
            wait_until_executable(&copy)?;
        }
        Ok(copy)
    }

    fn vmnetctl_command(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Command> {
        let binary = self.vmnetctl_copy()?;
        let mut cmd = command_as(uid, &binary.to_string_lossy());
        cmd.args(args).env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address()).stdin(Stdio::null());
        Ok(cmd)
    }

    /// `vmnetctl ARGS...` on this World's bus as root (`None`) or as `uid` (setpriv, gid = uid,
    /// no supplementary groups); its output whatever the exit status.
    pub fn vmnetctl_as(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Output> {
        output(&mut self.vmnetctl_command(uid, args)?)
    }

    /// `vmnetctl ARGS...` as `uid` on a terminal (a pty of `script`, whose stdin is empty): what
    /// vmnetctl and its children printed on the terminal is stdout; the status is vmnetctl's.
    pub fn vmnetctl_on_terminal_as(&self, uid: u32, args: &[&str]) -> io::Result<Output> {
        let binary = self.vmnetctl_copy()?;
        let quoted: Vec<String> = std::iter::once(binary.to_string_lossy().as_ref())
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let mut cmd = command_as(Some(uid), "script");
        cmd.args(["--quiet", "--return", "--command", &quoted.join(" "), "/dev/null"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address())
            .stdin(Stdio::null());
        output(&mut cmd)
    }

    /// Starts `vmnetctl ARGS...` as root, as a process of this World (stopped on Drop), with
    /// its stdout read line by line; stderr goes to `<dir>/vmnetctl-<tag>.log`.
    pub fn spawn_vmnetctl(&self, tag: &str, args: &[&str]) -> io::Result<VmnetctlProcess<'_>> {
        let log = fs::File::create(self.dir().join(format!("vmnetctl-{tag}.log")))?;
        let mut cmd = self.vmnetctl_command(None, args)?;
        cmd.stdout(Stdio::piped()).stderr(log);
        let (pid, stdout) = self.procs.spawn(&format!("vmnetctl-{tag}"), cmd)?;
        let stdout = stdout.ok_or_else(|| error("vmnetctl's stdout was not piped"))?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(VmnetctlProcess { world: self, pid, lines, seen: Vec::new() })
    }
}

/// Waits until `binary` can be executed. A process that another test thread forked while the
/// copy was open for writing holds that descriptor until it execs, and executing the copy fails
/// with ETXTBSY until then.
fn wait_until_executable(binary: &Path) -> io::Result<()> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(error(format!("cannot run {}: {e}", binary.display()))),
            Ok(_) => return Ok(()),
        }
    }
}

pub struct VmnetctlProcess<'w> {
    world: &'w World,
    pid: u32,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl VmnetctlProcess<'_> {
    /// The next line of output, or None when none came within `timeout` or the output ended.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads lines until one satisfies `wanted` and returns it; on timeout, an error that
    /// lists every line read so far.
    pub fn wait_for(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> io::Result<String> {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next_line(left) {
                Some(line) if wanted(&line) => return Ok(line),
                Some(_) => continue,
                None => break,
            }
        }
        Err(error(format!("no such line within {timeout:?}; lines so far:\n{}", self.seen.join("\n"))))
    }

    /// Reads lines until, for each of `wanted`, some line read so far (also before this call)
    /// satisfies it, in whatever order they came; on timeout, an error that lists the lines.
    pub fn wait_for_all(&mut self, timeout: Duration, wanted: &[&dyn Fn(&str) -> bool]) -> io::Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if wanted.iter().all(|w| self.seen.iter().any(|line| w(line))) {
                return Ok(());
            }
            let left = end.checked_duration_since(Instant::now()).unwrap_or_default();
            if self.next_line(left).is_none() {
                return Err(error(format!(
                    "not all lines within {timeout:?}; lines so far:\n{}",
                    self.seen.join("\n")
                )));
            }
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Sends `sig` and waits up to 5 s for the process to exit.
    pub fn stop(&self, sig: Signal) -> io::Result<ExitStatus> {
        self.world.procs.signal(self.pid, sig)?;
        self.world
            .procs
            .wait_exit(self.pid, Duration::from_secs(5))?
            .ok_or_else(|| error(format!("vmnetctl did not exit within 5 s after {sig}")))
    }
}

//! The processes a World started: each runs in its own process group, so that stopping it also
//! stops whatever it forked. Their pids are also written to `<dir>/pids`, for the stale sweep.

use crate::cmd::error;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

struct Proc {
    name: String,
    child: Child,
    /// Exited and reaped; its process group was killed at that moment.
    reaped: Option<ExitStatus>,
}

pub struct Procs {
    pid_file: PathBuf,
    list: Mutex<Vec<Proc>>,
}

/// Start time of `pid` (field 22 of /proc/PID/stat), to tell it from a later process with the
/// same pid. None if it is gone or a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl Procs {
    pub fn new(pid_file: PathBuf) -> Procs {
        Procs { pid_file, list: Mutex::new(Vec::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Proc>> {
        self.list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `cmd` in a new process group. Returns its pid and its stdout if that was piped.
    pub fn spawn(&self, name: &str, mut cmd: Command) -> io::Result<(u32, Option<ChildStdout>)> {
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| error(format!("cannot start {name} (`{}`): {e}", crate::cmd::describe(&cmd))))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let start = start_time(pid).unwrap_or(0);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pid_file)
            .and_then(|mut f| writeln!(f, "{pid} {start} {name}"))?;
        self.lock().push(Proc { name: name.to_string(), child, reaped: None });
        Ok((pid, stdout))
    }

    /// Sends `sig` to the process `pid` only (not its group).
    pub fn signal(&self, pid: u32, sig: Signal) -> io::Result<()> {
        if self.try_wait(pid)?.is_some() {
            return Err(error(format!("process {pid} has already exited")));
        }
        kill(Pid::from_raw(pid as i32), sig).map_err(io::Error::from)
    }

    /// The exit status of `pid` if it has exited. When it is first seen to have exited, whatever
    /// is left of its process group is killed.
    pub fn try_wait(&self, pid: u32) -> io::Result<Option<ExitStatus>> {
        let mut list = self.lock();
        let proc = list
            .iter_mut()
            .find(|p| p.child.id() == pid)
            .ok_or_else(|| error(format!("process {pid} was not started by this world")))?;
        if proc.reaped.is_none() {
            if let Some(status) = proc.child.try_wait()? {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                proc.reaped = Some(status);
            }
        }
        Ok(proc.reaped)
    }

    /// Waits up to `timeout` for `pid` to exit.
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait(pid)? {
                return Ok(Some(status));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the process group, SIGKILL after STOP_GRACE. Returns the exit status.
    pub fn stop(&self, pid: u32) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait(pid)? {
            return Ok(status);
        }
        let group = Pid::from_raw(pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if let Some(status) = self.wait_exit(pid, STOP_GRACE)? {
            return Ok(status);
        }
        let _ = killpg(group, Signal::SIGKILL);
        self.wait_exit(pid, Duration::from_secs(5))?
            .ok_or_else(|| error(format!("process {pid} survived SIGKILL")))
    }

    /// Stops every process, the last started first. Errors are only printed (used by Drop).
    pub fn stop_all(&self) {
        let pids: Vec<(u32, String)> =
            self.lock().iter().rev().map(|p| (p.child.id(), p.name.clone())).collect();
        for (pid, name) in pids {
            if let Err(e) = self.stop(pid) {
                eprintln!("vmnet-tests: cannot stop {name} ({pid}): {e}");
            }
        }
    }
}

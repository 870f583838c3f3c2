//! A text polkit agent on the terminal while a call that polkit authorizes runs, as systemctl
//! does: when vmnetd asks polkit about us and a password is needed, `pkttyagent` asks for it
//! here instead of polkit refusing for want of an agent.
//!
//! The agent is registered for this process only (not for the login session), and not as a
//! fallback: polkit uses a fallback agent only for processes in a logind session, and a
//! terminal without one (a container, some ssh setups) would then never be asked.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct TtyAgent {
    child: Child,
}

impl TtyAgent {
    /// Starts `pkttyagent` for this process when `wanted` (no `--no-ask-password`), stdin is a
    /// terminal and we are not root (root needs no authorization). An agent that cannot start
    /// is no error: polkit then decides without asking.
    pub fn start_if_wanted(wanted: bool) -> Option<TtyAgent> {
        if !wanted || nix::unistd::geteuid().is_root() || !io::stdin().is_terminal() {
            return None;
        }
        TtyAgent::start().ok()
    }

    /// Starts the agent and waits until it has registered with polkit: it closes its
    /// `--notify-fd` then (or exits, e.g. when another agent serves the session).
    fn start() -> io::Result<TtyAgent> {
        let (ready, notify) = nix::unistd::pipe()?;
        fcntl(&ready, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        fcntl(&notify, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let child = Command::new("pkttyagent")
            .arg("--process")
            .arg(std::process::id().to_string())
            .arg("--notify-fd")
            .arg(notify.as_raw_fd().to_string())
            .stdout(Stdio::null())
            .spawn()?;
        drop(notify);
        let mut ready = File::from(ready);
        let mut buffer = [0u8; 64];
        loop {
            match ready.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        Ok(TtyAgent { child })
    }
}

impl Drop for TtyAgent {
    /// SIGTERM (so that it restores the terminal), then reaps it.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

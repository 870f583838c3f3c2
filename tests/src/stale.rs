//! Cleanup of what a World leaves on disk and in the kernel, also for Worlds of test processes
//! that died without running Drop (killed, or a Ctrl-C of `cargo test`).
//!
//! Each World's directory holds `owner` (pid and start time of the test process), `pids` (one
//! `PID START NAME` line per process it started) and `netns` (one netns name a line, written
//! before the netns is created).

use crate::cmd::run;
use crate::procs::start_time;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

/// World directories are `/tmp/vmnet-test-<id>`.
pub const DIR_PREFIX: &str = "vmnet-test-";

/// Removes, once per test process, the Worlds whose test process is gone.
pub fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir("/tmp") else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let is_world = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX);
            if is_world && dir.is_dir() && !owner_alive(&dir) {
                eprintln!("vmnet-tests: removing stale {}", dir.display());
                clean(&dir);
            }
        }
    });
}

fn owner_alive(dir: &Path) -> bool {
    let Ok(owner) = fs::read_to_string(dir.join("owner")) else {
        // Being created right now, or a crash between mkdir and writing `owner`.
        let age = fs::metadata(dir).and_then(|m| m.modified()).ok();
        return age.and_then(|t| t.elapsed().ok()) < Some(Duration::from_secs(60));
    };
    let mut it = owner.split_whitespace().map(|f| f.parse::<u64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(pid), Some(start)) => start_time(pid as u32) == Some(start),
        _ => false,
    }
}

/// Kills the recorded processes that still run, deletes the recorded netns, removes `dir`.
pub fn clean(dir: &Path) {
    for line in fs::read_to_string(dir.join("pids")).unwrap_or_default().lines() {
        let mut it = line.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(pid)), Some(Some(start))) = (it.next(), it.next()) {
            if start_time(pid as u32) == Some(start) {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
    let netns = fs::read_to_string(dir.join("netns")).unwrap_or_default();
    for ns in netns.lines().rev().filter(|l| !l.is_empty()) {
        if let Err(e) = remove_netns(ns) {
            eprintln!("vmnet-tests: cannot delete netns {ns}: {e}");
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("vmnet-tests: cannot remove {}: {e}", dir.display());
        }
    }
}

/// SIGKILLs any process still inside netns `ns`, then deletes it. A missing netns is fine.
pub fn remove_netns(ns: &str) -> io::Result<()> {
    if !Path::new("/run/netns").join(ns).exists() {
        return Ok(());
    }
    let pids = run(Command::new("ip").args(["netns", "pids", ns]))?;
    for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        eprintln!("vmnet-tests: killing process {pid} left in netns {ns}");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    run(Command::new("ip").args(["netns", "del", ns])).map(drop)
}

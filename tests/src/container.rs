//! A systemd container: this machine's own root file system (with whatever packages are
//! installed, the vmnet package among them) booted by `systemd-nspawn` as PID 1, with a tmpfs
//! overlay on top (so nothing it writes reaches the machine) and its own network namespace
//! (`--private-network`, so nothing it does reaches the machine's network). It boots to
//! `basic.target`: D-Bus and systemd, no NetworkManager or other services. Commands run inside
//! through `nsenter`. Everything is removed on Drop.
//!
//! systemd's device policy (`DeviceAllow=`) needs the unified cgroup hierarchy and BPF in the
//! container; without them systemd ignores it without a word.

use crate::cmd::{error, output, run, tail, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long the container may take to boot (it takes about 0.5 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Container {
    name: String,
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    leader: u32,
}

/// The cgroup directories to put nspawn into: one per hierarchy that systemd uses.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let hybrid = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];
    let roots: Vec<&str> =
        if Path::new(hybrid[1]).is_dir() { hybrid.to_vec() } else { vec!["/sys/fs/cgroup"] };
    roots.into_iter().map(|root| Path::new(root).join(name)).collect()
}

fn mount(args: &[&str]) -> io::Result<()> {
    run(Command::new("mount").args(args)).map(drop)
}

impl Container {
    /// Boots the container and waits until systemd has reached its target.
    pub fn boot(tag: &str) -> io::Result<Container> {
        let name = format!("vmnet-ct-{tag}-{}", std::process::id());
        let dir = PathBuf::from("/tmp").join(&name);
        let mut container = Container { cgroups: cgroup_dirs(&name), name, dir, nspawn: None, leader: 0 };
        container.start()?;
        Ok(container)
    }

    fn start(&mut self) -> io::Result<()> {
        let (layers, root) = (self.dir.join("layers"), self.dir.join("root"));
        fs::create_dir_all(&layers)?;
        fs::create_dir_all(&root)?;
        mount(&["-t", "tmpfs", "-o", "mode=755", "vmnet-ct", &layers.to_string_lossy()])?;
        let (upper, work) = (layers.join("upper"), layers.join("work"));
        fs::create_dir_all(&upper)?;
        fs::create_dir_all(&work)?;
        let options = format!("lowerdir=/,upperdir={},workdir={}", upper.display(), work.display());
        mount(&["-t", "overlay", "vmnet-ct", "-o", &options, &root.to_string_lossy()])?;
        // A machine id of its own (systemd makes one up for an empty file).
        fs::write(root.join("etc/machine-id"), "")?;
        let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
        for cgroup in &self.cgroups {
            fs::create_dir_all(cgroup)?;
        }

        // nspawn keeps (--keep-unit) the cgroup it starts in and makes payload/ and supervisor/
        // in it: one of our own per container.
        let procs: Vec<String> =
            self.cgroups.iter().map(|c| c.join("cgroup.procs").to_string_lossy().into_owned()).collect();
        let script = "for procs in $CGROUP_PROCS; do echo $$ > \"$procs\" || exit 1; done; exec \"$@\"";
        let console = fs::File::create(self.dir.join("console.log"))?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script, "sh", "systemd-nspawn", "--quiet", "--directory"])
            .arg(&root)
            .args(["--machine", &self.name, "--boot", "--private-network", "--register=no", "--keep-unit"])
            .args(["--console=read-only", "--capability=CAP_BPF", "--system-call-filter=bpf"])
            .args(["--", "systemd.unit=basic.target"])
            .env("CGROUP_PROCS", procs.join(" "))
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0);
        let nspawn = cmd.spawn().map_err(|e| error(format!("cannot run systemd-nspawn: {e}")))?;
        let nspawn_pid = nspawn.id();
        self.nspawn = Some(nspawn);

        let leader = || {
            let out = Command::new("pgrep").args(["-P", &nspawn_pid.to_string(), "-x", "systemd"]).output();
            out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok())
        };
        if !wait_until(BOOT_TIMEOUT, Duration::from_millis(50), || leader().is_some()) {
            return Err(self.failed("no systemd in the container"));
        }
        self.leader = leader().unwrap_or(0);
        let booted = || {
            let state = self.exec(&["systemctl", "is-system-running"]).map(|o| o.stdout).unwrap_or_default();
            matches!(String::from_utf8_lossy(&state).trim(), "running" | "degraded")
        };
        if !wait_until(BOOT_TIMEOUT, Duration::from_millis(50), booted) {
            return Err(self.failed("systemd did not finish booting"));
        }
        Ok(())
    }

    fn failed(&self, what: &str) -> io::Error {
        let console = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        error(format!("container {}: {what}; console:\n{}", self.name, tail(&console, 30)))
    }

    /// The container's root file system as seen from the machine (the overlay: files written
    /// there land in its tmpfs, and the container sees them).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `argv` to run inside the container (all its namespaces, as root).
    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "--"]).args(argv).stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` inside the container and returns its output, whatever the exit status.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        output(&mut self.command(argv))
    }

    /// Runs `sh -c SCRIPT` inside the container; its stdout, or an error with stderr when it
    /// fails.
    pub fn sh(&self, script: &str) -> io::Result<String> {
        run(&mut self.command(&["sh", "-c", script]))
    }

    fn stop(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else { return };
        // SIGTERM: nspawn asks the container's systemd to halt.
        let _ = kill(Pid::from_raw(nspawn.id() as i32), Signal::SIGTERM);
        let exited = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            matches!(nspawn.try_wait(), Ok(Some(_)))
        });
        if !exited {
            if self.leader != 0 {
                let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            if let Ok(console) = fs::read_to_string(self.dir.join("console.log")) {
                eprintln!("--- {} console (tail)\n{}", self.name, tail(&console, 30));
            }
        }
        for cgroup in &self.cgroups {
            // payload/ and supervisor/ (and what systemd made below them) first.
            let _ = Command::new("find").arg(cgroup).args(["-depth", "-type", "d", "-delete"]).status();
        }
        let _ = fs::remove_dir_all(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        for mount_point in [self.dir.join("root"), self.dir.join("layers")] {
            let unmounted = Command::new("umount").arg(&mount_point).stderr(Stdio::null()).status();
            if !unmounted.is_ok_and(|s| s.success()) {
                let _ = Command::new("umount").arg("--lazy").arg(&mount_point).status();
            }
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if mounts.contains(&*self.dir.to_string_lossy()) {
            // Never recurse into the overlay of the machine's root.
            eprintln!("vmnet-tests: {} is still mounted; not removed", self.dir.display());
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("vmnet-tests: cannot remove {}: {e}", self.dir.display());
        }
    }
}

//! Runs vmnetd in the World's host netns, on the World's bus.

use crate::cmd::{error, in_netns, tail};
use crate::world::World;
use nix::sys::signal::Signal;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// The bus name vmnetd owns.
pub const BUS_NAME: &str = "org.vmnet";
/// How long vmnetd gets to own its bus name, and to exit after a signal.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct VmnetdHandle<'w> {
    world: &'w World,
    pid: Option<u32>,
    config: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
}

/// The vmnetd binary: env `VMNETD_BIN`, else `target/<profile>/vmnetd` next to the test
/// executable's `deps/` directory, else `<workspace>/target/debug/vmnetd`. `cargo test -p
/// vmnet-tests` does not build it: run `cargo build -p vmnetd` first.
pub fn vmnetd_binary() -> io::Result<PathBuf> {
    workspace_binary("vmnetd", "VMNETD_BIN")
}

/// The vmnet-dispatcher binary, found like [`vmnetd_binary`] (env `VMNET_DISPATCHER_BIN`).
pub fn dispatcher_binary() -> io::Result<PathBuf> {
    workspace_binary("vmnet-dispatcher", "VMNET_DISPATCHER_BIN")
}

/// The vmnetctl binary, found like [`vmnetd_binary`] (env `VMNETCTL_BIN`). `cargo test
/// --workspace` builds it for vmnetctl's own integration tests.
pub fn vmnetctl_binary() -> io::Result<PathBuf> {
    workspace_binary("vmnetctl", "VMNETCTL_BIN")
}

pub(crate) fn workspace_binary(name: &str, env_var: &str) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let mut candidates: Vec<PathBuf> = exe.parent().map(|d| d.join("..").join(name)).into_iter().collect();
    candidates.push(crate::workspace_root().join("target/debug").join(name));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        error(format!("{name} binary not found: run `cargo build --workspace` or set {env_var}"))
    })
}

impl World {
    /// Writes `<dir>/vmnetd.toml`, starts vmnetd and waits until it owns `org.vmnet`. Panics
    /// with the tail of its log if that fails.
    #[track_caller]
    pub fn start_vmnetd(&self, config_toml: &str) -> VmnetdHandle<'_> {
        match self.try_start_vmnetd(config_toml) {
            Ok(vmnetd) => vmnetd,
            Err(e) => panic!("vmnetd did not start: {e}"),
        }
    }

    /// As `start_vmnetd`, returning the error (which includes the log's tail).
    pub fn try_start_vmnetd(&self, config_toml: &str) -> io::Result<VmnetdHandle<'_>> {
        let config = self.dir().join("vmnetd.toml");
        fs::write(&config, config_toml)?;
        let state_dir = self.dir().join("state");
        fs::create_dir_all(&state_dir)?;
        let mut vmnetd =
            VmnetdHandle { world: self, pid: None, config, state_dir, log: self.dir().join("vmnetd.log") };
        vmnetd.start()?;
        Ok(vmnetd)
    }
}

impl VmnetdHandle<'_> {
    fn start(&mut self) -> io::Result<()> {
        let bin = vmnetd_binary()?;
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let (config, state) = (self.config.to_string_lossy(), self.state_dir.to_string_lossy());
        let argv = [&*bin.to_string_lossy(), "--config", &config, "--state-dir", &state];
        let mut cmd = in_netns(self.world.host_ns(), &argv);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", self.world.bus_address())
            .env("RUST_LOG", std::env::var("VMNETD_TEST_LOG").unwrap_or_else(|_| "debug".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let pid = self.world.spawn("vmnetd", cmd)?;
        self.pid = Some(pid);
        let bus = self.world.bus();
        let procs = &self.world.procs;
        let up = crate::cmd::wait_until(TIMEOUT, Duration::from_millis(20), || {
            bus.has_owner(BUS_NAME) || !matches!(procs.try_wait(pid), Ok(None))
        });
        if let Ok(Some(status)) = procs.try_wait(pid) {
            return Err(error(format!("vmnetd exited ({status}); log:\n{}", self.log_tail())));
        }
        if !up {
            return Err(error(format!(
                "{BUS_NAME} has no owner after {TIMEOUT:?}; log:\n{}",
                self.log_tail()
            )));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), 30)
    }

    /// The running vmnetd's pid (None after it was killed).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `<dir>/vmnetd.toml`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `<dir>/state`, passed as `--state-dir`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Everything vmnetd wrote to stdout and stderr, over all its runs.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the current vmnetd process still runs.
    pub fn is_running(&self) -> bool {
        let procs = &self.world.procs;
        self.pid.is_some_and(|pid| matches!(procs.try_wait(pid), Ok(None)))
    }

    /// Sends `sig` to vmnetd without waiting (e.g. SIGHUP).
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        let pid = self.pid.ok_or_else(|| error("vmnetd is not running"))?;
        self.world.procs.signal(pid, sig)
    }

    /// Sends `sig` (SIGTERM: a clean stop; SIGKILL: a crash) and waits up to 10 s for vmnetd to
    /// exit. Whatever vmnetd itself started in its process group is killed then as well.
    pub fn kill(&mut self, sig: Signal) -> io::Result<ExitStatus> {
        let pid = self.pid.ok_or_else(|| error("vmnetd is not running"))?;
        if matches!(self.world.procs.try_wait(pid), Ok(None)) {
            self.world.procs.signal(pid, sig)?;
        }
        let status = self.world.procs.wait_exit(pid, TIMEOUT)?;
        let status =
            status.ok_or_else(|| error(format!("vmnetd did not exit within {TIMEOUT:?} after {sig}")))?;
        self.pid = None;
        // The bus may not have noticed the closed connection yet: a restart must not see the
        // old owner.
        let bus = self.world.bus();
        crate::cmd::wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
            !bus.has_owner(BUS_NAME)
        });
        Ok(status)
    }

    /// Waits up to `timeout` for vmnetd to exit by itself; its exit status, or an error.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let pid = self.pid.ok_or_else(|| error("vmnetd is not running"))?;
        let status = self.world.procs.wait_exit(pid, timeout)?;
        let status = status.ok_or_else(|| error(format!("vmnetd still runs after {timeout:?}")))?;
        self.pid = None;
        Ok(status)
    }

    /// Stops vmnetd with SIGTERM if it runs, starts it again with the same config and state
    /// directory, and waits until it owns `org.vmnet` again.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.is_running() {
            self.kill(Signal::SIGTERM)?;
        }
        self.start()
    }
}

/// The state vmnetd saved in `dir`, as vmnetd reads it back: the snapshot `state.json` with
/// the lines of `journal.jsonl` that continue it applied (`guests` becomes an object by name).
pub fn saved_state(dir: &Path) -> io::Result<serde_json::Value> {
    use serde_json::{Map, Value};
    let parse = |text: &str| serde_json::from_str::<Value>(text).map_err(io::Error::other);
    let mut state = parse(&fs::read_to_string(dir.join("state.json"))?)?;
    let mut guests = Map::new();
    let by_name = |list: &Value, guests: &mut Map<String, Value>| {
        for guest in list.as_array().into_iter().flatten() {
            guests.insert(guest["name"].as_str().unwrap_or_default().to_owned(), guest.clone());
        }
    };
    by_name(&state["guests"], &mut guests);
    let journal = fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    let mut lines = journal.lines();
    if lines.next().map(parse).transpose()?.is_some_and(|header| header["generation"] == state["generation"])
    {
        for line in lines {
            let entry = parse(line)?;
            by_name(&entry["guests"], &mut guests);
            for name in entry["removed"].as_array().into_iter().flatten() {
                guests.remove(name.as_str().unwrap_or_default());
            }
            if let Value::Object(host) = &entry["host"] {
                for (key, value) in host {
                    state[key] = value.clone();
                }
            }
        }
    }
    state["guests"] = Value::Object(guests);
    Ok(state)
}

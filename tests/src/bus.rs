//! A private dbus-daemon that plays the system bus, configured like the real one
//! (`/usr/share/dbus-1/system.conf`) plus the project's policy file.

use crate::cmd::{command_as, error, output, tail, wait_until};
use crate::procs::Procs;
use crate::users::TestUsers;
use crate::world::Packaging;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

const SYSTEM_CONF: &str = "/usr/share/dbus-1/system.conf";

pub struct Bus {
    address: String,
    pid: u32,
    policy_dir: PathBuf,
    service_dir: PathBuf,
}

/// `system.conf` rewritten for a private bus (see README of the testbed recipe): our socket, no
/// user switch, pid file, fork, syslog or setuid activation helper, our service and policy dirs.
fn bus_config(system_conf: &str, socket: &Path, services: &Path, policies: &Path) -> String {
    let dropped = ["<user>", "<pidfile>", "<fork/>", "<syslog/>", "<servicehelper>"];
    let mut out = String::new();
    for line in system_conf.lines() {
        let trimmed = line.trim();
        if dropped.iter().any(|tag| trimmed.starts_with(tag)) {
            continue;
        }
        let line = if trimmed.starts_with("<listen>") {
            format!("  <listen>unix:path={}</listen>", socket.display())
        } else if trimmed == "<standard_system_servicedirs/>" {
            format!("  <servicedir>{}</servicedir>", services.display())
        } else if trimmed == "<includedir>system.d</includedir>" {
            "  <includedir>/usr/share/dbus-1/system.d</includedir>".to_string()
        } else if trimmed == "</busconfig>" {
            format!("  <includedir>{}</includedir>\n</busconfig>", policies.display())
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The D-Bus error name in gdbus's stderr (`GDBus.Error:NAME: message`), if any.
pub fn dbus_error_name(gdbus: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&gdbus.stderr);
    let rest = stderr.split_once("GDBus.Error:")?.1;
    Some(rest.split_once(':').map_or(rest, |(name, _)| name).trim().to_string())
}

impl Bus {
    pub(crate) fn start(
        dir: &Path,
        procs: &Procs,
        users: &TestUsers,
        packaging: Packaging,
        host_ns: &str,
    ) -> io::Result<Bus> {
        let socket = dir.join("system_bus_socket");
        let (service_dir, policy_dir) = (dir.join("services"), dir.join("bus.d"));
        fs::create_dir_all(&service_dir)?;
        fs::create_dir_all(&policy_dir)?;
        if packaging == Packaging::Checkout {
            // Installed: the package's copy in /usr/share/dbus-1/system.d applies.
            let policy = crate::workspace_root().join("packaging/dbus/org.vmnet.conf");
            fs::copy(&policy, policy_dir.join("org.vmnet.conf"))
                .map_err(|e| error(format!("cannot copy {}: {e}", policy.display())))?;
        }
        let system_conf = fs::read_to_string(SYSTEM_CONF)?;
        let config = bus_config(&system_conf, &socket, &service_dir, &policy_dir);
        if !config.contains(&format!("unix:path={}", socket.display())) {
            return Err(error(format!("no <listen> to rewrite in {SYSTEM_CONF}")));
        }
        let config_file = dir.join("bus.conf");
        fs::write(&config_file, config)?;

        let log_path = dir.join("dbus-daemon.log");
        let log = fs::File::create(&log_path)?;
        let address = format!("unix:path={}", socket.display());
        // In a mount namespace with the test user: it drops connections of unknown uids.
        let mut cmd = match packaging {
            Packaging::Checkout => {
                users.unshare("exec dbus-daemon --config-file=\"$3\" --nofork --nopidfile", &[&config_file])
            }
            Packaging::Installed => {
                let (etc, state) = (dir.join("etc-vmnet"), dir.join("var-lib-vmnet"));
                fs::create_dir_all(&etc)?;
                fs::create_dir_all(&state)?;
                let netns = PathBuf::from(format!("/run/netns/{host_ns}"));
                let script = "mount --bind \"$3\" /etc/vmnet && mount --bind \"$4\" /var/lib/vmnet && \
                              exec nsenter --net=\"$5\" dbus-daemon --config-file=\"$6\" --nofork --nopidfile";
                let mut cmd = users.unshare(script, &[&etc, &state, &netns, &config_file]);
                // What it activates connects to this bus.
                cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &address);
                cmd
            }
        };
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let (pid, _) = procs.spawn("dbus-daemon", cmd)?;
        let bus = Bus { address, pid, policy_dir, service_dir };
        let answers = || {
            let id = ["org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"];
            bus.busctl_as(None, &[&["call"][..], &id, &["GetId"]].concat()).is_ok_and(|o| o.status.success())
        };
        if !wait_until(Duration::from_secs(10), Duration::from_millis(10), answers) {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(error(format!("dbus-daemon did not answer: {}", tail(&log, 20))));
        }
        Ok(bus)
    }

    /// `unix:path=<dir>/system_bus_socket`, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The dbus-daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// An `<includedir>` of the bus (holds `org.vmnet.conf`); the bus reloads it by itself.
    pub fn policy_dir(&self) -> &Path {
        &self.policy_dir
    }

    /// The bus's only `<servicedir>`, for D-Bus activation.
    pub fn service_dir(&self) -> &Path {
        &self.service_dir
    }

    /// `busctl --system ARGS...` on this bus, as root (`None`) or as `uid` (setpriv, gid = uid,
    /// no supplementary groups). The output whatever the exit status. On a failed call busctl
    /// prints only the error *message* ("Call failed: MESSAGE"), not the error name: see
    /// [`Bus::gdbus_as`] for that.
    pub fn busctl_as(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Output> {
        let mut cmd = command_as(uid, "busctl");
        cmd.args(["--system", "--no-pager"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null());
        output(&mut cmd)
    }

    /// `gdbus COMMAND --system REST...` (args = `[COMMAND, REST...]`) on this bus, as root or as
    /// `uid`. On a failed call gdbus prints the error name:
    /// `Error: GDBus.Error:org.vmnet.Error.NotAuthorized: MESSAGE` (see [`dbus_error_name`]).
    /// Example: `["call", "--dest", "org.vmnet", "--object-path", "/org/vmnet", "--method",
    /// "org.vmnet.Manager1.AddGuest", "vm1", "{}"]` (arguments in GVariant text format).
    pub fn gdbus_as(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Output> {
        let (command, rest) = args.split_first().ok_or_else(|| error("gdbus needs a command"))?;
        let mut cmd = command_as(uid, "gdbus");
        cmd.arg(command)
            .arg("--system")
            .args(rest)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null());
        output(&mut cmd)
    }

    /// A zbus connection to this bus, as root (inside a tokio runtime).
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address.as_str()).build().await
    }

    /// Whether `name` has an owner on the bus.
    pub fn has_owner(&self, name: &str) -> bool {
        let dbus = ["org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"];
        let args = [&["call"][..], &dbus, &["NameHasOwner", "s", name]].concat();
        self.busctl_as(None, &args)
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "b true")
    }

    /// Waits up to `timeout` until `name` has an owner.
    pub fn wait_for_name(&self, name: &str, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || self.has_owner(name))
    }
}

impl crate::World {
    /// Stops the World's dbus-daemon (SIGTERM, then SIGKILL): every connection to it closes.
    pub fn stop_bus(&self) -> io::Result<std::process::ExitStatus> {
        self.procs.stop(self.bus().pid())
    }
}

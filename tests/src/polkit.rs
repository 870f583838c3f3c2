//! A real polkitd on the World's bus, in a private mount namespace where
//! `/usr/share/polkit-1/actions` (a copy, plus `org.vmnet.policy`), `/etc/polkit-1/rules.d`
//! (empty at first), `/usr/share/polkit-1/rules.d` (a copy without any vmnet rule a package may
//! have installed there) and `/etc/passwd` + `/etc/group` (with the test user, see `users.rs`)
//! are bind-mounted from the World's directory. The real /etc is untouched.

use crate::bus::Bus;
use crate::cmd::{command_as, error, output, run, tail, wait_until};
use crate::procs::Procs;
use crate::users::TestUsers;
use crate::world::Packaging;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The action that adding and removing guests needs.
pub const MANAGE_GUESTS: &str = "org.vmnet.manage-guests";

const POLKITD: &str = "/usr/lib/polkit-1/polkitd";

pub struct Polkit {
    pid: u32,
    bus_address: String,
    actions_dir: PathBuf,
    rules_dir: PathBuf,
    tester_uid: u32,
}

/// `dir` owned by user polkitd, mode 0700, as polkitd wants its rules directories.
fn polkitd_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    run(Command::new("chown").arg("polkitd:").arg(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// `/usr/share/polkit-1/rules.d` copied to `dir`. For the checkout's World every rule about
/// org.vmnet is left out (an installed vmnet package puts its group rule there), so that only
/// the test decides them.
fn copy_distro_rules(dir: &Path, packaging: Packaging) -> io::Result<()> {
    const DISTRO_RULES: &str = "/usr/share/polkit-1/rules.d";
    polkitd_dir(dir)?;
    for entry in fs::read_dir(DISTRO_RULES)? {
        let path = entry?.path();
        let text = fs::read_to_string(&path)?;
        let wanted = packaging == Packaging::Installed || !text.contains("org.vmnet");
        if let Some(name) = path.file_name().filter(|_| wanted) {
            fs::write(dir.join(name), text)?;
        }
    }
    Ok(())
}

impl Polkit {
    pub(crate) fn start(
        dir: &Path,
        procs: &Procs,
        bus: &Bus,
        users: &TestUsers,
        packaging: Packaging,
    ) -> io::Result<Polkit> {
        let base = dir.join("polkit");
        fs::create_dir_all(&base)?;
        let actions_dir = base.join("actions");
        run(Command::new("cp").arg("-a").arg("/usr/share/polkit-1/actions").arg(&actions_dir))?;
        if packaging == Packaging::Checkout {
            let policy = crate::workspace_root().join("packaging/polkit/org.vmnet.policy");
            fs::copy(&policy, actions_dir.join("org.vmnet.policy"))
                .map_err(|e| error(format!("cannot copy {}: {e}", policy.display())))?;
        }
        let rules_dir = base.join("rules.d");
        polkitd_dir(&rules_dir)?;
        let distro_rules = base.join("share-rules.d");
        copy_distro_rules(&distro_rules, packaging)?;

        let script = "mount --bind \"$3\" /usr/share/polkit-1/actions && \
                      mount --bind \"$4\" /etc/polkit-1/rules.d && \
                      mount --bind \"$5\" /usr/share/polkit-1/rules.d && exec \"$6\" --no-debug";
        let log_path = dir.join("polkitd.log");
        let log = fs::File::create(&log_path)?;
        let mounts = [&actions_dir, &rules_dir, &distro_rules, Path::new(POLKITD)];
        let mut cmd = users.unshare(script, &mounts);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let (pid, _) = procs.spawn("polkitd", cmd)?;
        let polkit = Polkit {
            pid,
            bus_address: bus.address().to_string(),
            actions_dir,
            rules_dir,
            tester_uid: users.uid,
        };
        let failed = |what: &str| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            error(format!("polkitd: {what}; log: {}", tail(&log, 20)))
        };
        let timeout = Duration::from_secs(10);
        if !bus.wait_for_name("org.freedesktop.PolicyKit1", timeout) {
            return Err(failed("not on the bus after 10 s"));
        }
        // 127 with "Action ... is not registered" until polkitd has read the actions.
        let mut last = String::new();
        let registered = || match polkit.is_authorized(None, MANAGE_GUESTS) {
            Ok(yes) => yes,
            Err(e) => {
                last = e.to_string();
                false
            }
        };
        if !wait_until(timeout, Duration::from_millis(20), registered) {
            return Err(failed(&format!("root not authorized after 10 s ({last})")));
        }
        Ok(polkit)
    }

    /// polkitd's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The uid (= gid) of `vmnet-tester`, a member of group `vmnet`.
    pub fn tester_uid(&self) -> u32 {
        self.tester_uid
    }

    /// polkitd's `/usr/share/polkit-1/actions`; it notices new files by itself.
    pub fn actions_dir(&self) -> &Path {
        &self.actions_dir
    }

    /// polkitd's `/etc/polkit-1/rules.d`; it reloads the rules by itself.
    pub fn rules_dir(&self) -> &Path {
        &self.rules_dir
    }

    /// Writes `rules.d/<name>` (atomically; readable by polkitd). Does not wait for the reload.
    pub fn install_rules(&self, name: &str, text: &str) -> io::Result<()> {
        let tmp = self.rules_dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, self.rules_dir.join(name))
    }

    /// Removes `rules.d/<name>`. Does not wait for the reload.
    pub fn remove_rules(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.rules_dir.join(name))
    }

    /// Installs the project's `packaging/polkit/50-vmnet.rules` and waits until polkitd has
    /// reloaded it (vmnet-tester is authorized for `org.vmnet.manage-guests`). Returns how long
    /// the reload took.
    pub fn install_example_rules(&self) -> io::Result<Duration> {
        let path = crate::workspace_root().join("packaging/polkit/50-vmnet.rules");
        let text =
            fs::read_to_string(&path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        let t0 = Instant::now();
        self.install_rules("50-vmnet.rules", &text)?;
        let uid = Some(self.tester_uid);
        let reloaded = || self.is_authorized(uid, MANAGE_GUESTS).unwrap_or(false);
        if !wait_until(Duration::from_secs(10), Duration::from_millis(20), reloaded) {
            return Err(error("polkitd did not apply 50-vmnet.rules within 10 s"));
        }
        Ok(t0.elapsed())
    }

    /// `pkcheck --action-id ACTION --process <itself>` as root (`None`) or as `uid` (setpriv,
    /// gid = uid, no supplementary groups). Exit codes: 0 authorized, 1 not authorized,
    /// 2 authentication required, 127 error such as "Action ... is not registered".
    pub fn pkcheck(&self, uid: Option<u32>, action: &str) -> io::Result<Output> {
        let mut cmd = command_as(uid, "sh");
        cmd.args(["-c", "exec pkcheck --action-id \"$1\" --process $$", "sh", action])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .stdin(Stdio::null());
        output(&mut cmd)
    }

    /// pkcheck's verdict: Ok(true) for rc 0, Ok(false) for 1-3, an error otherwise.
    pub fn is_authorized(&self, uid: Option<u32>, action: &str) -> io::Result<bool> {
        let out = self.pkcheck(uid, action)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1..=3) => Ok(false),
            _ => Err(error(format!(
                "pkcheck {action} as {uid:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }
}

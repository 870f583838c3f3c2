//! A real headless GNOME Shell (`gnome-shell --wayland --headless --virtual-monitor`) as a test
//! user, on the World's system bus and a session bus of its own, with vmnet's extension
//! (assembled by `desktop/gnome-shell/build`) and a test helper extension installed and enabled.
//! The helper turns on the shell's unsafe mode, so that the test can look inside through
//! `org.gnome.Shell.Eval` and take screenshots, and records every notification shown.

use crate::cmd::{command_as, error, output, run, wait_until};
use crate::users::TestUsers;
use crate::world::World;
use serde_json::Value;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The uuid of vmnet's extension.
pub const EXTENSION: &str = "vmnet@example.org";
const HELPER: &str = "vmnet-test-helper@example.org";
/// vmnet's quick-settings toggle, in Eval code.
pub const TOGGLE: &str =
    "vmnetTest.Main.extensionManager.lookup('vmnet@example.org').stateObj._indicator.toggle";

/// Extension states of GNOME Shell's ExtensionManager.
pub const ENABLED: f64 = 1.0;
pub const ERROR: f64 = 3.0;

pub struct GnomeShell<'w> {
    world: &'w World,
    pid: u32,
    uid: u32,
    dir: PathBuf,
    session_bus: String,
    /// From start to the shell answering on the session bus.
    pub startup: Duration,
}

/// The helper extension, for the shell API the build picked ("legacy" or "esm").
fn helper_source(api: &str) -> String {
    let body = "enable() {
        global.context.unsafe_mode = true;
        const notifications = [];
        globalThis.vmnetTest = {Main, St, Clutter, notifications};
        this._sourceAdded = Main.messageTray.connect('source-added', (tray, source) => {
            source.connect('notification-added', (s, n) => notifications.push({title: n.title, body: n.bannerBodyText}));
        });
    }
    disable() {
        Main.messageTray.disconnect(this._sourceAdded);
    }";
    if api == "esm" {
        format!(
            "import Clutter from 'gi://Clutter';\nimport St from 'gi://St';\n\
             import * as Main from 'resource:///org/gnome/shell/ui/main.js';\n\
             import {{Extension}} from 'resource:///org/gnome/shell/extensions/extension.js';\n\
             export default class Helper extends Extension {{\n    {body}\n}}\n"
        )
    } else {
        format!(
            "const {{Clutter, St}} = imports.gi;\nconst Main = imports.ui.main;\n\
             class Helper {{\n    {body}\n}}\nfunction init() {{ return new Helper(); }}\n"
        )
    }
}

/// Which copy of vmnet's extension the shell loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionFrom {
    /// Assembled from this checkout into the user's extensions.
    Checkout,
    /// The package's, in /usr/share/gnome-shell/extensions.
    Installed,
}

/// Installs the helper (and, from the checkout, vmnet's extension) below
/// `data/gnome-shell/extensions`.
fn install_extensions(data: &Path, from: ExtensionFrom) -> io::Result<()> {
    let extensions = data.join("gnome-shell/extensions");
    fs::create_dir_all(&extensions)?;
    // The entry point for GNOME 45 and later is an ES module; so must the helper's be.
    let esm = match from {
        ExtensionFrom::Checkout => {
            let build = crate::workspace_root().join("desktop/gnome-shell/build");
            run(Command::new(&build).arg(&extensions))?.contains("(esm)")
        }
        ExtensionFrom::Installed => {
            let metadata = format!("/usr/share/gnome-shell/extensions/{EXTENSION}/metadata.json");
            fs::read_to_string(metadata)?.contains("\"45\"")
        }
    };
    let api = if esm { "esm" } else { "legacy" };
    let versions = if api == "esm" { r#"["45", "46", "47", "48"]"# } else { r#"["43", "44"]"# };
    let helper = extensions.join(HELPER);
    fs::create_dir_all(&helper)?;
    fs::write(helper.join("extension.js"), helper_source(api))?;
    let metadata = format!(
        r#"{{"uuid": "{HELPER}", "name": "vmnet test helper", "description": "unsafe mode for tests", "shell-version": {versions}}}"#
    );
    fs::write(helper.join("metadata.json"), metadata)
}

const SCRIPT: &str = r#"
cd "$HOME"
dbus-daemon --session --address="$DBUS_SESSION_BUS_ADDRESS" --nofork --nopidfile &
i=0; until [ -S "$XDG_RUNTIME_DIR/bus" ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
gsettings set org.gnome.shell enabled-extensions "['$3', '$4']"
gsettings set org.gnome.desktop.interface enable-animations false
exec gnome-shell --wayland --headless --virtual-monitor 1280x800 --no-x11
"#;

impl World {
    /// Starts GNOME Shell as `uid` (the test user or [`crate::NOBODY`]) in the host netns with
    /// the checkout's extension and waits until it answers; fails with the shell's log if it
    /// does not within 20 s.
    pub fn start_gnome_shell(&self, uid: u32) -> io::Result<GnomeShell<'_>> {
        self.start_gnome_shell_with(uid, ExtensionFrom::Checkout)
    }

    /// [`World::start_gnome_shell`], with the extension from `from`.
    pub fn start_gnome_shell_with(&self, uid: u32, from: ExtensionFrom) -> io::Result<GnomeShell<'_>> {
        if Command::new("gnome-shell").arg("--version").output().is_err() {
            return Err(error("gnome-shell is not installed (tests/apt-packages lists it)"));
        }
        let dir = self.dir().join(format!("shell-{uid}"));
        let (home, runtime) = (dir.join("home"), dir.join("runtime"));
        for sub in [&home, &runtime, &home.join(".config"), &home.join(".local/share"), &home.join(".cache")]
        {
            fs::create_dir_all(sub)?;
        }
        install_extensions(&home.join(".local/share"), from)?;
        run(Command::new("chown").arg("-R").arg(format!("{uid}:{uid}")).arg(&dir))?;
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700))?;
        let session_bus = format!("unix:path={}", runtime.join("bus").display());
        let users = TestUsers::of_world(self.dir(), self.tester_uid());
        let script = format!(
            "exec setpriv --reuid={uid} --regid={uid} --clear-groups sh -c '{}' sh \"$@\"",
            SCRIPT.replace('\'', r"'\''")
        );
        let uuids = [Path::new(EXTENSION), Path::new(HELPER)];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.host_ns()]);
        let inner = users.unshare(&script, &uuids);
        cmd.arg(inner.get_program()).args(inner.get_args());
        let env = [
            ("HOME", home.clone()),
            ("XDG_RUNTIME_DIR", runtime.clone()),
            ("XDG_CONFIG_HOME", home.join(".config")),
            ("XDG_DATA_HOME", home.join(".local/share")),
            ("XDG_CACHE_HOME", home.join(".cache")),
        ];
        cmd.env_clear()
            .envs(env)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("GSETTINGS_BACKEND", "dconf")
            .env("DBUS_SESSION_BUS_ADDRESS", &session_bus)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address());
        let log = fs::File::create(self.dir().join(format!("gnome-shell-{uid}.log")))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let started = Instant::now();
        let (pid, _) = self.procs.spawn(&format!("gnome-shell {uid}"), cmd)?;
        let mut shell = GnomeShell { world: self, pid, uid, dir, session_bus, startup: Duration::ZERO };
        let answers = || {
            shell
                .call(&[
                    "org.gnome.Shell",
                    "/org/gnome/Shell",
                    "org.freedesktop.DBus.Properties",
                    "Get",
                    "ss",
                    "org.gnome.Shell",
                    "ShellVersion",
                ])
                .is_ok()
        };
        if !wait_until(Duration::from_secs(20), Duration::from_millis(50), answers) {
            return Err(error(format!("gnome-shell did not answer within 20 s; {}", shell.log_tail())));
        }
        shell.startup = started.elapsed();
        Ok(shell)
    }
}

impl GnomeShell<'_> {
    /// `busctl --json=short call ARGS...` on the shell's session bus, as its user.
    pub fn call(&self, args: &[&str]) -> io::Result<Value> {
        let mut cmd = command_as(Some(self.uid), "busctl");
        cmd.arg(format!("--address={}", self.session_bus))
            .args(["--json=short", "--no-pager", "call"])
            .args(args)
            .stdin(Stdio::null());
        let out = output(&mut cmd)?;
        if !out.status.success() {
            return Err(error(format!(
                "busctl call {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| error(format!("busctl output: {e}")))
    }

    /// `org.gnome.Shell.Extensions.GetExtensionInfo`: the extension's state and error text.
    pub fn extension_state(&self, uuid: &str) -> io::Result<(f64, String)> {
        let info = self.call(&[
            "org.gnome.Shell",
            "/org/gnome/Shell",
            "org.gnome.Shell.Extensions",
            "GetExtensionInfo",
            "s",
            uuid,
        ])?;
        let field = |key: &str| info["data"][0][key]["data"].clone();
        Ok((field("state").as_f64().unwrap_or(-1.0), field("error").as_str().unwrap_or("").to_owned()))
    }

    /// Waits until both extensions have left the initial states; vmnet's state and error.
    pub fn wait_for_extensions(&self) -> io::Result<(f64, String)> {
        let settled = || {
            [HELPER, EXTENSION].iter().all(|uuid| {
                self.extension_state(uuid).is_ok_and(|(state, _)| state == ENABLED || state == ERROR)
            })
        };
        if !wait_until(Duration::from_secs(10), Duration::from_millis(50), settled) {
            return Err(error(format!("the extensions were not enabled within 10 s; {}", self.log_tail())));
        }
        self.extension_state(EXTENSION)
    }

    /// Evaluates JavaScript in the shell (unsafe mode, set by the helper) and returns the
    /// JSON value of its result. `vmnetTest` holds Main, St and Clutter, and the notifications.
    pub fn eval(&self, js: &str) -> io::Result<Value> {
        let reply =
            self.call(&["org.gnome.Shell", "/org/gnome/Shell", "org.gnome.Shell", "Eval", "s", js])?;
        let (ok, text) = (reply["data"][0].as_bool(), reply["data"][1].as_str().unwrap_or(""));
        if ok != Some(true) {
            return Err(error(format!("Eval failed: {text}")));
        }
        serde_json::from_str(text).map_err(|e| error(format!("Eval result {text:?}: {e}")))
    }

    /// What vmnet's menu shows: `status` line, `message` line ("" when hidden), `empty` (the
    /// "No virtual machines" line shows), `add` ("Add guest…" is sensitive), and `guests`, each
    /// with its row's `summary`, its `reason` line and whether `remove` is sensitive.
    pub fn vmnet_menu(&self) -> io::Result<Value> {
        self.eval(&format!(
            "(() => {{ const t = {TOGGLE}; return {{
                status: t._status.label.text,
                message: t._message.visible ? t._message.label.text : '',
                empty: t._noGuests.visible,
                add: t._addItem.reactive,
                guests: [...t._guestItems.values()].map(i => ({{
                    summary: i.label.text, reason: i.reasonItem.visible ? i.reasonItem.label.text : '',
                    remove: i.remove.reactive }})),
            }}; }})()"
        ))
    }

    /// Opens the quick settings and vmnet's menu in them, as a click does.
    pub fn open_vmnet_menu(&self) -> io::Result<()> {
        self.eval(&format!(
            "(() => {{ vmnetTest.Main.overview.hide(); vmnetTest.Main.panel.statusArea.quickSettings.menu.open();
                {TOGGLE}.menu.open(); return true; }})()"
        ))
        .map(drop)
    }

    /// A PNG of the whole screen, written to `path` (through the shell's own Screenshot API).
    pub fn screenshot(&self, path: &Path) -> io::Result<()> {
        let own = self.dir.join("screenshot.png");
        let own_text = own.to_string_lossy();
        self.call(&[
            "org.gnome.Shell.Screenshot",
            "/org/gnome/Shell/Screenshot",
            "org.gnome.Shell.Screenshot",
            "Screenshot",
            "bbs",
            "false",
            "false",
            &own_text,
        ])?;
        fs::copy(&own, path).map(drop)
    }

    /// The last lines of the shell's log.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.world.dir().join(format!("gnome-shell-{}.log", self.uid)));
        format!("gnome-shell log: {}", crate::cmd::tail(&log.unwrap_or_default(), 30))
    }

    /// What the shell logged of JavaScript errors and warnings (uncaught exceptions, GJS
    /// criticals, console.error/warn), and any line that names the extension.
    pub fn extension_errors(&self) -> Vec<String> {
        let log = fs::read_to_string(self.world.dir().join(format!("gnome-shell-{}.log", self.uid)));
        let marks =
            ["JS ERROR", "JS WARNING", "Gjs-CRITICAL", "Gjs-WARNING", "Gjs-Console", EXTENSION, "vmnet:"];
        // With the package installed too, the shell says that this user's copy (the checkout's)
        // wins over the package's: expected, and what the test wants.
        let ours_preferred = format!(
            "Extension {EXTENSION} already installed in {}. /usr/share/gnome-shell/extensions/{EXTENSION} will not be loaded",
            self.dir.join("home/.local/share/gnome-shell/extensions").join(EXTENSION).display()
        );
        log.unwrap_or_default()
            .lines()
            .filter(|l| marks.iter().any(|mark| l.contains(mark)) && !l.ends_with(&ours_preferred))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for GnomeShell<'_> {
    fn drop(&mut self) {
        let _ = self.world.procs.stop(self.pid);
    }
}

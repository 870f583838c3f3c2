//! The README's first command, `packaging/install.sh`, never dies silently: a step that fails
//! prints which step, which command (and its line) and what to do. Here with commands that
//! fail before anything is changed: no sudo for a user, an apt that cannot reach the archive
//! (a stand-in first in PATH). The whole script runs in a systemd container in `installed.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vmnet_tests::{require_root, workspace_root, NOBODY};

/// A fresh directory for one test's stand-ins; removed on Drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("vmnet-install-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        Scratch(dir)
    }

    /// An executable script `name` in the directory.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a stand-in");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn install_sh() -> PathBuf {
    workspace_root().join("packaging/install.sh")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_failing_apt_step_says_what_failed_and_what_to_do() {
    require_root!();
    let scratch = Scratch::new("apt");
    scratch.script("apt-get", "echo \"E: stand-in apt-get $*: cannot reach the archive\" >&2\nexit 100");
    let deb = scratch.0.join("vmnet_0.1.0_amd64.deb");
    fs::write(&deb, "not installed: apt-get is a stand-in").expect("write the package");
    let path = format!("{}:{}", scratch.0.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(install_sh())
        .arg("--deb")
        .arg(&deb)
        .env("PATH", path)
        .output()
        .expect("run install.sh");
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(100), "apt-get's status: {stderr}");
    let failed = format!("install.sh: FAILED while installing {} with apt: `", deb.display());
    assert!(stderr.contains(&failed), "{stderr}");
    assert!(stderr.contains("apt-get update -q` (line "), "the command that failed: {stderr}");
    assert!(stderr.contains("install.sh: what to do: see apt's message above"), "{stderr}");
}

#[test]
fn a_user_without_sudo_is_told_to_run_it_as_root_or_get_sudo() {
    require_root!();
    let scratch = Scratch::new("sudo");
    // Only what the script runs before it looks for sudo: no sudo in PATH.
    for tool in ["dirname", "id"] {
        let target =
            ["/usr/bin", "/bin"].map(|dir| Path::new(dir).join(tool)).into_iter().find(|p| p.exists());
        let target = target.unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(target, scratch.0.join(tool)).expect("symlink");
    }
    let nobody = NOBODY.to_string();
    let out = Command::new("/usr/bin/setpriv") // PATH below has no setpriv
        .args(["--reuid", &nobody, "--regid", &nobody, "--clear-groups", "--"])
        .arg("/bin/bash")
        .arg(install_sh())
        .env("PATH", &scratch.0)
        .output()
        .expect("run install.sh as nobody");
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("install.sh: FAILED while looking for sudo: `command -v sudo"), "{stderr}");
    let hint =
        "install.sh: what to do: run this script as root, or install sudo and allow yourself to use it";
    assert!(stderr.contains(hint), "{stderr}");
}

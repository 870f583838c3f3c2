//! vmnet-tray's command line: --version, and --autostart exits at once for a user who is not in
//! group vmnet (the XDG autostart entry runs it so). The tray itself is tested against a real
//! vmnetd and a StatusNotifierWatcher in tests/tests/tray.rs.

use std::process::Command;

const TRAY: &str = env!("CARGO_BIN_EXE_vmnet-tray");

#[test]
fn version_is_printed() {
    let out = Command::new(TRAY).arg("--version").output().expect("run vmnet-tray");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("vmnet-tray {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn autostart_does_nothing_for_a_user_outside_group_vmnet() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it runs vmnet-tray as nobody)");
    // No session bus at all: had it gone on, it would have failed.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", TRAY, "--autostart"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .expect("run vmnet-tray");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not a member of group vmnet"), "{stderr}");
}

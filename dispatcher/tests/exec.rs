//! The plugin as NetworkManager runs it: argv `[interface, action]`, exit 0 whatever happens,
//! one log line for the actions it handles, nothing for the others.

use std::process::Command;
use std::time::{Duration, Instant};

fn dispatch(interface: &str, action: &str, bus: &str) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_vmnet-dispatcher"))
        .args([interface, action])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .expect("run vmnet-dispatcher");
    (output, started.elapsed())
}

#[test]
fn other_actions_are_ignored_quietly() {
    for action in ["pre-up", "pre-down", "hostname", "vpn-up", "dhcp6-change", ""] {
        let (output, _) = dispatch("wlan0", action, "unix:path=/nonexistent/bus");
        assert!(output.status.success(), "{action}");
        assert!(output.stderr.is_empty() && output.stdout.is_empty(), "{action}: {output:?}");
    }
}

#[test]
fn handled_actions_exit_zero_and_log_one_line_without_a_bus() {
    for action in ["up", "down", "dhcp4-change", "reapply", "connectivity-change"] {
        let (output, elapsed) = dispatch("wlan0", action, "unix:path=/nonexistent/bus");
        assert!(output.status.success(), "{action}");
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(log.lines().count(), 1, "{action}: {log}");
        assert!(log.starts_with(&format!("vmnet-dispatcher: wlan0 {action}: vmnetd not resynced")), "{log}");
        assert!(elapsed < Duration::from_secs(2), "{action} took {elapsed:?}");
    }
    let (output, _) = dispatch("", "connectivity-change", "unix:path=/nonexistent/bus");
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("vmnet-dispatcher: - connectivity-change"));
}

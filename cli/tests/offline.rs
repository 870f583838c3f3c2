//! vmnetctl without vmnetd: help, completions, usage errors and an unreachable system bus.
//! (The commands against the real vmnetd are in `tests/tests/vmnetctl.rs`.)

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NO_BUS: &str = "unix:path=/nonexistent/vmnetctl-test-bus";

fn vmnetctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmnetctl"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
        .output()
        .expect("run vmnetctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_documents_commands_and_exit_statuses() {
    let out = vmnetctl(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["status", "list", "add", "remove", "watch", "qemu-args", "libvirt-xml", "completions"] {
        assert!(help.contains(&format!("  {word} ")), "{word} in:\n{help}");
    }
    assert!(help.contains("Exit status:") && help.contains("  69  "), "{help}");
    assert_eq!(
        text(&vmnetctl(&["--version"]).stdout).trim(),
        format!("vmnetctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef vmnetctl"), ("fish", "complete -c vmnetctl")]
    {
        let out = vmnetctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker) && script.contains("qemu-args"), "{shell}:\n{script}");
    }
    assert_eq!(vmnetctl(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["add"],
        &["add", "web", "--owner", "no-such-user-vmnetctl"],
        &["--timeout", "0", "status"],
    ] {
        let out = vmnetctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn an_unreachable_system_bus_fails_fast_with_69() {
    for args in [&["status"][..], &["list", "--json"], &["add", "web"], &["watch"], &["qemu-args", "web"]] {
        let started = Instant::now();
        let out = vmnetctl(args);
        assert_eq!(out.status.code(), Some(69), "{args:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", started.elapsed());
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("vmnetctl: cannot reach the system bus: "), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

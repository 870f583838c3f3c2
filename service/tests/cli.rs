//! vmnetd refuses a bad configuration at start, naming the key, before touching anything.

use std::process::Command;

fn vmnetd_with_config(text: &str, tag: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("vmnetd-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("vmnetd.toml");
    std::fs::write(&config, text).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_vmnetd"))
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/vmnet-test-bus")
        .output()
        .expect("run vmnetd");
    assert!(!dir.join("state").exists(), "nothing may be written for a refused config");
    std::fs::remove_dir_all(&dir).expect("clean up");
    output
}

#[test]
fn bad_configs_fail_at_start_naming_the_key() {
    let cases = [
        ("unknown", "[uplink]\nsource = \"kernel\"\ninterface = \"wlan0\"\nspeed = 3\n", "speed"),
        ("source", "[uplink]\nsource = \"wifi\"\n", "source"),
        ("missing-iface", "[uplink]\nsource = \"kernel\"\n", "uplink.interface"),
        (
            "pool",
            "[uplink]\nsource = \"kernel\"\ninterface = \"wlan0\"\n[pool]\nfirst = 9\nlast = 3\n",
            "pool.first",
        ),
    ];
    for (tag, text, key) in cases {
        let output = vmnetd_with_config(text, tag);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{tag}: {stderr}");
        assert!(stderr.contains(key), "{tag}: {stderr}");
    }
}

#[test]
fn missing_config_file_is_an_error_unless_it_is_the_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_vmnetd"))
        .args(["--config", "/nonexistent/vmnetd.toml"])
        .output()
        .expect("run vmnetd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/vmnetd.toml"), "{stderr}");
}

#[test]
fn help_and_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_vmnetd")).arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    let output = Command::new(env!("CARGO_BIN_EXE_vmnetd")).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--config") && help.contains("--state-dir"), "{help}");
}

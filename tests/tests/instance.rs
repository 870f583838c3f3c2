//! One vmnetd at a time: a second one, started by mistake with another state directory (or the
//! same), exits with a message naming the running one and changes nothing.

use std::process::Command;

use vmnet_tests::vmnetd::vmnetd_binary;
use vmnet_tests::{kernel_config, require_root, World};

/// Runs another vmnetd in the World's host netns, on its bus, and returns (status, stderr).
fn second_vmnetd(world: &World, config: &str, state_dir: &str) -> (Option<i32>, String) {
    let bin = vmnetd_binary().expect("vmnetd binary");
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", world.host_ns()])
        .arg(bin)
        .args(["--config", config, "--state-dir", state_dir])
        .env("DBUS_SYSTEM_BUS_ADDRESS", world.bus_address())
        .env("NO_COLOR", "1")
        .output()
        .expect("run a second vmnetd");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_second_vmnetd_changes_nothing_and_names_the_running_one() {
    require_root!();
    let world = World::new("instance");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[]).expect("AddGuest db");
    let before = world.kernel_state();
    let pid = vmnetd.pid().expect("pid");
    let config = vmnetd.config_path().to_string_lossy().into_owned();

    // Another state directory: it has no guests of its own, and would sweep these.
    let other = world.dir().join("other-state");
    let (status, stderr) = second_vmnetd(&world, &config, &other.to_string_lossy());
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("org.vmnet is already owned by process") && stderr.contains(&pid.to_string()),
        "{stderr}"
    );
    assert_eq!(world.kernel_state(), before, "every tap and route intact");

    // The same state directory: its lock names the running one.
    let (status, stderr) = second_vmnetd(&world, &config, &vmnetd.state_dir().to_string_lossy());
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("is in use by vmnetd pid {pid}")), "{stderr}");
    assert_eq!(world.kernel_state(), before);
    assert_eq!(client.list_guests().expect("ListGuests").len(), 2, "the running one still serves");
}

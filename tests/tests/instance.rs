//! One vmnetd at a time: a second one, started by mistake with another state directory (or the
//! same), exits with a message naming the running one and changes nothing. And what vmnetd
//! owns stays as it wants it: a tap deleted from outside comes back.

use std::process::Command;
use std::time::{Duration, Instant};

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

#[test]
fn a_tap_deleted_from_outside_is_recreated_and_served_again() {
    require_root!();
    let world = World::new("tapgone");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    let tap = client.guest_property("web", "Tap").unwrap();
    let before = world.ifindex(&tap);
    // Its owner (here root) deletes the tap.
    world.ip(world.host_ns(), &["link", "del", &tap]).expect("delete the tap");
    let started = Instant::now();
    let mut back = false;
    while !back && started.elapsed() < Duration::from_secs(1) {
        back = world.ip(world.host_ns(), &["-o", "link", "show", &tap]).is_ok_and(|l| l.contains(",UP"));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(back, "the tap is back within a second");
    eprintln!("[{}] tap recreated {:.3} s after its deletion", world.id(), started.elapsed().as_secs_f64());
    assert_ne!(world.ifindex(&tap), before, "a new tap");
    assert!(
        world.vmnet_routes().iter().any(|r| r.contains(&tap)),
        "with its route: {:?}",
        world.vmnet_routes()
    );
    let guest = world.dhcp_guest(&tap, &client.guest_property("web", "Mac").unwrap(), false);
    let lease = guest.wait_for_lease(Duration::from_secs(15)).expect("DHCP served on the new tap");
    assert_eq!(lease.cidr(), "198.51.100.200/24");
}

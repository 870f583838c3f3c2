//! What vmnetd does when the machine lets it down: a state directory that cannot be written
//! during a roam, the system bus going away, a socket it cannot open, a crash in the middle of
//! a guest's link flap. Never half alive: it either keeps working or exits non-zero (for
//! systemd to restart it), saying why, and a restart converges.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmnet_tests::vmnetd::{saved_state, vmnetd_binary};
use vmnet_tests::{kernel_config, require_root, Opt, Signal, World};

/// How long vmnetd may take to notice that something it needs is gone.
const NOTICE: Duration = Duration::from_secs(5);

/// `chattr +i` on a directory and its files (even root cannot create files in it, or write to
/// them), undone on Drop.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        let files = ["state.json", "journal.jsonl"].map(|file| dir.join(file));
        let paths: Vec<PathBuf> = std::iter::once(dir.to_path_buf()).chain(files).collect();
        let status = Command::new("chattr").arg("+i").args(&paths).status().expect("chattr");
        assert!(status.success(), "chattr +i {paths:?}");
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

fn last_subnet(state_dir: &Path) -> String {
    let state = saved_state(state_dir).expect("the saved state");
    state["last_subnet"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_roam_with_an_unwritable_state_directory_moves_the_guests_and_saves_later() {
    require_root!();
    let world = World::new("readonly");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest web");
    let state_dir = vmnetd.state_dir().to_path_buf();
    assert_eq!(last_subnet(&state_dir), "198.51.100.0/24");

    let immutable = Immutable::set(&state_dir);
    // A change asked for over D-Bus is refused, and changes nothing.
    let refused = client.add_guest("db", &[]).expect_err("AddGuest with no state file to write");
    assert!(format!("{refused:?}").contains("cannot save state"), "{refused:?}");
    assert_eq!(client.list_guests().unwrap().len(), 1);
    // The uplink moves: the guests follow all the same.
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("move uplink");
    assert!(world.wait_for_property(&client, "Subnet", "203.0.113.0/24"));
    let moved = vec!["203.0.113.200 dev vmt-web scope link linkdown".to_owned()];
    assert_eq!(world.settled(World::vmnet_routes, &moved), moved);
    let problems = client.manager_property("Problems").unwrap();
    assert!(problems.contains("cannot save state"), "Problems: {problems:?}");
    assert_eq!(last_subnet(&state_dir), "198.51.100.0/24", "not written yet");

    // Writable again: the retry (1 s, then doubling) saves the new state.
    drop(immutable);
    let started = Instant::now();
    while last_subnet(&state_dir) != "203.0.113.0/24" {
        assert!(started.elapsed() < Duration::from_secs(10), "the state was never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(world.wait_for_property(&client, "Problems", ""), "no problem left");
}

#[test]
fn vmnetd_on_the_kernel_source_exits_non_zero_when_the_system_bus_goes_away() {
    require_root!();
    let world = World::new("busgone");
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    world.client().add_guest("web", &[]).expect("AddGuest");
    world.stop_bus().expect("stop the dbus-daemon");
    let status = vmnetd.wait_for_exit(NOTICE).expect("vmnetd exits when its bus is gone");
    assert_eq!(status.code(), Some(1), "{}", vmnetd.log());
    assert!(vmnetd.log().contains("the system bus connection closed"), "{}", vmnetd.log());
}

#[test]
fn vmnetd_exits_non_zero_when_it_cannot_listen_for_stale_dhcp_requests() {
    require_root!();
    let world = World::new("nostale");
    let config = world.dir().join("vmnetd.toml");
    std::fs::write(&config, kernel_config(&world, "")).expect("write the config");
    // Without CAP_NET_RAW no packet socket opens: the stale-request listener cannot start.
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", world.host_ns(), "setpriv", "--bounding-set", "-net_raw", "--"])
        .arg(vmnetd_binary().expect("vmnetd binary"))
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(world.dir().join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", world.bus_address())
        .env("NO_COLOR", "1")
        .output()
        .expect("run vmnetd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exits by itself, non-zero: {stderr}");
    assert!(
        stderr.contains("the DHCP server stopped: cannot listen for DHCP requests from stale addresses"),
        "{stderr}"
    );
}

#[test]
fn a_link_left_down_by_a_flap_cut_short_by_a_crash_comes_back_up_when_vmnetd_restarts() {
    require_root!();
    let world = World::new("flapcut");
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    // The netns guest's QMP socket is g<n>.qmp in the World's directory; this is its first guest.
    let qmp = world.dir().join("g0.qmp");
    client.add_guest("web", &[("qmp", Opt::Str(&qmp.to_string_lossy()))]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.dhcp_guest(&tap, &client.guest_property("web", "Mac").unwrap(), true);
    assert_eq!(guest.wait_for_lease(NOTICE * 3).expect("lease").cidr(), "198.51.100.200/24");

    // A roam flaps the guest's link; vmnetd dies while the link is down (a 300 ms window).
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    guest.wait_for_event("link down", NOTICE).expect("vmnetd took the guest's link down");
    vmnetd.kill(Signal::SIGKILL).expect("kill vmnetd");
    assert!(
        guest.wait_for_event("link up", Duration::from_secs(1)).is_err(),
        "the flap finished before vmnetd was killed: the test proves nothing"
    );

    vmnetd.restart().expect("restart vmnetd");
    guest.wait_for_event("link up", NOTICE).expect("the restarted vmnetd set the link up");
    let lease = guest.wait_for_lease(NOTICE * 3).expect("a lease once the link is back");
    assert_eq!(lease.cidr(), "203.0.113.200/24");
}

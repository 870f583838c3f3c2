//! What vmnetd does when the machine lets it down: here, a state directory that cannot be
//! written during a roam.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmnet_tests::vmnetd::saved_state;
use vmnet_tests::{kernel_config, require_root, World};

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

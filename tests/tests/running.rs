//! `Guest1.Running`: true while something holds the guest's tap (its carrier), announced by
//! PropertiesChanged, from vmnetd's own rtnetlink link watch.

use std::time::Duration;

use vmnet_tests::{kernel_config, require_root, World};

#[test]
fn running_follows_whoever_holds_the_tap() {
    require_root!();
    let world = World::new("running");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).unwrap();
    assert_eq!(client.guest_property("web", "Running").unwrap(), "false");

    let mut changes = client.watch_running("web").unwrap();
    let guest = world.add_guest("vmt-web", "");
    assert_eq!(changes.next(Duration::from_secs(5)), Some(true), "no PropertiesChanged(Running=true)");
    assert_eq!(client.guest_property("web", "Running").unwrap(), "true");

    guest.stop_relay().unwrap();
    assert_eq!(changes.next(Duration::from_secs(5)), Some(false), "no PropertiesChanged(Running=false)");
    assert_eq!(client.guest_property("web", "Running").unwrap(), "false");
    // Held again: true again.
    let _again = world.add_guest("vmt-web", "");
    assert_eq!(changes.next(Duration::from_secs(5)), Some(true));
    client.remove_guest("web").unwrap();
}

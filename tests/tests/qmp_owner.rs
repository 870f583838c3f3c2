//! vmnetd drives a guest's QEMU over QMP only when the socket's peer runs as exactly the
//! guest's owner: a root QEMU (here tapguest's QMP, which answers like QEMU 7.2 and runs as
//! root) is driven for root's guest and not for another user's.

use std::time::Duration;

use vmnet_tests::{kernel_config, require_root, Opt, World};

#[test]
fn a_root_qemu_is_flapped_for_roots_guest_but_not_for_another_users() {
    require_root!();
    let world = World::new("qmpown");
    let vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    // The netns guests' QMP sockets are g<n>.qmp in the World's directory, in order.
    let socket = |n: u32| world.dir().join(format!("g{n}.qmp")).to_string_lossy().into_owned();
    let tester = world.tester_uid();
    let (mine, theirs) = (socket(0), socket(1));
    client.add_guest("mine", &[("qmp", Opt::Str(&mine))]).expect("AddGuest for root");
    client.add_guest("theirs", &[("qmp", Opt::Str(&theirs)), ("owner", Opt::U32(tester))]).expect("AddGuest");
    let guest = |name: &str| {
        let tap = client.guest_property(name, "Tap").unwrap();
        world.add_guest(&tap, &client.guest_property(name, "Mac").unwrap())
    };
    let (root_guest, tester_guest) = (guest("mine"), guest("theirs"));

    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    assert!(world.wait_for_property(&client, "Subnet", "203.0.113.0/24"));
    root_guest.wait_for_event("link down", Duration::from_secs(5)).expect("root's guest flapped");
    let refused = format!("served by uid 0, not by the guest's owner {tester}");
    let logged = eventually(|| vmnetd.log().contains(&refused));
    assert!(logged, "no refusal logged: {}", vmnetd.log());
    assert!(
        tester_guest.wait_for_event("link down", Duration::from_secs(1)).is_err(),
        "a root QEMU was driven for another user's guest"
    );
}

/// Polls `check` for up to 5 s.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

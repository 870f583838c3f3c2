//! vmnet-tray against a real vmnetd on the World's system bus (real polkitd) and a
//! StatusNotifierWatcher on a private session bus: it registers, its dbusmenu lists the guests
//! and follows vmnetd live, and "Remove" removes a guest for an allowed user only.

use std::time::Duration;

use vmnet_tests::tray::MenuNode;
use vmnet_tests::{kernel_config, require_root, Opt, World, NOBODY};

fn labels(layout: &MenuNode) -> Vec<String> {
    layout.flatten().iter().skip(1).map(|n| n.label.clone()).filter(|l| !l.is_empty()).collect()
}

fn entry<'a>(layout: &'a MenuNode, label: &str) -> &'a MenuNode {
    let all = layout.flatten();
    all.into_iter().find(|n| n.label == label).unwrap_or_else(|| panic!("no entry {label:?} in {layout:#?}"))
}

/// The "Remove" entry below the guest row that starts with `name`.
fn remove_of<'a>(layout: &'a MenuNode, name: &str) -> &'a MenuNode {
    let row = layout.children.iter().find(|n| n.label.starts_with(&format!("{name} · "))).expect("guest row");
    row.children.iter().find(|n| n.label == "Remove").expect("Remove")
}

#[test]
fn tray_lists_guests_live_and_removes_for_a_member_of_group_vmnet() {
    require_root!();
    let world = World::new("tray");
    world.polkit().install_example_rules().unwrap();
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let mut tray = world.tray_test(world.tester_uid()).unwrap();
    tray.start_tray().unwrap();
    let item = tray.wait_for_item(Duration::from_secs(10)).unwrap();
    assert_eq!(tray.item_property(&item, "Title").unwrap(), "Virtual machines");
    assert_eq!(tray.item_property(&item, "Status").unwrap(), "Active");
    let layout = tray.layout(&item).unwrap();
    let shown = labels(&layout);
    assert_eq!(shown[..2], ["Online: 198.51.100.0/24, gateway 198.51.100.10", "No virtual machines"]);
    // "Add guest… (needs zenity or kdialog)" on a machine without either.
    assert!(shown.len() == 3 && shown[2].starts_with("Add guest…"), "{shown:?}");

    // Live: a guest added by someone else appears, then shows that it runs.
    let owner = Opt::U32(world.tester_uid());
    client.add_guest("web", &[("owner", owner)]).unwrap();
    tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).contains(&"web · 198.51.100.200 · active".to_owned())
    });
    let guest = world.add_guest("vmt-web", "");
    let layout = tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).contains(&"web · 198.51.100.200 · active · running".to_owned())
    });
    let row = entry(&layout, "web · 198.51.100.200 · active · running");
    let actions: Vec<(&str, bool)> = row.children.iter().map(|n| (n.label.as_str(), n.enabled)).collect();
    assert_eq!(actions, [("Copy address", true), ("Copy QEMU arguments", true), ("Remove", true)]);
    // A re-home moves the address in the menu and posts a notification.
    world.move_uplink("203.0.113.10/24", "203.0.113.1").unwrap();
    tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).contains(&"web · 203.0.113.200 · active · running".to_owned())
    });
    let moved = tray.notifications();
    assert_eq!(
        moved,
        [(
            "Guests moved to 203.0.113.0/24".to_owned(),
            "From 198.51.100.0/24: 1 guest got addresses in the new subnet.".to_owned()
        )]
    );
    guest.stop_relay().unwrap();

    // "Remove" clicked: vmnetd removes the guest (the tray's user is in group vmnet).
    let layout = tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).contains(&"web · 203.0.113.200 · active".to_owned())
    });
    tray.click(&item, remove_of(&layout, "web").id).unwrap();
    tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).contains(&"No virtual machines".to_owned())
    });
    assert!(client.list_guests().unwrap().is_empty());

    // vmnetd stops: "not running", the item turns passive.
    vmnetd.kill(vmnet_tests::Signal::SIGTERM).unwrap();
    tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).first().map(String::as_str) == Some("vmnetd is not running")
    });
    assert_eq!(tray.item_property(&item, "Status").unwrap(), "Passive");
}

#[test]
fn tray_remove_changes_nothing_for_a_user_who_is_not_allowed() {
    require_root!();
    let world = World::new("trayno");
    world.polkit().install_example_rules().unwrap();
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).unwrap();
    let mut tray = world.tray_test(NOBODY).unwrap();
    tray.start_tray().unwrap();
    let item = tray.wait_for_item(Duration::from_secs(10)).unwrap();
    let layout = tray.wait_for_layout(&item, Duration::from_secs(5), |l| !l.children.is_empty());
    assert!(
        labels(&layout).contains(&"You are not allowed to manage virtual machines".to_owned()),
        "{layout:#?}"
    );
    let remove = remove_of(&layout, "web");
    assert!(!remove.enabled, "Remove is insensitive when polkit says no");
    // A host that sends the click anyway: vmnetd refuses, nothing changes, the menu says so.
    tray.click(&item, remove.id).unwrap();
    tray.wait_for_layout(&item, Duration::from_secs(5), |l| {
        labels(l).iter().any(|label| label.starts_with("Cannot remove web: not allowed"))
    });
    assert_eq!(client.list_guests().unwrap().len(), 1);
    let posted = tray.notifications();
    assert!(
        posted.iter().any(|(summary, _)| summary.starts_with("Cannot remove web: not allowed")),
        "{posted:?}"
    );
}

//! vmnet's GNOME Shell extension in a real headless GNOME Shell, run as a test user, against a
//! real vmnetd on the World's system bus with a real polkitd: the menu follows vmnetd live, a
//! re-home posts a notification, "Remove" works for a member of group vmnet and is refused
//! (and says so) for a user who is not allowed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmnet_tests::shell::{ENABLED, EXTENSION};
use vmnet_tests::{kernel_config, require_root, GnomeShell, Signal, World, NOBODY};

use vmnet_tests::shell::TOGGLE;

fn menu(shell: &GnomeShell<'_>) -> Value {
    shell.vmnet_menu().expect("menu")
}

fn summaries(menu: &Value) -> Vec<String> {
    let guests = menu["guests"].as_array().cloned().unwrap_or_default();
    guests.iter().map(|g| g["summary"].as_str().unwrap_or("").to_owned()).collect()
}

/// Polls the menu until `wanted` holds; the menu and how long it took, or a panic after `timeout`.
#[track_caller]
fn wait_for_menu(
    shell: &GnomeShell<'_>,
    timeout: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let now = menu(shell);
        if wanted(&now) {
            return (now, start.elapsed());
        }
        assert!(start.elapsed() < timeout, "the menu did not change as expected within {timeout:?}: {now}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Activates a menu item of the guest row `name` as a click would ("copyAddress", "remove", or
/// the sub-menu's items by label).
fn activate(shell: &GnomeShell<'_>, name: &str, item: &str) {
    let js = format!(
        "(() => {{ const i = [...{TOGGLE}._guestItems.values()].find(i => i.vmnetGuest.name === '{name}');
            const item = i['{item}'] ?? i.menu._getMenuItems().find(m => m.label?.text === '{item}');
            item.activate(vmnetTest.Clutter.get_current_event()); return true; }})()"
    );
    shell.eval(&js).expect("activate");
}

/// The clipboard's text (read asynchronously by the shell, then fetched).
fn clipboard(shell: &GnomeShell<'_>) -> String {
    shell
        .eval(
            "(() => { vmnetTest.clip = null; vmnetTest.St.Clipboard.get_default().get_text(\
             vmnetTest.St.ClipboardType.CLIPBOARD, (c, text) => { vmnetTest.clip = text; }); return true; })()",
        )
        .expect("clipboard");
    let start = Instant::now();
    loop {
        if let Some(text) = shell.eval("vmnetTest.clip").expect("clip").as_str() {
            return text.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(2), "the clipboard did not answer");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn open_menu(shell: &GnomeShell<'_>) {
    shell.open_vmnet_menu().expect("open the menu");
}

fn notifications(shell: &GnomeShell<'_>) -> Vec<(String, String)> {
    let list = shell.eval("vmnetTest.notifications").expect("notifications");
    let list = list.as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|n| (n["title"].as_str().unwrap_or("").to_owned(), n["body"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// `target/screenshots/NAME`, for looking at after the test (CI keeps the workspace).
fn screenshot_path(name: &str) -> PathBuf {
    let dir = vmnet_tests::workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir.join(name)
}

fn started_shell(world: &World, uid: u32) -> GnomeShell<'_> {
    let shell = world.start_gnome_shell(uid).unwrap();
    eprintln!("gnome-shell answered {:.2} s after its start", shell.startup.as_secs_f64());
    let (state, error) = shell.wait_for_extensions().unwrap();
    assert_eq!(state, ENABLED, "{EXTENSION}: {error}; {}", shell.log_tail());
    shell
}

#[test]
fn extension_follows_vmnetd_live_and_removes_for_a_member_of_group_vmnet() {
    require_root!();
    let world = World::new("gshell");
    world.polkit().install_example_rules().unwrap();
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let tester = world.tester_uid();
    let shell = started_shell(&world, tester);
    open_menu(&shell);
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| {
        m["status"].as_str().is_some_and(|s| s.starts_with("Online"))
    });
    assert_eq!(now["status"], "Online: 198.51.100.0/24, gateway 198.51.100.10");
    assert_eq!(
        (&now["empty"], &now["add"], &now["message"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::from(""))
    );

    // A guest added with vmnetctl appears at once (PropertiesChanged/InterfacesAdded, no polling).
    let added = world.vmnetctl_as(Some(tester), &["add", "web", "--no-ask-password"]).unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // The goal is 1 s; it is measured and printed, not asserted (a loaded machine is slower:
    // each look through Eval costs a busctl process). Measured: 0.1-0.2 s alone, up to 0.65 s
    // beside the whole suite.
    let (now, took) = wait_for_menu(&shell, Duration::from_secs(5), |m| !summaries(m).is_empty());
    eprintln!(
        "the guest appeared in the menu {:.0} ms after vmnetctl add returned",
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(summaries(&now), ["web · 198.51.100.200 · active"]);
    assert_eq!(now["guests"][0]["remove"], true);
    assert_eq!(now["empty"], false);

    // Running follows whoever holds the tap.
    let guest = world.add_guest("vmt-web", "");
    wait_for_menu(&shell, Duration::from_secs(5), |m| {
        summaries(m) == ["web · 198.51.100.200 · active · running"]
    });

    // Copy its address and its QEMU arguments: the same text as vmnetctl's.
    activate(&shell, "web", "copyAddress");
    assert_eq!(clipboard(&shell), "198.51.100.200");
    activate(&shell, "web", "Copy QEMU arguments");
    let qemu_args = world.vmnetctl_as(Some(tester), &["qemu-args", "web"]).unwrap();
    assert_eq!(clipboard(&shell), String::from_utf8_lossy(&qemu_args.stdout).trim_end());

    // The open menu with the guest's actions, for people (README's screenshot is one of these);
    // without the banner of the shell's "unsafe mode" notification.
    open_menu(&shell);
    let js = format!(
        "(() => {{ vmnetTest.Main.messageTray.bannerBlocked = true;
            [...{TOGGLE}._guestItems.values()][0].setSubmenuShown(true); return true; }})()"
    );
    shell.eval(&js).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let picture = screenshot_path("gnome-shell-menu.png");
    shell.screenshot(&picture).unwrap();
    assert!(std::fs::metadata(&picture).unwrap().len() > 10_000, "an empty screenshot");

    // A re-home: the new address shows and a notification tells it.
    world.move_uplink("203.0.113.10/24", "203.0.113.1").unwrap();
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| {
        summaries(m) == ["web · 203.0.113.200 · active · running"]
    });
    assert_eq!(now["status"], "Online: 203.0.113.0/24, gateway 203.0.113.10");
    // (The shell posts its own, e.g. "Screen Lock disabled" without a display manager.)
    let moved = || -> Vec<(String, String)> {
        notifications(&shell).into_iter().filter(|(title, _)| title.starts_with("Guests moved")).collect()
    };
    let start = Instant::now();
    while moved().is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let posted = moved();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0].0, "Guests moved to 203.0.113.0/24");
    assert!(posted[0].1.starts_with("From 198.51.100.0/24: 1 guest"), "{posted:?}");

    // "Add guest…" asks for a name; the guest is added for the shell's user.
    let js = format!(
        "(() => {{ {TOGGLE}._addItem.activate(vmnetTest.Clutter.get_current_event()); return true; }})()"
    );
    shell.eval(&js).unwrap();
    let js = format!(
        "(() => {{ const d = {TOGGLE}._addDialog; d._entry.set_text('db'); d._add(); return true; }})()"
    );
    shell.eval(&js).unwrap();
    wait_for_menu(&shell, Duration::from_secs(5), |m| summaries(m).len() == 2);
    let added = client.list_guests().unwrap();
    assert_eq!(added.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["db", "web"]);
    assert_eq!(client.guest_property("db", "Owner").unwrap(), tester.to_string());
    let closed = || shell.eval(&format!("{TOGGLE}._addDialog === null")).unwrap() == true;
    let start = Instant::now();
    while !closed() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closed(), "the dialog closes after adding");
    client.remove_guest("db").unwrap();

    // "Remove" as a member of group vmnet: gone from vmnetd and from the menu.
    guest.stop_relay().unwrap();
    activate(&shell, "web", "remove");
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| summaries(m).is_empty());
    assert!(client.list_guests().unwrap().is_empty());
    assert_eq!((&now["empty"], &now["message"]), (&Value::Bool(true), &Value::from("")));

    // vmnetd stopped: "not running".
    vmnetd.kill(Signal::SIGTERM).unwrap();
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| m["status"] == "vmnetd is not running");
    assert_eq!((&now["add"], &now["empty"]), (&Value::Bool(false), &Value::Bool(false)));
    // Opening the menu tries to D-Bus-activate it; this test bus has no activation file for it
    // (tests/tests/installed.rs shows the activation with the installed one).
    open_menu(&shell);
    wait_for_menu(&shell, Duration::from_secs(5), |m| {
        m["message"].as_str().is_some_and(|s| s.starts_with("vmnetd cannot be started: "))
    });

    // Disabled, it leaves nothing connected: vmnetd coming back goes unnoticed, without errors;
    // enabled again, it shows vmnetd online.
    let extensions = ["org.gnome.Shell", "/org/gnome/Shell", "org.gnome.Shell.Extensions"];
    shell.call(&[&extensions[..], &["DisableExtension", "s", EXTENSION]].concat()).unwrap();
    vmnetd.restart().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    shell.call(&[&extensions[..], &["EnableExtension", "s", EXTENSION]].concat()).unwrap();
    wait_for_menu(&shell, Duration::from_secs(5), |m| {
        m["status"] == "Online: 203.0.113.0/24, gateway 203.0.113.10"
    });
    let errors = shell.extension_errors();
    assert!(errors.is_empty(), "the shell logged errors: {errors:#?}");
}

#[test]
fn extension_refuses_and_says_so_for_a_user_who_is_not_allowed() {
    require_root!();
    let world = World::new("gshellno");
    world.polkit().install_example_rules().unwrap();
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).unwrap();
    let shell = started_shell(&world, NOBODY);
    open_menu(&shell);
    // polkit says no to this user: the controls are insensitive and the menu says why.
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| m["guests"][0]["remove"] == false);
    assert_eq!(summaries(&now), ["web · 198.51.100.200 · active"]);
    assert_eq!(now["message"], "You are not allowed to manage virtual machines");
    assert_eq!(now["add"], false);
    // Even when "Remove" is activated, vmnetd refuses, nothing changes, and the menu says so.
    activate(&shell, "web", "remove");
    let (now, _) = wait_for_menu(&shell, Duration::from_secs(5), |m| {
        m["message"].as_str().is_some_and(|s| s.starts_with("Cannot remove web: not allowed"))
    });
    assert_eq!(summaries(&now), ["web · 198.51.100.200 · active"]);
    assert_eq!(client.list_guests().unwrap().len(), 1);
    let errors = shell.extension_errors();
    assert!(errors.is_empty(), "the shell logged errors: {errors:#?}");
}

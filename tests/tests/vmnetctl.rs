//! vmnetctl against the real vmnetd on the World's bus: its tables and JSON, the QEMU and
//! libvirt snippets of a real guest, plain errors with meaningful exit statuses (as root, as a
//! member of group vmnet, as nobody), D-Bus activation by `status`, and `watch`.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmnet_tests::{kernel_config, require_root, Opt, Signal, World, NOBODY};

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// vmnetctl as root; panics unless it succeeds. Returns stdout.
fn ok(world: &World, args: &[&str]) -> String {
    let out = world.vmnetctl_as(None, args).expect("run vmnetctl");
    assert!(out.status.success(), "vmnetctl {args:?} failed ({}): {}", out.status, stderr(&out));
    stdout(&out)
}

fn ok_json(world: &World, args: &[&str]) -> Value {
    let text = ok(world, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vmnetctl {args:?}: not JSON ({e}): {text}"))
}

/// vmnetctl as `uid`; asserts the exit status and that nothing went to stdout. Returns stderr.
fn fails(world: &World, uid: Option<u32>, args: &[&str], status: i32) -> String {
    let out = world.vmnetctl_as(uid, args).expect("run vmnetctl");
    assert_eq!(out.status.code(), Some(status), "vmnetctl {args:?}: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "vmnetctl {args:?} printed {}", stdout(&out));
    stderr(&out)
}

#[test]
fn vmnetctl_status_list_add_remove_and_snippets_for_people_and_scripts() {
    require_root!();
    let world = World::new("ctlround");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let version = client.manager_property("Version").unwrap();

    let status = ok(&world, &["status"]);
    let expected = format!(
        "State:        online\nUplink:       wlan0\nHost address: 198.51.100.10 (the guests' gateway)\n\
         Subnet:       198.51.100.0/24\nGateway:      198.51.100.1\nNameservers:  198.51.100.1\n\
         Guests:       0\nVersion:      {version}\n"
    );
    assert_eq!(status, expected);
    assert_eq!(ok(&world, &["list"]), "No guests. Add one with: vmnetctl add NAME\n");
    assert_eq!(ok_json(&world, &["list", "--json"]), json!([]));

    // Added for people: where the guest is and how to start it.
    let added = ok(&world, &["add", "web"]);
    assert!(added.starts_with("Added guest web.\n  Tap:     vmt-web (owned by root)\n"), "{added}");
    assert!(
        added.contains("  Address: 198.51.100.200/24\n  Gateway: 198.51.100.10\n  DNS:     198.51.100.1\n")
    );
    assert!(added.contains("$(vmnetctl qemu-args web)"), "{added}");
    // Added for scripts, with every option; a relative QMP path is taken from the cwd.
    let cwd = std::env::current_dir().expect("cwd");
    let qmp = cwd.join("db.qmp").to_string_lossy().into_owned();
    let args = [
        "add",
        "db",
        "--json",
        "--mac",
        "52:54:00:12:34:56",
        "--address",
        "198.51.100.77",
        "--owner",
        "nobody",
    ];
    let out = world.vmnetctl_as(None, &[&args[..], &["--qmp", "db.qmp"]].concat()).expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    // (A warning follows when the checkout is under /tmp.)
    assert!(stderr(&out).starts_with(&format!("vmnetctl: QMP socket taken as {qmp}\n")), "{}", stderr(&out));
    let db = json!({"name": "db", "tap": "vmt-db", "mac": "52:54:00:12:34:56", "address": "198.51.100.77",
                    "state": "active", "state_reason": "", "owner": NOBODY, "qmp": qmp, "running": false,
                    "addresses6": []});
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).expect("JSON"), db);
    assert_eq!(client.guest_property("db", "Owner").unwrap(), NOBODY.to_string());
    assert_eq!(world.tap_owner("vmt-db"), i64::from(NOBODY));

    // list: a table sorted by name, and the same guests as JSON.
    let web_mac = client.guest_property("web", "Mac").unwrap();
    let table = ok(&world, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "NAME  TAP      MAC                ADDRESS         STATE   RUNNING  OWNER",
        "{table}"
    );
    let cells = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        cells(lines[1]),
        ["db", "vmt-db", "52:54:00:12:34:56", "198.51.100.77", "active", "no", "nobody"]
    );
    assert_eq!(cells(lines[2]), ["web", "vmt-web", &web_mac, "198.51.100.200", "active", "no", "root"]);
    assert_eq!(lines.len(), 3);
    let listed = ok_json(&world, &["ls", "--json"]);
    assert_eq!(listed[0], db);
    assert_eq!(listed[1]["name"], "web");
    assert_eq!(listed[1]["owner"], 0);
    let status = ok_json(&world, &["status", "--json"]);
    assert_eq!(status["guests"], json!({"total": 2, "active": 2, "offline": 0, "conflict": 0}));
    assert_eq!((&status["state"], &status["subnet"]), (&json!("online"), &json!("198.51.100.0/24")));
    assert_eq!(status["nameservers"], json!(["198.51.100.1"]));
    assert_eq!(status["version"], json!(version));
    assert!(ok(&world, &["status"]).contains("\nGuests:       2 (2 active)\n"));

    // QEMU and libvirt snippets of the real guests.
    assert_eq!(
        ok(&world, &["qemu-args", "web"]),
        format!(
            "-netdev tap,id=vmnet,ifname=vmt-web,script=no,downscript=no \
             -device virtio-net-pci,netdev=vmnet,mac={web_mac}\n"
        )
    );
    assert_eq!(
        ok_json(&world, &["qemu-args", "db", "--json"]),
        json!([
            "-netdev",
            "tap,id=vmnet,ifname=vmt-db,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=vmnet,mac=52:54:00:12:34:56",
            "-qmp",
            format!("unix:{qmp},server=on,wait=off")
        ])
    );
    assert_eq!(
        ok(&world, &["libvirt-xml", "web"]),
        format!(
            "<interface type='ethernet'>\n  <mac address='{web_mac}'/>\n  \
             <target dev='vmt-web' managed='no'/>\n  <model type='virtio'/>\n</interface>\n"
        )
    );
    let out = world.vmnetctl_as(None, &["libvirt-xml", "db"]).expect("run");
    assert!(out.status.success() && stderr(&out).contains("libvirt keeps its own QMP monitor"), "{out:?}");

    // remove, for people and for scripts; the kernel state goes with it.
    assert_eq!(ok(&world, &["remove", "web"]), "Removed guest web.\n");
    assert_eq!(ok_json(&world, &["rm", "db", "--json"]), json!({"removed": "db"}));
    assert!(client.list_guests().unwrap().is_empty());
    assert!(world.taps().is_empty(), "{:?}", world.taps());
}

#[test]
fn vmnetctl_errors_are_plain_with_meaningful_exit_statuses_and_change_nothing() {
    require_root!();
    let world = World::new("ctlerrors");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[("mac", Opt::Str("52:54:00:00:00:01"))]).expect("AddGuest");
    let baseline = (world.kernel_state(), client.list_guests().unwrap());

    // 4: no such guest.
    for args in [&["remove", "nope"][..], &["qemu-args", "nope"], &["libvirt-xml", "nope"]] {
        assert_eq!(fails(&world, None, args, 4), "vmnetctl: no guest named \"nope\"\n", "{args:?}");
    }
    // 1: refused by vmnetd, with its message.
    let invalid = fails(&world, None, &["add", "--", "-bad"], 1);
    assert!(invalid.starts_with("vmnetctl: guest name \"-bad\" is not allowed: "), "{invalid}");
    assert!(fails(&world, None, &["remove", "bad name"], 1).contains("is not allowed"));
    assert_eq!(fails(&world, None, &["add", "web"], 1), "vmnetctl: a guest named \"web\" already exists\n");
    assert!(fails(&world, None, &["add", "db", "--mac", "52:54:00:00:00:01"], 1).contains("used by guest"));
    assert!(fails(&world, None, &["add", "db", "--mac", "01:00:5e:00:00:01"], 1).contains("unicast"));
    assert!(fails(&world, None, &["add", "db", "--address", "203.0.113.5", "--json"], 1)
        .starts_with("vmnetctl: "));
    // 2: usage, before anything is sent.
    assert!(fails(&world, None, &["add", "db", "--owner", "no-such-user-vmnet"], 2).contains("no user named"));
    // 3: polkit refuses nobody, for adding and for removing; reading stays open.
    for args in [&["add", "db"][..], &["remove", "web"]] {
        let refused = fails(&world, Some(NOBODY), args, 3);
        assert!(refused.starts_with("vmnetctl: not authorized: "), "{args:?}: {refused}");
    }
    let out = world.vmnetctl_as(Some(NOBODY), &["list", "--json"]).expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((world.kernel_state(), client.list_guests().unwrap()), baseline, "an error changed something");

    // A member of group vmnet may, through the example rule, and owns the guest.
    world.polkit().install_example_rules().expect("rules");
    let tester = world.tester_uid();
    let out = world.vmnetctl_as(Some(tester), &["add", "mine", "--json"]).expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let added: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(added["owner"], tester);
    // ...but not for another user, nor remove root's guest.
    let owner = tester.to_string();
    assert!(fails(&world, Some(tester), &["add", "theirs", "--owner", "0"], 3).contains("not authorized"));
    assert!(fails(&world, Some(tester), &["remove", "web"], 3).contains("not authorized"));
    assert!(fails(&world, Some(tester), &["add", "x", "--owner", &owner, "--address", "198.51.100.1"], 1)
        .starts_with("vmnetctl: "));
    let out = world.vmnetctl_as(Some(tester), &["remove", "mine"]).expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((world.kernel_state(), client.list_guests().unwrap()), baseline);
}

#[test]
fn vmnetctl_unreachable_vmnetd_is_69_and_status_activates_it() {
    require_root!();
    let world = World::new("ctlactivate");
    // Not running, not activatable: a fast, plain failure.
    let started = Instant::now();
    let unreachable = fails(&world, None, &["status"], 69);
    assert!(unreachable.starts_with("vmnetctl: cannot reach vmnetd on the system bus: "), "{unreachable}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    fails(&world, None, &["add", "web"], 69);
    fails(&world, Some(NOBODY), &["list"], 69);

    // Activatable: `status` starts vmnetd through the bus, in the World's host netns.
    let config = world.dir().join("vmnetd.toml");
    std::fs::write(&config, kernel_config(&world, "")).expect("config");
    let state = world.dir().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let vmnetd = vmnet_tests::vmnetd::vmnetd_binary().expect("vmnetd binary");
    let service = format!(
        "[D-BUS Service]\nName=org.vmnet\nUser=root\nExec=/usr/bin/env DBUS_SYSTEM_BUS_ADDRESS={} \
         /usr/bin/ip netns exec {} {} --config {} --state-dir {}\n",
        world.bus_address(),
        world.host_ns(),
        vmnetd.display(),
        config.display(),
        state.display()
    );
    std::fs::write(world.bus().service_dir().join("org.vmnet.service"), service).expect("service file");
    assert!(!world.bus().has_owner("org.vmnet"));
    let status = ok(&world, &["status"]);
    assert!(status.starts_with("State:        online\n"), "{status}");
    assert!(world.bus().has_owner("org.vmnet"), "status activated vmnetd");
}

#[test]
fn vmnetctl_watch_reports_guests_rehomes_and_restarts() {
    require_root!();
    let world = World::new("ctlwatch");
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let mut json_watch = world.spawn_vmnetctl("json", &["watch", "--json"]).expect("watch --json");
    let mut text_watch = world.spawn_vmnetctl("text", &["watch"]).expect("watch");
    let event = |line: &str| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let first = event(&json_watch.next_line(EVENT_TIMEOUT).expect("first event"));
    assert_eq!((&first["event"], &first["vmnetd_running"]), (&json!("watching"), &json!(true)));
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    let first = text_watch.next_line(EVENT_TIMEOUT).expect("first line");
    let (date, rest) = first.split_at(24);
    assert!(date.len() == 24 && date.as_bytes()[10] == b' ' && date.as_bytes()[19] == b'.', "{first}");
    assert_eq!(rest, "watching vmnetd (running); Ctrl-C stops");

    // A signal that does not come from vmnetd is no event.
    let fake = ["emit", "/org/vmnet", "org.vmnet.Manager1", "Rehomed", "ss", "10.0.0.0/8", "10.1.0.0/16"];
    assert!(world.busctl_as(None, &fake).expect("busctl emit").status.success());

    client.add_guest("web", &[]).expect("AddGuest");
    let is = |kind: &'static str, name: &'static str| {
        move |line: &str| {
            let e = event(line);
            e["event"] == kind && (name.is_empty() || e["name"] == name)
        }
    };
    let added = event(&json_watch.wait_for(EVENT_TIMEOUT, is("guest-added", "web")).unwrap());
    assert_eq!(
        (&added["guest"]["tap"], &added["guest"]["address"]),
        (&json!("vmt-web"), &json!("198.51.100.200"))
    );
    assert!(json_watch.seen().iter().all(|l| !l.contains("10.0.0.0/8")), "{:?}", json_watch.seen());
    text_watch.wait_for(EVENT_TIMEOUT, |l| l.contains(" guest web added: tap=vmt-web ")).unwrap();

    // A roam: Rehomed, the manager's and the guest's new properties.
    world.move_uplink("203.0.113.10/24", "203.0.113.1").expect("roam");
    let rehomed = |line: &str| {
        let e = event(line);
        e["event"] == "rehomed" && e["old_subnet"] == "198.51.100.0/24" && e["new_subnet"] == "203.0.113.0/24"
    };
    let moved = |line: &str| {
        let e = event(line);
        e["event"] == "guest-changed" && e["name"] == "web" && e["changes"]["address"] == "203.0.113.200"
    };
    let subnet = |line: &str| {
        let e = event(line);
        e["event"] == "manager-changed" && e["changes"]["subnet"] == "203.0.113.0/24"
    };
    json_watch.wait_for_all(EVENT_TIMEOUT, &[&rehomed, &moved, &subnet]).unwrap();
    text_watch
        .wait_for(EVENT_TIMEOUT, |l| l.ends_with(" rehomed from 198.51.100.0/24 to 203.0.113.0/24"))
        .unwrap();

    client.remove_guest("web").expect("RemoveGuest");
    json_watch.wait_for(EVENT_TIMEOUT, is("guest-removed", "web")).unwrap();
    text_watch.wait_for(EVENT_TIMEOUT, |l| l.ends_with(" guest web removed")).unwrap();

    // vmnetd restarts: watch says so and follows the new instance.
    vmnetd.restart().expect("restart vmnetd");
    json_watch.wait_for(EVENT_TIMEOUT, is("vmnetd-stopped", "")).unwrap();
    json_watch.wait_for(EVENT_TIMEOUT, is("vmnetd-started", "")).unwrap();
    text_watch.wait_for(EVENT_TIMEOUT, |l| l.ends_with(" vmnetd stopped")).unwrap();
    text_watch.wait_for(EVENT_TIMEOUT, |l| l.ends_with(" vmnetd started")).unwrap();
    client.add_guest("db", &[]).expect("AddGuest after the restart");
    json_watch.wait_for(EVENT_TIMEOUT, is("guest-added", "db")).unwrap();

    // Ctrl-C ends it cleanly.
    assert!(json_watch.stop(Signal::SIGINT).expect("stop").success());
    assert!(text_watch.stop(Signal::SIGTERM).expect("stop").success());
}

/// polkit asks the caller for a password: on a terminal, vmnetctl runs pkttyagent, which shows
/// the request (the test user has no password, so it fails); without a terminal, or with
/// --no-ask-password, polkit refuses without asking.
#[test]
fn vmnetctl_asks_for_a_password_on_a_terminal() {
    require_root!();
    let world = World::new("ctlagent");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let rule = "polkit.addRule(function(action, subject) {\n  if (action.id == \"org.vmnet.manage-guests\") \
                { return polkit.Result.AUTH_SELF; }\n});\n";
    world.polkit().install_rules("40-ask.rules", rule).expect("rules");
    let tester = world.tester_uid();
    let challenged = || {
        world
            .polkit()
            .pkcheck(Some(tester), vmnet_tests::MANAGE_GUESTS)
            .is_ok_and(|o| o.status.code() == Some(2))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !challenged() {
        assert!(Instant::now() < deadline, "polkitd did not apply the rule");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = world.vmnetctl_on_terminal_as(tester, &["add", "web"]).expect("script");
    let terminal = stdout(&out);
    assert!(terminal.contains("AUTHENTICATING FOR org.vmnet.manage-guests"), "{terminal}");
    assert!(terminal.contains("vmnetctl: not authorized: "), "{terminal}");
    assert_eq!(out.status.code(), Some(3), "{terminal}");

    let out = world.vmnetctl_on_terminal_as(tester, &["add", "web", "--no-ask-password"]).expect("script");
    let terminal = stdout(&out);
    assert!(!terminal.contains("AUTHENTICATING"), "{terminal}");
    assert_eq!(out.status.code(), Some(3), "{terminal}");
    assert!(fails(&world, Some(tester), &["add", "web"], 3).starts_with("vmnetctl: not authorized: "));
    assert!(world.client().list_guests().unwrap().is_empty());
}

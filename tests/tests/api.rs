//! The org.vmnet API contract: polkit decisions by a real polkitd on the caller, typed errors
//! for bad input (changing nothing), the address pool, and the introspection data.

use std::process::Output;
use std::time::Duration;

use vmnet_dbus::Error;
use vmnet_tests::{dbus_error_name, kernel_config, require_root, KernelState, Opt, World, NOBODY};

/// `AddGuest(name, options)` through gdbus as `uid`; options in GVariant text, e.g. "{}".
fn add_guest_as(world: &World, uid: u32, name: &str, options: &str) -> Output {
    let method = "org.vmnet.Manager1.AddGuest";
    let args =
        ["call", "--dest", "org.vmnet", "--object-path", "/org/vmnet", "--method", method, name, options];
    world.gdbus_as(Some(uid), &args).expect("gdbus")
}

fn remove_guest_as(world: &World, uid: u32, name: &str) -> Output {
    let method = "org.vmnet.Manager1.RemoveGuest";
    let args = ["call", "--dest", "org.vmnet", "--object-path", "/org/vmnet", "--method", method, name];
    world.gdbus_as(Some(uid), &args).expect("gdbus")
}

fn error_of(output: &Output) -> String {
    assert!(!output.status.success(), "expected an error, got {}", String::from_utf8_lossy(&output.stdout));
    dbus_error_name(output).unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned())
}

const NOT_AUTHORIZED: &str = "org.vmnet.Error.NotAuthorized";

#[test]
fn polkit_decides_for_the_caller() {
    require_root!();
    let world = World::new("polkit");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    let tester = world.tester_uid();
    let untouched = world.kernel_state();

    // Unprivileged, no rule: refused by polkitd, nothing changes.
    assert_eq!(error_of(&add_guest_as(&world, NOBODY, "web", "{}")), NOT_AUTHORIZED);
    assert_eq!(error_of(&add_guest_as(&world, tester, "web", "{}")), NOT_AUTHORIZED);
    let resync = [
        "call",
        "--dest",
        "org.vmnet",
        "--object-path",
        "/org/vmnet",
        "--method",
        "org.vmnet.Manager1.Resync",
    ];
    assert_eq!(error_of(&world.gdbus_as(Some(tester), &resync).unwrap()), NOT_AUTHORIZED);
    assert_eq!(world.kernel_state(), untouched);
    assert!(client.list_guests().unwrap().is_empty());
    // Reads need no authorization.
    let list = [
        "call",
        "--dest",
        "org.vmnet",
        "--object-path",
        "/org/vmnet",
        "--method",
        "org.vmnet.Manager1.ListGuests",
    ];
    assert!(world.gdbus_as(Some(NOBODY), &list).unwrap().status.success());

    // The shipped example rule grants group "vmnet" (vmnet-tester is a member; nobody is not).
    world.polkit().install_example_rules().expect("rules");
    let out = add_guest_as(&world, tester, "web", "{}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        client.guest_property("web", "Owner").unwrap(),
        tester.to_string(),
        "owner defaults to the caller"
    );
    assert_eq!(world.tap_owner("vmt-web"), i64::from(tester));
    assert!(world.gdbus_as(Some(tester), &resync).unwrap().status.success());
    assert_eq!(error_of(&add_guest_as(&world, NOBODY, "db", "{}")), NOT_AUTHORIZED);
    // Guests of other users need org.vmnet.manage-all-guests, which the rule does not grant.
    assert_eq!(error_of(&add_guest_as(&world, tester, "db", "{'owner': <uint32 0>}")), NOT_AUTHORIZED);
    client.add_guest("rootvm", &[]).expect("root adds its own guest");
    assert_eq!(error_of(&remove_guest_as(&world, tester, "rootvm")), NOT_AUTHORIZED);
    assert_eq!(client.list_guests().unwrap().len(), 2);
    let out = remove_guest_as(&world, tester, "web");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(world.taps(), ["vmt-rootvm"]);
}

#[test]
fn polkit_unreachable_fails_closed() {
    require_root!();
    let world = World::new("failclosed");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    world.polkit().install_example_rules().expect("rules");
    world.stop_polkit().expect("stop polkitd");
    let tester = world.tester_uid();
    let untouched = world.kernel_state();
    let out = add_guest_as(&world, tester, "web", "{}");
    assert_eq!(error_of(&out), NOT_AUTHORIZED);
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not ask polkit"), "{out:?}");
    assert_eq!(world.kernel_state(), untouched);
    // Root needs no polkit.
    client.add_guest("web", &[]).expect("root");
}

#[test]
fn bad_input_gets_typed_errors_and_changes_nothing() {
    require_root!();
    let world = World::new("badinput");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[("mac", Opt::Str("52:54:00:00:00:01"))]).expect("AddGuest");
    let baseline: (KernelState, _) = (world.kernel_state(), client.list_guests().unwrap());
    let long = "x".repeat(33);
    let invalid = |e: &Error| matches!(e, Error::InvalidArgument(_));
    let exists = |e: &Error| matches!(e, Error::AlreadyExists(_));
    let unavailable = |e: &Error| matches!(e, Error::AddressUnavailable(_));
    type Check = fn(&Error) -> bool;
    type Case<'a> = (&'a str, Vec<(&'a str, Opt<'a>)>, Check);
    let cases: Vec<Case<'_>> = vec![
        ("", vec![], invalid),
        (&long, vec![], invalid),
        ("-dash", vec![], invalid),
        ("sp ace", vec![], invalid),
        ("a/b", vec![], invalid),
        ("ok", vec![("colour", Opt::Str("blue"))], invalid),
        ("ok", vec![("owner", Opt::Str("1000"))], invalid),
        ("ok", vec![("mac", Opt::U32(5))], invalid),
        ("ok", vec![("mac", Opt::Str("01:00:5e:00:00:01"))], invalid),
        ("ok", vec![("mac", Opt::Str("52:54:00:zz:00:01"))], invalid),
        ("ok", vec![("address", Opt::Str("198.51.100"))], invalid),
        ("ok", vec![("qmp", Opt::Str("relative/path"))], invalid),
        ("web", vec![], exists),
        ("ok", vec![("mac", Opt::Str("52:54:00:00:00:01"))], exists),
        ("ok", vec![("address", Opt::Str("203.0.113.5"))], unavailable),
        ("ok", vec![("address", Opt::Str("198.51.100.10"))], unavailable),
        ("ok", vec![("address", Opt::Str("198.51.100.1"))], unavailable),
        ("ok", vec![("address", Opt::Str("198.51.100.255"))], unavailable),
        ("ok", vec![("address", Opt::Str("198.51.100.200"))], unavailable),
    ];
    for (name, options, expected) in cases {
        let err = client.add_guest(name, &options).expect_err(name);
        assert!(expected(&err), "{name:?}: unexpected {err:?}");
        assert_eq!(
            (world.kernel_state(), client.list_guests().unwrap()),
            baseline,
            "{name:?} changed something"
        );
    }
    assert!(matches!(client.remove_guest("nope"), Err(Error::NotFound(_))));
    assert!(matches!(client.remove_guest("bad name"), Err(Error::InvalidArgument(_))));
    // The busctl line from the docs works, and the service is still there.
    let out = world
        .busctl_as(
            None,
            &["call", "org.vmnet", "/org/vmnet", "org.vmnet.Manager1", "AddGuest", "sa{sv}", "db", "0"],
        )
        .expect("busctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "o \"/org/vmnet/guests/db\"");
}

#[test]
fn pool_exhaustion_and_conflict() {
    require_root!();
    let world = World::new("pool");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, "[pool]\nfirst = 200\nlast = 201\n"));
    let client = world.client();
    client.add_guest("a", &[]).unwrap();
    client.add_guest("b", &[]).unwrap();
    let err = client.add_guest("c", &[]).unwrap_err();
    assert!(matches!(&err, Error::AddressUnavailable(m) if m.contains("pool")), "{err:?}");
    // Outside the pool, a requested address is still fine.
    client.add_guest("c", &[("address", Opt::Str("198.51.100.50"))]).unwrap();

    // Roam to a subnet where the host itself is .200: "a" has no room left.
    let mut rehomed = client.watch_rehomed().unwrap();
    world.move_uplink("203.0.113.200/24", "203.0.113.1").unwrap();
    assert!(rehomed.next(Duration::from_secs(5)).is_some());
    assert_eq!(client.guest_property("a", "State").unwrap(), "conflict");
    assert_eq!(client.guest_property("a", "Address").unwrap(), "");
    assert_eq!(client.guest_property("b", "Address").unwrap(), "203.0.113.201");
    assert_eq!(client.guest_property("c", "Address").unwrap(), "203.0.113.50");
    assert_eq!(world.settled(|w| w.vmnet_routes().len(), &2), 2, "the old subnet's routes swept");
    // Retried on the next change: back home, "a" gets an address again.
    world.move_uplink("198.51.100.10/24", "198.51.100.1").unwrap();
    assert!(rehomed.next(Duration::from_secs(5)).is_some());
    assert_eq!(client.guest_property("a", "State").unwrap(), "active");
    assert_eq!(world.settled(|w| w.vmnet_routes().len(), &3), 3);
}

/// Members, signatures and annotations of an interface, from introspection XML.
fn interface_members(xml: &str, interface: &str) -> Vec<String> {
    let start = xml.find(&format!("<interface name=\"{interface}\">")).expect("interface");
    let body = &xml[start..];
    let body = &body[..body.find("</interface>").expect("end")];
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('<') && !l.starts_with("<!--") && !l.starts_with("</"))
        .map(str::to_string)
        .collect()
}

#[test]
fn introspection_matches_the_committed_xml() {
    require_root!();
    let world = World::new("introspect");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = world.client();
    client.add_guest("web", &[]).unwrap();
    let committed =
        std::fs::read_to_string(vmnet_tests::workspace_root().join("dbus/org.vmnet.Manager1.xml"))
            .expect("committed XML");
    let live_manager = client.introspect("/org/vmnet").unwrap();
    let live_guest = client.introspect("/org/vmnet/guests/web").unwrap();
    assert_eq!(
        interface_members(&live_manager, "org.vmnet.Manager1"),
        interface_members(&committed, "org.vmnet.Manager1")
    );
    assert_eq!(
        interface_members(&live_guest, "org.vmnet.Guest1"),
        interface_members(&committed, "org.vmnet.Guest1")
    );
    assert!(live_manager.contains("org.freedesktop.DBus.ObjectManager"));
}

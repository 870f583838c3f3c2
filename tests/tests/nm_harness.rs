//! The NetworkManager harness itself, without vmnetd: a real NM on the World's bus gets a DHCP
//! lease from the home LAN, answers on D-Bus, follows roams to the office LAN and back,
//! deactivates and re-activates, survives a restart, runs dispatcher scripts; and everything is
//! gone after Drop.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vmnet_tests::nm::{DispatcherCall, NM_BUS_NAME, PROFILE};
use vmnet_tests::{kernel_config, require_root, Client, Lan, NmOptions, NmWorld, UPLINK};
use zbus::OwnedObjectPath;

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";

/// What NM's D-Bus API says about its primary connection.
#[derive(Debug)]
struct Primary {
    path: String,
    id: String,
    kind: String,
    state: u32,
}

fn primary_connection(world: &NmWorld) -> Primary {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        let conn = world.bus().connect().await.expect("zbus connect");
        let nm = zbus::Proxy::new(&conn, NM_BUS_NAME, NM_PATH, NM_BUS_NAME).await.expect("NM proxy");
        let path: OwnedObjectPath = nm.get_property("PrimaryConnection").await.expect("PrimaryConnection");
        let path = path.to_string();
        if path == "/" {
            return Primary { path, id: String::new(), kind: String::new(), state: 0 };
        }
        let active = zbus::Proxy::new(&conn, NM_BUS_NAME, path.clone(), ACTIVE).await.expect("proxy");
        Primary {
            id: active.get_property("Id").await.expect("Id"),
            kind: active.get_property("Type").await.expect("Type"),
            state: active.get_property("State").await.expect("State"),
            path,
        }
    })
}

fn host_part(cidr: &str) -> u32 {
    let ip = cidr.split_once('/').map_or(cidr, |(ip, _)| ip);
    ip.rsplit('.').next().and_then(|h| h.parse().ok()).unwrap_or(0)
}

/// A lease of `lan` from dnsmasq's range: `<net>.100-150/24`.
fn assert_lease(address: &str, lan: Lan) {
    assert!(lan.contains(address) && address.ends_with("/24"), "{address} is not a {lan} lease");
    assert!((100..=150).contains(&host_part(address)), "{address} is not in the DHCP range");
}

fn assert_activated(world: &NmWorld) -> Primary {
    let primary = primary_connection(world);
    assert_ne!(primary.path, "/", "no primary connection");
    assert_eq!((primary.id.as_str(), primary.kind.as_str(), primary.state), (PROFILE, "802-3-ethernet", 2));
    primary
}

fn ip_of(cidr: &str) -> &str {
    cidr.split_once('/').map_or(cidr, |(ip, _)| ip)
}

fn netns_names() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Pids of what an NmWorld runs that must be gone after Drop (NM, dnsmasq ×2, nm-dispatcher).
fn our_pids(world: &NmWorld) -> Vec<u32> {
    let mut pids: Vec<u32> = world.nm_pid().into_iter().chain(world.dispatcher_pids()).collect();
    for lan in ["home", "office"] {
        let file = world.dir().join(format!("dnsmasq-{lan}.pid"));
        let pid = std::fs::read_to_string(file).expect("dnsmasq pid file");
        pids.push(pid.trim().parse().expect("pid"));
    }
    pids
}

fn assert_all_gone(id: &str, dir: &Path, pids: &[u32]) {
    assert!(!netns_names().contains(id), "netns left: {}", netns_names());
    assert!(!dir.exists(), "{} left", dir.display());
    let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    let out = Command::new("pgrep").args(["-af", &dir.display().to_string()]).output().expect("pgrep");
    assert!(
        out.stdout.is_empty(),
        "processes naming {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn assert_up_call(call: &DispatcherCall, world: &NmWorld, lan: Lan) {
    assert_eq!(call.var("CONNECTION_UUID"), world.profile_uuid(), "{call:?}");
    assert_eq!(call.var("CONNECTION_ID"), PROFILE, "{call:?}");
    assert_eq!(call.var("DEVICE_IFACE"), UPLINK, "{call:?}");
    assert_eq!(call.var("NM_DISPATCHER_ACTION"), "up", "{call:?}");
    assert!(lan.contains(call.var("DHCP4_IP_ADDRESS")), "{call:?}");
    assert!(call.var("IP4_ADDRESS_0").starts_with(lan.net()), "{call:?}");
    assert_eq!(call.var("IP4_GATEWAY"), lan.router(), "{call:?}");
}

#[test]
fn nm_leases_roams_cycles_restarts_dispatches_and_cleans_up() {
    require_root!();
    let world = NmWorld::new("nmh");
    let (id, dir) = (world.id().to_string(), world.dir().to_path_buf());
    let timeout = Duration::from_secs(10);

    // A lease from home, and NM's API on the World's bus says so.
    assert_eq!(world.current_lan(), Some(Lan::Home));
    let home = world.uplink_address().expect("a lease");
    assert_lease(&home, Lan::Home);
    let first = assert_activated(&world);
    assert!(world.ping_from(Lan::Home, ip_of(&home)), "home cannot ping the uplink");
    assert!(world.ping_from_lan(ip_of(&home)));
    let up = world.wait_for_dispatch(0, UPLINK, "up", timeout).expect("dispatcher: wlan0 up");
    assert_up_call(&up, &world, Lan::Home);
    assert_eq!(world.nm_device_state(), Some(100));

    // Roam to the office and back: NM re-activates (a new ActiveConnection) with a new lease.
    let mark = world.dispatcher_calls().len();
    let roam = world.roam(Lan::Office).expect("roam to office");
    assert_lease(&roam.address, Lan::Office);
    assert!(roam.elapsed < world.options().lease_timeout + roam.link_away);
    assert_eq!(world.uplink_address().as_deref(), Some(roam.address.as_str()));
    assert_eq!(world.current_lan(), Some(Lan::Office));
    let office = assert_activated(&world);
    assert_ne!(office.path, first.path, "a roam re-activates");
    assert!(world.ping_from(Lan::Office, ip_of(&roam.address)));
    world.wait_for_dispatch(mark, UPLINK, "down", timeout).expect("dispatcher: wlan0 down");
    let up = world.wait_for_dispatch(mark, UPLINK, "up", timeout).expect("dispatcher: wlan0 up");
    assert_up_call(&up, &world, Lan::Office);
    let roam = world.roam(Lan::Home).expect("roam home");
    assert_lease(&roam.address, Lan::Home);
    assert_activated(&world);
    assert!(world.ping_from_lan(ip_of(&roam.address)));

    // A script installed while NM runs takes part in the next event.
    let script = dir.join("custom.sh");
    let custom_log = dir.join("custom.out");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1 $2\" >>{}\n", custom_log.display()))
        .expect("write");
    let installed = world.install_dispatcher_script("60-custom", &script).expect("install");
    assert!(installed.starts_with(world.dispatcher_dir()));

    // A user's deactivation and re-activation.
    let mark = world.dispatcher_calls().len();
    world.nm_down().expect("nm_down");
    assert_eq!(world.uplink_address(), None);
    assert_eq!(world.nm_device_state(), Some(30), "disconnected");
    assert_eq!(primary_connection(&world).path, "/");
    world.wait_for_dispatch(mark, UPLINK, "down", timeout).expect("dispatcher: down");
    let lease = world.nm_up().expect("nm_up");
    assert_lease(&lease.address, Lan::Home);
    assert_activated(&world);
    world.wait_for_dispatch(mark, UPLINK, "up", timeout).expect("dispatcher: up");
    let custom = std::fs::read_to_string(&custom_log).unwrap_or_default();
    assert!(custom.contains("wlan0 down") && custom.contains("wlan0 up"), "custom script saw: {custom:?}");

    // NM stops (and leaves the uplink as it was) and comes back with the profile activated.
    let old_pid = world.nm_pid().expect("NM runs");
    let status = world.kill_nm().expect("kill_nm");
    assert!(status.success(), "NM exit status {status}");
    assert!(!world.bus().has_owner(NM_BUS_NAME));
    assert_eq!(world.nm_pid(), None);
    eprintln!("[{id}] after NM exited: {UPLINK} has {:?}", world.uplink_address());
    let lease = world.start_nm().expect("start_nm");
    assert_lease(&lease.address, Lan::Home);
    assert_ne!(world.nm_pid(), Some(old_pid));
    assert_activated(&world);
    eprintln!("[{id}] NM restart -> {} in {:.3}s", lease.address, lease.elapsed.as_secs_f64());

    let pids = our_pids(&world);
    drop(world);
    assert_all_gone(&id, &dir, &pids);
}

/// Two NmWorlds at once (and this test runs in parallel with the other): independent NMs,
/// LANs and leases; a blip shorter than carrier-wait-timeout keeps the lease.
#[test]
fn two_nm_worlds_in_parallel_and_a_short_blip() {
    require_root!();
    let worlds = std::thread::scope(|s| {
        let a = s.spawn(|| NmWorld::new("nmpa"));
        let b = s.spawn(|| NmWorld::with_options("nmpb", NmOptions::default()));
        [a.join().expect("world a"), b.join().expect("world b")]
    });
    std::thread::scope(|s| {
        for world in &worlds {
            s.spawn(move || {
                let roam = world.roam(Lan::Office).expect("roam");
                assert_lease(&roam.address, Lan::Office);
                assert_activated(world);
            });
        }
    });
    let [a, b] = worlds;
    assert_ne!(a.id(), b.id());
    assert_ne!(a.nm_pid(), b.nm_pid());

    // A blip: the link away for less than carrier-wait-timeout; NM rides it out.
    let before = b.uplink_address().expect("address");
    let before_ac = primary_connection(&b).path;
    b.move_link(Lan::Home, Duration::from_millis(100)).expect("blip to home");
    std::thread::sleep(b.options().carrier_wait * 3);
    assert_eq!(b.uplink_address(), Some(before), "the old lease stays");
    assert_eq!(primary_connection(&b).path, before_ac, "not re-activated");
    assert_eq!(b.current_lan(), Some(Lan::Home));

    let gone: Vec<(String, std::path::PathBuf, Vec<u32>)> =
        [&a, &b].map(|w| (w.id().to_string(), w.dir().to_path_buf(), our_pids(w))).into();
    drop(a);
    drop(b);
    for (id, dir, pids) in gone {
        assert_all_gone(&id, &dir, &pids);
    }
}

/// The World's features work through an NmWorld: vmnetd (here its "kernel" uplink source on the
/// NM-managed wlan0), a guest behind its tap, reachability from the current LAN, and a roam.
#[test]
fn vmnetd_and_a_guest_in_an_nm_world() {
    require_root!();
    let world = NmWorld::new("nmvm");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = Client::connect(world.bus_address()).expect("connect");
    let home = world.uplink_address().expect("lease");
    assert_eq!(client.manager_property("HostAddress").unwrap(), ip_of(&home));
    client.add_guest("web", &[]).expect("AddGuest");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());
    let configure = |subnet_prefix: &str| {
        let address = client.guest_property("web", "Address").expect("Address");
        assert!(address.starts_with(subnet_prefix), "{address}");
        let gateway = client.manager_property("HostAddress").expect("HostAddress");
        guest.configure(&format!("{address}/24"), &gateway).expect("configure");
        address
    };
    let address = configure(Lan::Home.net());
    guest.start_tcp_server(80).expect("tcp server");
    assert!(world.ping_from_lan(&address), "home pings the guest");
    assert_eq!(world.tcp_from(Lan::Home, &address, 80).as_deref(), Some("hi"));
    assert_eq!(world.kernel_state().taps, std::slice::from_ref(&tap));
    let devices = world.nmcli(&["-t", "-f", "DEVICE,STATE", "device"]).expect("nmcli");
    eprintln!("[{}] nmcli device: {}", world.id(), String::from_utf8_lossy(&devices.stdout).trim());

    let roam = world.roam(Lan::Office).expect("roam");
    assert!(world.wait_for_property(&client, "Subnet", &Lan::Office.subnet()), "vmnetd follows the roam");
    assert_eq!(client.manager_property("HostAddress").unwrap(), ip_of(&roam.address));
    let address = configure(Lan::Office.net());
    assert!(world.ping_from_lan(&address), "office pings the re-homed guest");
    assert_eq!(world.tcp_from_lan(&address, 80).as_deref(), Some("hi"));
    assert!(guest.ping_from_guest(&Lan::Office.client()), "the guest reaches the office LAN");
}

//! vmnetd following a real NetworkManager: roams between two DHCP LANs re-home every guest,
//! connection down/up, NM restarts and NM starting after vmnetd; and the dispatcher plugin run
//! by the real nm-dispatcher, D-Bus-activating vmnetd.

use std::time::Duration;

use vmnet_tests::vmnetd::dispatcher_binary;
use vmnet_tests::{require_root, Lan, NmWorld, UPLINK};

/// NM sees the veth uplink as Ethernet, so the tests follow that type (the default is Wi-Fi).
const NM_CONFIG: &str = "[uplink]\nsource = \"networkmanager\"\nconnection_types = [\"802-3-ethernet\"]\n";

fn ip_of(cidr: &str) -> String {
    cidr.split_once('/').map_or(cidr, |(ip, _)| ip).to_owned()
}

#[test]
fn roams_rehome_guests_once_each_and_they_stay_reachable() {
    require_root!();
    let world = NmWorld::new("nmroam");
    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    let lease = world.uplink_address().expect("NM's lease");
    assert!(world.wait_for_property(&client, "State", "online"));
    assert_eq!(client.manager_property("HostAddress").unwrap(), ip_of(&lease));
    assert_eq!(client.manager_property("Subnet").unwrap(), "198.51.100.0/24");
    assert_eq!(client.manager_property("Gateway").unwrap(), "198.51.100.1");
    assert_eq!(client.manager_property("Nameservers").unwrap(), "198.51.100.1", "DNS from NM");
    assert_eq!(client.manager_property("Uplink").unwrap(), UPLINK);

    client.add_guest("web", &[]).expect("AddGuest web");
    client.add_guest("db", &[]).expect("AddGuest db");
    let tap = client.guest_property("web", "Tap").unwrap();
    let guest = world.add_guest(&tap, &client.guest_property("web", "Mac").unwrap());
    let address = guest.configure_from(&client, "web");
    guest.start_tcp_server(80).expect("tcp");
    assert!(world.ping_from(Lan::Home, &address));

    let mut rehomed = client.watch_rehomed().expect("subscribe");
    for (from, to) in [(Lan::Home, Lan::Office), (Lan::Office, Lan::Home)] {
        let roam = world.roam(to).expect("roam");
        let signal = rehomed.next(Duration::from_secs(5)).expect("Rehomed");
        assert_eq!(signal, (from.subnet().to_string(), to.subnet().to_string()));
        assert_eq!(rehomed.next(Duration::from_millis(700)), None, "one Rehomed per roam");
        assert_eq!(client.manager_property("HostAddress").unwrap(), ip_of(&roam.address));
        assert_eq!(client.manager_property("Gateway").unwrap(), to.router());
        assert_eq!(client.manager_property("Nameservers").unwrap(), to.router());
        let web = client.guest_property("web", "Address").unwrap();
        assert_eq!(web, format!("{}.200", to.net()), "host part kept");
        assert_eq!(client.guest_property("db", "Address").unwrap(), format!("{}.201", to.net()));
        let routes = world.vmnet_routes();
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert!(routes.iter().all(|r| r.starts_with(to.net())), "{routes:?}");
        let proxies = world.kernel_state().proxies;
        assert_eq!(
            proxies,
            [format!("{}.200 dev {UPLINK}", to.net()), format!("{}.201 dev {UPLINK}", to.net())]
        );
        let address = guest.configure_from(&client, "web");
        assert!(world.ping_from(to, &address), "guest reachable from the {to} LAN");
        assert_eq!(world.tcp_from(to, &address, 80).as_deref(), Some("hi"));
    }
}

#[test]
fn connection_down_is_offline_and_up_restores() {
    require_root!();
    let world = NmWorld::new("nmdown");
    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    client.add_guest("web", &[]).expect("AddGuest");
    assert_eq!(world.vmnet_routes().len(), 1);
    world.nm_down().expect("nmcli connection down");
    assert!(world.wait_for_property(&client, "State", "offline"));
    assert_eq!(client.guest_property("web", "State").unwrap(), "offline");
    let state = world.kernel_state();
    assert!(state.routes.is_empty(), "nothing routed: {:?}", state.routes);
    assert!(state.proxies.is_empty(), "{:?}", state.proxies);
    assert_eq!(state.taps, ["vmt-web"]);
    world.nm_up().expect("nmcli connection up");
    assert!(world.wait_for_property(&client, "State", "online"));
    assert_eq!(client.guest_property("web", "State").unwrap(), "active");
    assert_eq!(world.vmnet_routes().len(), 1);
}

#[test]
fn nm_absent_at_start_then_restarted() {
    require_root!();
    let world = NmWorld::new("nmrestart");
    world.kill_nm().expect("stop NM");
    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert_eq!(client.manager_property("State").unwrap(), "offline", "no NM: offline, waiting");
    client.add_guest("web", &[]).expect("AddGuest while offline");

    world.start_nm().expect("start NM");
    assert!(world.wait_for_property(&client, "State", "online"), "vmnetd picks NM up");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.200");

    world.kill_nm().expect("kill NM");
    assert!(world.wait_for_property(&client, "State", "offline"), "NM gone: offline");
    assert!(world.vmnet_routes().is_empty());
    world.start_nm().expect("restart NM");
    assert!(world.wait_for_property(&client, "State", "online"), "vmnetd recovers");
    assert_eq!(world.vmnet_routes().len(), 1);
}

#[test]
fn dispatcher_plugin_activates_vmnetd_through_nm_dispatcher() {
    require_root!();
    let world = NmWorld::new("nmdisp");
    // vmnetd is not running: the bus starts it on demand, in the host netns.
    let config = world.dir().join("vmnetd.toml");
    std::fs::write(&config, NM_CONFIG).expect("config");
    let vmnetd = vmnet_tests::vmnetd::vmnetd_binary().expect("vmnetd binary");
    let service = format!(
        "[D-BUS Service]\nName=org.vmnet\nUser=root\nExec=/usr/bin/env DBUS_SYSTEM_BUS_ADDRESS={} \
         /usr/bin/ip netns exec {} {} --config {} --state-dir {}\n",
        world.bus_address(),
        world.host_ns(),
        vmnetd.display(),
        config.display(),
        world.dir().join("state").display()
    );
    std::fs::write(world.bus().service_dir().join("org.vmnet.service"), service).expect("service file");
    let plugin = dispatcher_binary().expect("vmnet-dispatcher binary");
    world.install_lib_dispatcher_script("90-vmnet", &plugin).expect("install plugin");
    assert!(!world.bus().has_owner("org.vmnet"));

    let seen = world.dispatcher_calls().len();
    world.nm_down().expect("down");
    world.wait_for_dispatch(seen, UPLINK, "down", Duration::from_secs(10)).expect("down dispatched");
    assert!(world.bus().wait_for_name("org.vmnet", Duration::from_secs(10)), "the plugin activated vmnetd");
    let client = world.client();
    world.nm_up().expect("up");
    assert!(world.wait_for_property(&client, "State", "online"));
    assert_eq!(client.manager_property("Subnet").unwrap(), "198.51.100.0/24");
}

/// A second, preferred wired connection on the office LAN: plugging its cable makes it NM's
/// primary connection, and the guests follow it there; unplugging brings them back.
#[test]
fn plugging_a_cable_moves_guests_to_the_wired_lan_and_back() {
    require_root!();
    let world = NmWorld::new("nmcable");
    let office = world.lan_ns(Lan::Office).to_owned();
    world
        .ip(
            world.host_ns(),
            &["link", "add", "eth0", "type", "veth", "peer", "name", "cab0", "netns", &office],
        )
        .expect("veth eth0");
    let profile = "[connection]\nid=wired\ntype=ethernet\ninterface-name=eth0\nautoconnect=true\n\n\
                   [ipv4]\nmethod=auto\nroute-metric=50\n\n[ipv6]\nmethod=disabled\n";
    let keyfile = world.nm_dir().join("etc/system-connections/wired.nmconnection");
    std::fs::write(&keyfile, profile).expect("keyfile");
    std::fs::set_permissions(&keyfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    assert!(world.nmcli(&["connection", "reload"]).expect("nmcli").status.success());
    world.ip(world.host_ns(), &["link", "set", "eth0", "up"]).expect("eth0 up");

    let _vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    assert!(world.wait_for_property(&client, "Subnet", "198.51.100.0/24"));
    client.add_guest("web", &[]).expect("AddGuest");
    let mut rehomed = client.watch_rehomed().expect("subscribe");

    // Plug: the cable's far end joins the office bridge.
    world.ip(&office, &["link", "set", "cab0", "master", "br0", "up"]).expect("plug");
    let signal = rehomed.next(Duration::from_secs(15)).expect("Rehomed to the wired LAN");
    assert_eq!(signal, ("198.51.100.0/24".into(), "203.0.113.0/24".into()));
    assert_eq!(client.manager_property("Uplink").unwrap(), "eth0");
    assert_eq!(client.guest_property("web", "Address").unwrap(), "203.0.113.200");
    let routes = vec!["203.0.113.200 dev vmt-web scope link linkdown".to_owned()];
    assert_eq!(world.settled(|w| w.vmnet_routes(), &routes), routes);
    let host = world.host_ns();
    let proxies = vec!["203.0.113.200 dev eth0".to_owned()];
    assert_eq!(world.settled(|w| w.vmnet_proxies(), &proxies), proxies);
    assert_eq!(world.sysctl(host, "net.ipv4.neigh.eth0.proxy_delay").unwrap(), "0");
    assert_eq!(world.sysctl(host, "net.ipv4.neigh.wlan0.proxy_delay").unwrap(), "80", "restored");

    // Unplug: back on Wi-Fi (well, the other veth) at home.
    world.ip(&office, &["link", "set", "cab0", "down"]).expect("unplug");
    let signal = rehomed.next(Duration::from_secs(15)).expect("Rehomed back");
    assert_eq!(signal, ("203.0.113.0/24".into(), "198.51.100.0/24".into()));
    assert_eq!(client.manager_property("Uplink").unwrap(), UPLINK);
    assert_eq!(client.guest_property("web", "Address").unwrap(), "198.51.100.200");
    let proxies = vec!["198.51.100.200 dev wlan0".to_owned()];
    assert_eq!(world.settled(|w| w.vmnet_proxies(), &proxies), proxies);
    assert_eq!(world.sysctl(host, "net.ipv4.neigh.wlan0.proxy_delay").unwrap(), "0");
    assert_eq!(world.sysctl(host, "net.ipv4.neigh.eth0.proxy_delay").unwrap(), "80", "restored");
}

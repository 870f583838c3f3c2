//! vmnet benchmark with a real NetworkManager: prints figures, asserts nothing about speed. Run
//! as root, with the release binaries built first (`cargo bench` does not build them):
//!
//! ```sh
//! cargo build --release -p vmnetd -p vmnet-dispatcher && cargo bench -p vmnet-tests --bench networkmanager
//! ```
//!
//! One [`NmWorld`] with the LANs in the RFC 2544 range (home 198.18.0.0/16, office
//! 198.19.0.0/16, room for 1000 guests), vmnetd following NM (`source = "networkmanager"`),
//! 10 and then 1000 guests, 5 roams each, alternating:
//!
//! 1. Re-home latency: **t0** the arrival of NM's PropertiesChanged of an IP4Config object whose
//!    AddressData holds the new subnet's address, **t1** the arrival of vmnetd's `Rehomed`
//!    (emitted once the kernel has converged); both on the one connection of the bench's own
//!    listener thread. Next to it vmnetd's `converged elapsed=` from its debug log.
//! 2. Roam → netns guest (on g0's tap) pingable again: from t0 to the first echo reply. A raw
//!    ICMP socket in the new LAN's netns sends one echo request from the LAN client every 10 ms
//!    to the guest's new address (predicted: the host part is kept), from link-up on. The bench
//!    reconfigures the guest (static address, from `Address`, `Subnet`, `HostAddress`) as soon
//!    as `Rehomed` arrives; that step is timed too.
//! 3. `vmnet-dispatcher wlan0 up` exec → exit, with the environment NM gave the recorder script
//!    on the last `wlan0 up`: 100 runs with vmnetd running (each a `Resync`), 100 of an ignored
//!    action (`pre-up`), and after vmnetd is stopped 100 with vmnetd absent (no service file:
//!    the bus answers ServiceUnknown).
//!
//! The World is removed on Drop, also after a panic. Every wait is bounded; the whole run takes
//! about 30 s on 2 cores.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{each, rehome_converge, release_binary, text_len, text_since, Samples};
use futures::StreamExt;
use vmnet_tests::nm::LanAddressing;
use vmnet_tests::vmnetd::{dispatcher_binary, vmnetd_binary};
use vmnet_tests::{is_root, Client, GuestHandle, Lan, NmOptions, NmWorld, Signal, UPLINK};
use zbus::message::Type as MessageType;
use zbus::{MatchRule, MessageStream, OwnedVariant};

/// NM sees the veth uplink as Ethernet; the pool starts at host 256 of the /16.
const NM_CONFIG: &str = "[uplink]\nsource = \"networkmanager\"\nconnection_types = [\"802-3-ethernet\"]\n\n\
                         [pool]\nfirst = 256\nlast = 4000\n";
/// Guest counts, in this order (the second adds to the first).
const SIZES: [usize; 2] = [10, 1000];
/// Roams per guest count, alternating between the LANs.
const ROAMS: usize = 5;
/// Runs of vmnet-dispatcher per case.
const DISPATCHER_RUNS: usize = 100;
/// The most a roam may take from link-up to `Rehomed`, and a guest to answer after link-up.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Spacing of the echo requests.
const PING_EVERY: Duration = Duration::from_millis(10);
/// A vmnet-dispatcher run that takes longer is killed and the bench fails.
const DISPATCHER_TIMEOUT: Duration = Duration::from_secs(10);

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const IP4_CONFIG: &str = "org.freedesktop.NetworkManager.IP4Config";
const ACTIVE_CONNECTION: &str = "org.freedesktop.NetworkManager.Connection.Active";
/// NM_ACTIVE_CONNECTION_STATE_ACTIVATED.
const ACTIVATED: u32 = 2;

fn main() {
    if !is_root() {
        eprintln!("skipped: the NetworkManager benchmark needs root (network namespaces, taps, NM)");
        return;
    }
    let started = Instant::now();
    let vmnetd = release_binary("vmnetd", "VMNETD_BIN", vmnetd_binary(), &["service", "dbus", "polkit"]);
    let dispatcher = release_binary(
        "vmnet-dispatcher",
        "VMNET_DISPATCHER_BIN",
        dispatcher_binary(),
        &["dispatcher", "dbus"],
    );
    println!("vmnetd: {}\nvmnet-dispatcher: {}", vmnetd.display(), dispatcher.display());
    if std::env::var_os("VMNET_TAPGUEST").is_none() {
        // The guest relay built with this bench (set while the process has one thread).
        std::env::set_var("VMNET_TAPGUEST", env!("CARGO_BIN_EXE_tapguest"));
    }
    run(&dispatcher);
    println!("\nbench finished in {:.1} s", started.elapsed().as_secs_f64());
}

fn run(dispatcher: &Path) {
    let options = NmOptions { lans: LanAddressing::benchmarking(), ..NmOptions::default() };
    let world = NmWorld::with_options("benchnm", options);
    let lans = world.lans().clone();
    println!(
        "\n== NetworkManager roams: home {} <-> office {} (link away {} ms) ==",
        lans.subnet(Lan::Home),
        lans.subnet(Lan::Office),
        world.options().link_away().as_millis()
    );
    println!("  t0: NM's IP4Config PropertiesChanged with the new address; t1: vmnetd's Rehomed;");
    println!("  both received on one bus connection of the bench.");
    // Pings sent before the guest is back must not hold up the first good one by an ARP
    // retransmit (default 1 s): the LAN client re-asks every 10 ms.
    for lan in Lan::ALL {
        world
            .set_sysctl(world.lan_ns(lan), "net.ipv4.neigh.br0.retrans_time_ms", "10")
            .expect("ARP retransmit");
    }
    let mut vmnetd = world.start_vmnetd(NM_CONFIG);
    let client = world.client();
    let mut lan = world.current_lan().expect("the uplink is on a LAN");
    assert!(world.wait_for_property(&client, "Subnet", &lans.subnet(lan)), "vmnetd follows NM's lease");
    let signals = Signals::listen(world.bus_address()).expect("subscribe to NM's and vmnetd's signals");

    let mut guest = None;
    let mut added = 0;
    for n in SIZES {
        let t = Instant::now();
        for i in added..n {
            client.add_guest(&format!("g{i}"), &[]).unwrap_or_else(|e| panic!("AddGuest g{i}: {e}"));
        }
        let secs = t.elapsed().as_secs_f64();
        println!("\n  {n} guests ({} added as root in {secs:.2} s)", n - added);
        added = n;
        let guest = guest.get_or_insert_with(|| {
            let tap = client.guest_property("g0", "Tap").expect("Tap of g0");
            let mac = client.guest_property("g0", "Mac").expect("Mac of g0");
            let guest = world.add_guest(&tap, &mac);
            let address = guest.configure_from(&client, "g0");
            assert!(world.ping_from(lan, &address), "the guest answers before any roam");
            guest
        });
        let mut roams = Vec::new();
        for _ in 0..ROAMS {
            let to = lan.other();
            roams.push(roam(&world, &client, &signals, guest, lan, to, n));
            lan = to;
        }
        print_roams(&roams);
        if n == SIZES[0] {
            dispatcher_figures(
                &world,
                dispatcher,
                &format!("vmnetd running, networkmanager source, {n} guests"),
            );
        }
    }
    vmnetd.kill(Signal::SIGTERM).expect("stop vmnetd");
    let service = world.bus().service_dir().join("org.vmnet.service");
    assert!(!service.exists(), "vmnetd must not be activatable for the last case");
    dispatcher_absent(&world, dispatcher);
}

// ---------------------------------------------------------------------------------------------
// 1. and 2.: roams

/// What one roam measured, in milliseconds.
struct RoamFigures {
    /// t0 (NM's new AddressData) → Rehomed.
    rehome: f64,
    /// t0 → NM's PropertiesChanged State = activated of the active connection, if it came
    /// before Rehomed.
    activated: Option<f64>,
    /// vmnetd's `converged elapsed=` of the re-home.
    converge: Option<f64>,
    /// Rehomed → the guest reconfigured (3 property reads, 5 `ip` commands).
    configure: f64,
    /// t0 → the first echo reply from the guest.
    pingable: f64,
    /// The guest reconfigured → the first echo reply.
    after_configure: f64,
    /// Whether the host had no neighbour entry for the guest's new address on its tap before
    /// the roam (the guest's first time in that subnet).
    first_visit: bool,
}

/// Roams from `from` to `to` and measures; checks (untimed) that NM activated the profile and
/// that vmnetd's routes are exactly `n` host routes in `to`.
fn roam(
    world: &NmWorld,
    client: &Client,
    signals: &Signals,
    guest: &GuestHandle<'_>,
    from: Lan,
    to: Lan,
    n: usize,
) -> RoamFigures {
    let lans = world.lans();
    let old: Ipv4Addr = client.guest_property("g0", "Address").expect("Address").parse().expect("IPv4");
    let expected = lans.host(to, u32::from(old) - u32::from(lans.network(from)));
    let new_address = expected.to_string();
    let neighbour = ["neigh", "show", "to", &new_address, "dev", guest.tap()];
    let first_visit = world.ip(world.host_ns(), &neighbour).expect("ip neigh").trim().is_empty();
    let away = world.options().link_away();
    let log = world.dir().join("vmnetd.log");
    let offset = text_len(&log);
    signals.drain();
    let source: Ipv4Addr = lans.client(to).parse().expect("client address");
    let pinger = Pinger::start(world.lan_ns(to), source, expected, Instant::now() + away + PING_TIMEOUT);
    world.move_link(to, away).expect("move the uplink to the other LAN");

    let (mut t0, mut activated) = (None, None);
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    let mut seen = Vec::new();
    let t1 = loop {
        let event = signals.next(deadline).unwrap_or_else(|| {
            panic!("no Rehomed within {SIGNAL_TIMEOUT:?} of link-up on {to}; seen: {seen:?}")
        });
        seen.push(format!("{event:?}"));
        match event {
            Event::Addresses(at, addresses) => {
                if t0.is_none() && addresses.iter().any(|a| lans.contains(to, a)) {
                    t0 = Some(at);
                }
            }
            Event::ActiveState(at, state) => {
                if t0.is_some() && activated.is_none() && state == ACTIVATED {
                    activated = Some(at);
                }
            }
            Event::Rehomed(at, old_subnet, new_subnet) => {
                assert_eq!((old_subnet, new_subnet), (lans.subnet(from), lans.subnet(to)), "Rehomed");
                break at;
            }
        }
    };
    let t0 = t0.unwrap_or_else(|| panic!("Rehomed came before NM's new AddressData; seen: {seen:?}"));

    let configure_start = Instant::now();
    let address = guest.configure_from(client, "g0");
    let configured = Instant::now();
    assert_eq!(address, expected.to_string(), "the guest keeps its host part");
    let reply = pinger
        .finish()
        .expect("pinger")
        .unwrap_or_else(|| panic!("no echo reply from {address} within {PING_TIMEOUT:?} of link-up on {to}"));

    world.wait_for_lease(to, Duration::from_secs(20)).expect("NM activated the profile on the new LAN");
    let routes = world.vmnet_routes();
    let inside = |r: &String| r.split_whitespace().next().is_some_and(|dest| lans.contains(to, dest));
    assert!(
        routes.len() == n && routes.iter().all(inside),
        "after the roam to {to}: {} routes of proto 118 (want {n}), e.g. {:?}",
        routes.len(),
        routes.iter().find(|r| !inside(r))
    );
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    RoamFigures {
        rehome: ms(t0, t1),
        activated: activated.map(|at| ms(t0, at)),
        converge: rehome_converge(&text_since(&log, offset)),
        configure: ms(configure_start, configured),
        pingable: ms(t0, reply),
        after_configure: ms(configured, reply),
        first_visit,
    }
}

fn print_roams(roams: &[RoamFigures]) {
    let line = |what: &str, ms: Vec<f64>| {
        if ms.len() == roams.len() {
            println!("    {what:<40} {}  [{}]", Samples::new(ms.clone()).min_median_max(), each(&ms));
        } else {
            println!("    {what:<40} {} of {} roams  [{}]", ms.len(), roams.len(), each(&ms));
        }
    };
    line("NM AddressData -> Rehomed", roams.iter().map(|r| r.rehome).collect());
    line("  NM AddressData -> NM State=activated", roams.iter().filter_map(|r| r.activated).collect());
    line("  vmnetd converged elapsed= (log)", roams.iter().filter_map(|r| r.converge).collect());
    line("NM AddressData -> guest pingable", roams.iter().map(|r| r.pingable).collect());
    line("  Rehomed -> guest reconfigured", roams.iter().map(|r| r.configure).collect());
    line("  guest reconfigured -> first echo reply", roams.iter().map(|r| r.after_configure).collect());
    let first: Vec<String> =
        roams.iter().enumerate().filter(|(_, r)| r.first_visit).map(|(i, _)| (i + 1).to_string()).collect();
    println!(
        "    (roams to a subnet the guest had not been in, so no neighbour entry on its tap: {})",
        if first.is_empty() { "none".to_string() } else { format!("#{}", first.join(", #")) }
    );
}

// ---------------------------------------------------------------------------------------------
// The bench's listener: NM's IP4Config and active connection changes, vmnetd's Rehomed

/// A signal and when it reached the listener.
#[derive(Debug)]
enum Event {
    /// PropertiesChanged of an IP4Config with AddressData (as "ADDRESS/PREFIX").
    Addresses(Instant, Vec<String>),
    /// PropertiesChanged of an active connection with State.
    ActiveState(Instant, u32),
    /// Rehomed(old, new).
    Rehomed(Instant, String, String),
}

struct Signals {
    events: Receiver<Event>,
}

type Properties = HashMap<String, OwnedVariant>;

impl Signals {
    /// Connects to `bus` in a thread of its own (a current-thread runtime: the connection's
    /// reader and the listener share it), subscribes and returns once the bus has the rules.
    fn listen(bus: &str) -> io::Result<Signals> {
        let (events, receiver) = channel();
        let (ready, is_ready) = channel();
        let bus = bus.to_owned();
        std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(ready.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                let mut stream = match subscribe(&bus).await {
                    Ok(stream) => stream,
                    Err(e) => return drop(ready.send(Err(e.to_string()))),
                };
                let _ = ready.send(Ok(()));
                while let Some(message) = stream.next().await {
                    let at = Instant::now();
                    let Some(event) = message.ok().and_then(|m| parse(&m, at)) else { continue };
                    if events.send(event).is_err() {
                        return;
                    }
                }
            });
        });
        match is_ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Signals { events: receiver }),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::other("the listener did not subscribe within 10 s")),
        }
    }

    /// Forgets what arrived so far.
    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The next event, or None at `deadline`.
    fn next(&self, deadline: Instant) -> Option<Event> {
        self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }
}

async fn subscribe(bus: &str) -> zbus::Result<impl futures::Stream<Item = zbus::Result<zbus::Message>>> {
    let connection = zbus::connection::Builder::address(bus).build().await?;
    let changes = |interface: &'static str| -> zbus::Result<MatchRule<'static>> {
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace(NM_PATH)
            .add_arg(interface)
            .build()
    };
    let rehomed = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .path(vmnet_dbus::MANAGER_PATH)
        .interface(vmnet_dbus::MANAGER_INTERFACE)
        .member("Rehomed")
        .build()?;
    let mut streams = Vec::new();
    for rule in [changes(IP4_CONFIG)?, changes(ACTIVE_CONNECTION)?, rehomed] {
        streams.push(MessageStream::for_match_rule(rule, &connection, None).await?);
    }
    Ok(futures::stream::select_all(streams))
}

fn parse(message: &zbus::Message, at: Instant) -> Option<Event> {
    let body = message.body();
    if message.header().member()?.as_str() == "Rehomed" {
        let (old, new): (String, String) = body.deserialize().ok()?;
        return Some(Event::Rehomed(at, old, new));
    }
    let (interface, changed, _): (String, Properties, Vec<String>) = body.deserialize().ok()?;
    let take = |name: &str| changed.get(name)?.try_clone().ok();
    match interface.as_str() {
        IP4_CONFIG => {
            let data: Vec<Properties> = take("AddressData")?.try_into().ok()?;
            let addresses = data
                .iter()
                .filter_map(|a| {
                    let address: String = a.get("address")?.try_clone().ok()?.try_into().ok()?;
                    let prefix: u32 = a.get("prefix")?.try_clone().ok()?.try_into().ok()?;
                    Some(format!("{address}/{prefix}"))
                })
                .collect();
            Some(Event::Addresses(at, addresses))
        }
        ACTIVE_CONNECTION => Some(Event::ActiveState(at, take("State")?.try_into().ok()?)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The pinger: a raw ICMP socket in a LAN's netns, no process per ping

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

struct Pinger {
    thread: JoinHandle<io::Result<Option<Instant>>>,
}

impl Pinger {
    /// Sends an echo request from `source` to `dest` every [`PING_EVERY`] inside netns `ns`
    /// until the first reply (its arrival is the result) or `deadline` (None).
    fn start(ns: &str, source: Ipv4Addr, dest: Ipv4Addr, deadline: Instant) -> Pinger {
        let path = format!("/run/netns/{ns}");
        let thread = std::thread::spawn(move || -> io::Result<Option<Instant>> {
            // This thread only: the others stay in their netns.
            nix::sched::setns(File::open(&path)?, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let socket = icmp_socket(source)?;
            let id = (std::process::id() as u16) ^ 0x766d;
            let (mut seq, mut next_send) = (0u16, Instant::now());
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                if now >= next_send {
                    seq = seq.wrapping_add(1);
                    // Errors (no neighbour yet) are expected until the guest is back.
                    let _ = send_echo(&socket, dest, id, seq);
                    next_send += PING_EVERY;
                }
                let wait = next_send.min(deadline).saturating_duration_since(Instant::now());
                let mut poll = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let timeout_ms = wait.as_micros().div_ceil(1000) as libc::c_int;
                // SAFETY: poll(2) on one valid pollfd.
                if unsafe { libc::poll(&raw mut poll, 1, timeout_ms) } > 0 && receive_reply(&socket, dest, id)
                {
                    return Ok(Some(Instant::now()));
                }
            }
        });
        Pinger { thread }
    }

    fn finish(self) -> io::Result<Option<Instant>> {
        self.thread.join().map_err(|_| io::Error::other("the pinger panicked"))?
    }
}

fn icmp_socket(source: Ipv4Addr) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let address = sockaddr(source);
    // SAFETY: bind(2) with a valid sockaddr_in and its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn sockaddr(address: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(address).to_be() },
        sin_zero: [0; 8],
    }
}

fn send_echo(socket: &OwnedFd, dest: Ipv4Addr, id: u16, seq: u16) -> io::Result<()> {
    let mut packet = vec![ICMP_ECHO_REQUEST, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(b"vmnet-bench-ping");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    let address = sockaddr(dest);
    // SAFETY: sendto(2) from a valid buffer, to a valid sockaddr_in.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads everything queued; whether it held an echo reply from `dest` with our `id`.
fn receive_reply(socket: &OwnedFd, dest: Ipv4Addr, id: u16) -> bool {
    let mut buffer = [0u8; 1500];
    loop {
        // SAFETY: recv(2) into a valid buffer of that length.
        let got = unsafe {
            libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT)
        };
        if got <= 0 {
            return false;
        }
        let packet = &buffer[..got as usize];
        let header = usize::from(packet[0] & 0x0f) * 4;
        let Some(icmp) = packet.get(header..header + 8) else { continue };
        let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        if icmp[0] == ICMP_ECHO_REPLY && u16::from_be_bytes([icmp[4], icmp[5]]) == id && from == dest {
            return true;
        }
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

// ---------------------------------------------------------------------------------------------
// 3. vmnet-dispatcher exec → exit

/// The environment NM gave the recorder on the last `wlan0 up` (what nm-dispatcher sets, not
/// what the recorder's shell adds), with PATH.
fn dispatcher_env(world: &NmWorld) -> Vec<(String, String)> {
    const FROM_NM: [&str; 7] =
        ["CONNECTION_", "DEVICE_", "NM_DISPATCHER_ACTION", "IP4_", "IP6_", "DHCP4_", "CONNECTIVITY_STATE"];
    let calls = world.dispatcher_calls();
    let call = calls.iter().rev().find(|c| c.iface == UPLINK && c.action == "up");
    let call = call.unwrap_or_else(|| panic!("NM dispatched no `{UPLINK} up` to the recorder"));
    let mut env: Vec<(String, String)> = call
        .env
        .iter()
        .filter(|(key, _)| FROM_NM.iter().any(|p| key.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()));
    env
}

fn dispatcher_figures(world: &NmWorld, dispatcher: &Path, what: &str) {
    let env = dispatcher_env(world);
    println!("\n== vmnet-dispatcher exec -> exit, {DISPATCHER_RUNS} runs each ==");
    println!("  the environment of NM's last `{UPLINK} up` ({} variables), the World's bus", env.len());
    let watchdog = Watchdog::start();
    for action in ["up", "pre-up"] {
        let (samples, outcome) = time_dispatcher(world, dispatcher, &env, action, &watchdog);
        println!("  `{UPLINK} {action}`, {what}:");
        println!("    {}\n    (its log line: {outcome})", samples.summary());
    }
}

fn dispatcher_absent(world: &NmWorld, dispatcher: &Path) {
    let env = dispatcher_env(world);
    let watchdog = Watchdog::start();
    let (samples, outcome) = time_dispatcher(world, dispatcher, &env, "up", &watchdog);
    println!("  `{UPLINK} up`, vmnetd absent (stopped, not activatable):");
    println!("    {}\n    (its log line: {outcome})", samples.summary());
    // What the bus answers such a call (untimed), as busctl shows it.
    let call = ["call", "org.vmnet", "/org/vmnet", "org.vmnet.Manager1", "Resync"];
    let out = world.busctl_as(None, &call).expect("busctl");
    println!(
        "    (the bus to `busctl call org.vmnet ... Resync`: {})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Times [`DISPATCHER_RUNS`] runs of `vmnet-dispatcher wlan0 ACTION`, spawn to exit; then one
/// more, untimed, for its log line.
fn time_dispatcher(
    world: &NmWorld,
    dispatcher: &Path,
    env: &[(String, String)],
    action: &str,
    watchdog: &Watchdog,
) -> (Samples, String) {
    let command = |stderr: Stdio| {
        let mut cmd = Command::new(dispatcher);
        cmd.args([UPLINK, action])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NM_DISPATCHER_ACTION", action)
            .env("DBUS_SYSTEM_BUS_ADDRESS", world.bus_address())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        cmd
    };
    let mut ms = Vec::with_capacity(DISPATCHER_RUNS);
    for _ in 0..DISPATCHER_RUNS {
        let mut cmd = command(Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start vmnet-dispatcher");
        watchdog.watch(child.id());
        let status = child.wait().expect("wait for vmnet-dispatcher");
        let elapsed = start.elapsed();
        watchdog.done();
        assert!(status.success(), "vmnet-dispatcher {UPLINK} {action}: {status}");
        ms.push(elapsed.as_secs_f64() * 1000.0);
    }
    let child = command(Stdio::piped()).spawn().expect("start vmnet-dispatcher");
    watchdog.watch(child.id());
    let out = child.wait_with_output().expect("wait for vmnet-dispatcher");
    watchdog.done();
    let log = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (Samples::new(ms), if log.is_empty() { "none".into() } else { log })
}

/// Kills a watched process that does not exit within [`DISPATCHER_TIMEOUT`] (so that a hanging
/// run fails the bench instead of stalling it).
struct Watchdog {
    tx: Sender<Option<u32>>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let (tx, rx) = channel::<Option<u32>>();
        std::thread::spawn(move || {
            while let Ok(message) = rx.recv() {
                let Some(pid) = message else { continue };
                match rx.recv_timeout(DISPATCHER_TIMEOUT) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => {
                        eprintln!(
                            "vmnet-dispatcher {pid} still runs after {DISPATCHER_TIMEOUT:?}: killing it"
                        );
                        // SAFETY: kill(2) of a pid. It is our child, still running after 10 s
                        // (its pid cannot be reused before the bench reaps it).
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Watchdog { tx }
    }

    fn watch(&self, pid: u32) {
        let _ = self.tx.send(Some(pid));
    }

    fn done(&self) {
        let _ = self.tx.send(None);
    }
}

//! vmnet benchmark: prints figures, asserts nothing about speed. Run as root, with the release
//! vmnetd built first (`cargo bench` does not build it):
//!
//! ```sh
//! cargo build --release -p vmnetd -p vmnet-dispatcher && cargo bench -p vmnet-tests
//! ```
//!
//! (`--bench vmnet` runs only this file; `networkmanager.rs` has the NetworkManager figures.)
//!
//! 1. AddGuest / RemoveGuest latency over D-Bus, as the unprivileged `vmnet-tester` (vmnetd asks
//!    the World's real polkitd, which evaluates `50-vmnet.rules`) and as root (no polkit). The
//!    calls are made and timed by `vmnet-bench-client` inside one connection; its process start
//!    and connection set-up are not in the figures.
//! 2. Re-home time for 10, 100 and 1000 guests: from the netlink request that deletes the
//!    uplink's old address (made in-process on a rtnetlink socket in the host netns, no `ip`
//!    process) to the arrival of `Rehomed`, which vmnetd emits once the kernel has converged.
//!    Next to it vmnetd's own `converged elapsed=` figure from its debug log.
//! 3. vmnetd's memory (VmRSS, VmHWM from /proc/PID/status): idle, and with 1000 guests.
//! 4. The DHCP server: DISCOVER → OFFER and REQUEST → ACK from a client in a guest netns.
//! 5. AddGuest and the 1000-guest re-home again with ARP probing on (the default, 200 ms);
//!    1 and 2 run with `probe_ms = 0` so that they show the API and kernel paths alone.
//!
//! `VMNET_BENCH_LOG_DIR=DIR` keeps vmnetd's debug log of each part there.
//! `VMNET_BENCH_PARTS=add,dhcp,rehome` (default: all three) runs only some parts, e.g. to measure a
//! vmnetd of an earlier version (`VMNETD_BIN=...`) that knows fewer configuration keys.
//!
//! Everything runs in Worlds (private netns, bus, polkitd) that are removed on Drop, also after a
//! panic. Every wait is bounded; the whole run takes well under 3 minutes on 2 cores.

mod common;
mod dhcp_latency;

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{converge_times, each, rehome_converge, release_binary, text_len, text_since, Samples};
use vmnet_tests::client::RehomedWatch;
use vmnet_tests::vmnetd::vmnetd_binary;
use vmnet_tests::{is_root, kernel_config, Client, VmnetdHandle, World, UPLINK};

/// Guests per AddGuest run (the default /24, pool .2 to .254).
const ADD_GUESTS: usize = 200;
/// Guest counts of the re-home benchmark.
const REHOME_SIZES: [usize; 3] = [10, 100, 1000];
/// Re-homes per guest count, alternating between the two subnets.
const REHOMES: usize = 5;
/// AddGuest/RemoveGuest pairs timed with 10 and with 1000 guests present.
const PRESENT_SAMPLES: usize = 50;
/// The most any one call of the helper or any re-home may take before the bench gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
const REHOME_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    if !is_root() {
        eprintln!("skipped: the vmnet benchmark needs root (network namespaces, taps, polkitd)");
        return;
    }
    let started = Instant::now();
    let binary = release_vmnetd();
    println!("vmnetd: {}", fs::canonicalize(&binary).unwrap_or(binary).display());
    // VMNET_BENCH_PARTS=add,dhcp,rehome (the default: all) runs only some parts.
    let parts = std::env::var("VMNET_BENCH_PARTS").unwrap_or_else(|_| "add,dhcp,rehome".into());
    let wanted = |part: &str| parts.split(',').any(|p| p.trim() == part);
    if wanted("add") {
        add_guest_latency();
    }
    if wanted("dhcp") {
        dhcp_answer_latency();
    }
    if wanted("rehome") {
        rehome_times();
    }
    println!("\nbench finished in {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Exits with a message unless the harness will run an up-to-date release vmnetd.
fn release_vmnetd() -> PathBuf {
    release_binary("vmnetd", "VMNETD_BIN", vmnetd_binary(), &["service", "dbus", "polkit"])
}

/// VmRSS and VmHWM of `pid` in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status of vmnetd");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn print_memory(what: &str, pid: u32) {
    let (rss, hwm) = memory(pid);
    println!("  {what:<34} VmRSS {:>6.2} MiB   VmHWM {:>6.2} MiB", rss as f64 / 1024.0, hwm as f64 / 1024.0);
}

/// vmnetd's pid, checked to be vmnetd itself (`ip netns exec` execs it: same pid).
fn vmnetd_pid(vmnetd: &VmnetdHandle<'_>) -> u32 {
    let pid = vmnetd.pid().expect("vmnetd has a pid");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).expect("read /proc/PID/comm of vmnetd");
    assert_eq!(comm.trim(), "vmnetd", "pid {pid} is not vmnetd");
    pid
}

/// vmnetd's log from byte `offset` on.
fn log_since(world: &World, offset: u64) -> String {
    text_since(&world.dir().join("vmnetd.log"), offset)
}

fn log_len(world: &World) -> u64 {
    text_len(&world.dir().join("vmnetd.log"))
}

// ---------------------------------------------------------------------------------------------
// 1. AddGuest latency (tester through polkit, root without) and idle memory

fn add_guest_latency() {
    println!("\n== AddGuest / RemoveGuest over D-Bus ({ADD_GUESTS} guests, one connection) ==");
    let world = World::new("benchadd");
    // 200 guests of one user: more than the default per-owner limit.
    let config = "[pool]\nfirst = 2\nlast = 254\n[arp]\nprobe_ms = 0\n[limits]\nguests_per_owner = 0\n";
    let vmnetd = world.start_vmnetd(&kernel_config(&world, config));
    let pid = vmnetd_pid(&vmnetd);
    print_memory("vmnetd idle, just started:", pid);
    sleep(Duration::from_secs(2));
    print_memory("vmnetd idle, 2 s later:", pid);
    world.polkit().install_example_rules().expect("install 50-vmnet.rules into the World's polkitd");

    // A copy the test user can execute (the World's directory is 0755).
    let client = world.dir().join("vmnet-bench-client");
    fs::copy(env!("CARGO_BIN_EXE_vmnet-bench-client"), &client).expect("copy vmnet-bench-client");
    fs::set_permissions(&client, fs::Permissions::from_mode(0o755)).expect("chmod vmnet-bench-client");

    let tester = world.tester_uid();
    for (who, uid, prefix) in [("vmnet-tester (polkit)", Some(tester), "u"), ("root (no polkit)", None, "r")]
    {
        // Let the kernel finish tearing down the taps of the previous run.
        sleep(Duration::from_secs(1));
        let offset = log_len(&world);
        let (add, remove) = run_client(&world, &client, uid, prefix);
        let mut converges = converge_times(&log_since(&world, offset));
        println!("  {who}:");
        println!("    AddGuest            {}", add.summary());
        if converges.len() == 2 * ADD_GUESTS {
            // One converge per call, in call order: the adds, then the removes.
            let removes = converges.split_off(ADD_GUESTS);
            println!("      vmnetd converge   {}", Samples::new(converges).summary());
            println!("    RemoveGuest         {}", remove.summary());
            println!("      vmnetd converge   {}", Samples::new(removes).summary());
        } else {
            println!("    RemoveGuest         {}", remove.summary());
            println!("    vmnetd converge, all calls (log) {}", Samples::new(converges).summary());
        }
    }
    print_memory("vmnetd after 800 calls, 0 guests:", pid);
}

// ---------------------------------------------------------------------------------------------
// 4. DHCP answers, and AddGuest with probing

fn dhcp_answer_latency() {
    println!("\n== DHCP server and ARP probing (defaults: probe_ms = 200) ==");
    let world = World::new("benchdhcp");
    let _vmnetd = world.start_vmnetd(&kernel_config(&world, ""));
    let client = Client::connect(world.bus_address()).expect("connect to the World's bus");
    let mut add_ms = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        client.add_guest(&format!("p{i}"), &[]).unwrap_or_else(|e| panic!("AddGuest p{i}: {e}"));
        add_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("  AddGuest as root, probing its address first (20)  {}", Samples::new(add_ms).summary());
    let tap = client.guest_property("p0", "Tap").expect("Tap");
    let mac = client.guest_property("p0", "Mac").expect("Mac");
    let guest = world.add_guest(&tap, &mac);
    guest.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
    let mut octets = [0u8; 6];
    for (octet, hex) in octets.iter_mut().zip(mac.split(':')) {
        *octet = u8::from_str_radix(hex, 16).expect("MAC");
    }
    let (offers, acks) = dhcp_latency::measure(guest.ns(), octets, 200).expect("DHCP exchanges");
    println!("  DISCOVER -> OFFER (200, client in the guest netns)  {}", Samples::new(offers).summary());
    println!("  REQUEST -> ACK                                      {}", Samples::new(acks).summary());
}

/// Runs the helper as root or as `uid` (setpriv) and returns its AddGuest and RemoveGuest samples.
fn run_client(world: &World, client: &Path, uid: Option<u32>, prefix: &str) -> (Samples, Samples) {
    let mut cmd = match uid {
        None => Command::new(client),
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups").arg(client);
            cmd
        }
    };
    let out_path = world.dir().join(format!("client-{prefix}.json"));
    let err_path = world.dir().join(format!("client-{prefix}.log"));
    let stdout = fs::File::create(&out_path).expect("create the helper's output file");
    let stderr = fs::File::create(&err_path).expect("create the helper's log file");
    cmd.args([&ADD_GUESTS.to_string(), prefix])
        .env("DBUS_SYSTEM_BUS_ADDRESS", world.bus_address())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let mut child = cmd.spawn().expect("start vmnet-bench-client");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vmnet-bench-client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmnet-bench-client did not finish within {CLIENT_TIMEOUT:?}");
        }
        sleep(Duration::from_millis(20));
    };
    let log = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "vmnet-bench-client failed ({status}): {}", log.trim());
    let text = fs::read_to_string(&out_path).expect("read the helper's output");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the helper prints JSON");
    let list = |key: &str| -> Vec<u64> {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in the helper's output"))
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect()
    };
    let (add, remove) = (list("add_us"), list("remove_us"));
    assert_eq!((add.len(), remove.len()), (ADD_GUESTS, ADD_GUESTS), "one sample per call");
    (Samples::from_us(&add), Samples::from_us(&remove))
}

// ---------------------------------------------------------------------------------------------
// 2. Re-home times, 3. memory with 1000 guests

/// One side of the roam: the uplink's address, its gateway and the subnet (/16).
struct Side {
    host: Ipv4Addr,
    gateway: Ipv4Addr,
    subnet: &'static str,
}

const PREFIX_LEN: u8 = 16;
const SIDES: [Side; 2] = [
    Side {
        host: Ipv4Addr::new(198, 18, 0, 10),
        gateway: Ipv4Addr::new(198, 18, 0, 1),
        subnet: "198.18.0.0/16",
    },
    Side {
        host: Ipv4Addr::new(198, 19, 0, 10),
        gateway: Ipv4Addr::new(198, 19, 0, 1),
        subnet: "198.19.0.0/16",
    },
];

fn rehome_times() {
    println!("\n== Re-home: uplink moves between 198.18.0.0/16 and 198.19.0.0/16 ==");
    println!("  t0: just before the in-process RTM_DELADDR of the old address (new address and");
    println!("  default route already in place); t1: Rehomed received by a client.");
    let world = World::new("benchrehome");
    let host = world.host_ns();
    // The World's 198.51.100.0/24 is too small for 1000 guests: re-address before vmnetd starts.
    let first = &SIDES[0];
    world.ip(host, &["-4", "addr", "flush", "dev", UPLINK]).expect("flush wlan0");
    world
        .ip(host, &["addr", "add", &format!("{}/{PREFIX_LEN}", first.host), "dev", UPLINK])
        .expect("address wlan0");
    world
        .ip(host, &["route", "replace", "default", "via", &first.gateway.to_string()])
        .expect("default route");
    let pool = "[pool]\nfirst = 256\nlast = 4000\n";
    let mut vmnetd = world.start_vmnetd(&kernel_config(&world, &format!("{pool}[arp]\nprobe_ms = 0\n")));
    let pid = vmnetd_pid(&vmnetd);
    let client = Client::connect(world.bus_address()).expect("connect to the World's bus");
    assert!(world.wait_for_property(&client, "Subnet", first.subnet), "vmnetd follows {}", first.subnet);
    let mut netlink = HostNetlink::open(host).expect("rtnetlink socket in the host netns");
    let ifindex = world.ifindex(UPLINK);
    let mut watch = client.watch_rehomed().expect("subscribe to Rehomed");

    let mut current = 0;
    let mut guests = 0;
    for n in REHOME_SIZES {
        let t = Instant::now();
        for i in guests..n {
            client.add_guest(&format!("g{i}"), &[]).unwrap_or_else(|e| panic!("AddGuest g{i}: {e}"));
        }
        let secs = t.elapsed().as_secs_f64();
        let per_call = secs * 1000.0 / (n - guests) as f64;
        println!("  {n} guests ({} added as root in {secs:.2} s, {per_call:.1} ms per AddGuest)", n - guests);
        guests = n;
        if n != 100 {
            add_remove_with_present(&client, n);
        }
        if n == 1000 {
            print_memory("vmnetd with 1000 guests:", pid);
        }
        rehome_series(&world, &mut netlink, ifindex, &mut watch, &client, &mut current, n);
        if n == 1000 {
            // Rehomed comes before the full sync that follows each re-home: let it finish.
            sleep(Duration::from_millis(500));
            print_memory("vmnetd with 1000 guests, re-homed:", pid);
        }
    }

    // 5. The same 1000 guests with probing on (the default): each re-home probes all 1000 new
    // addresses at once before giving them.
    drop(watch);
    fs::write(vmnetd.config_path(), kernel_config(&world, pool)).expect("rewrite vmnetd.toml");
    vmnetd.restart().expect("restart vmnetd with probing on");
    assert!(world.wait_for_property(&client, "State", "online"), "vmnetd is back");
    let mut watch = client.watch_rehomed().expect("subscribe to Rehomed");
    println!("  1000 guests, ARP probing on (probe_ms = 200):");
    rehome_series(&world, &mut netlink, ifindex, &mut watch, &client, &mut current, 1000);
    keep_log(&world, "rehome");
}

/// Copies vmnetd's debug log to `$VMNET_BENCH_LOG_DIR/<part>.log`, when that is set.
fn keep_log(world: &World, part: &str) {
    if let Some(dir) = std::env::var_os("VMNET_BENCH_LOG_DIR") {
        let to = Path::new(&dir).join(format!("{part}.log"));
        match fs::copy(world.dir().join("vmnetd.log"), &to) {
            Ok(_) => println!("  vmnetd's log: {}", to.display()),
            Err(e) => println!("  cannot copy vmnetd's log to {}: {e}", to.display()),
        }
    }
}

/// AddGuest and RemoveGuest as root of one more guest while `present` guests exist: the cost of
/// a change that touches one guest should not grow with the others.
fn add_remove_with_present(client: &Client, present: usize) {
    let (mut add_ms, mut remove_ms) = (Vec::new(), Vec::new());
    for i in 0..PRESENT_SAMPLES {
        let name = format!("x{i}");
        let t = Instant::now();
        client.add_guest(&name, &[]).unwrap_or_else(|e| panic!("AddGuest {name}: {e}"));
        add_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client.remove_guest(&name).unwrap_or_else(|e| panic!("RemoveGuest {name}: {e}"));
        remove_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "    AddGuest as root with {present} present ({PRESENT_SAMPLES})     {}",
        Samples::new(add_ms).summary()
    );
    println!(
        "    RemoveGuest as root with {present} present ({PRESENT_SAMPLES})  {}",
        Samples::new(remove_ms).summary()
    );
}

/// [`REHOMES`] re-homes of `guests` guests back and forth from `SIDES[*current]`, checked and
/// printed.
fn rehome_series(
    world: &World,
    netlink: &mut HostNetlink,
    ifindex: u32,
    watch: &mut RehomedWatch<'_>,
    client: &Client,
    current: &mut usize,
    guests: usize,
) {
    let (mut signal_ms, mut converge_ms) = (Vec::new(), Vec::new());
    for _ in 0..REHOMES {
        let next = 1 - *current;
        let (total, converged) = rehome(world, netlink, ifindex, watch, client, *current, next);
        signal_ms.push(total);
        converge_ms.extend(converged);
        check_routes(world, guests, &SIDES[next]);
        *current = next;
    }
    println!(
        "    uplink change -> Rehomed        {}  [{}]",
        Samples::new(signal_ms.clone()).min_median_max(),
        each(&signal_ms)
    );
    println!(
        "    vmnetd converged elapsed= (log) {}  [{}]",
        Samples::new(converge_ms.clone()).min_median_max(),
        each(&converge_ms)
    );
}

/// Moves the uplink from `SIDES[from]` to `SIDES[to]`; returns the time to `Rehomed` and
/// vmnetd's own converge time for it, in milliseconds.
fn rehome(
    world: &World,
    netlink: &mut HostNetlink,
    ifindex: u32,
    watch: &mut RehomedWatch<'_>,
    client: &Client,
    from: usize,
    to: usize,
) -> (f64, Option<f64>) {
    let (old, new) = (&SIDES[from], &SIDES[to]);
    // Not timed: the new address (vmnetd keeps the first one, the old), and the new gateway.
    netlink.address(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, new.host).expect("add the new address");
    netlink.default_route(ifindex, new.gateway).expect("replace the default route");
    let gateway = new.gateway.to_string();
    assert!(world.wait_for_property(client, "Gateway", &gateway), "vmnetd follows the gateway {gateway}");
    sleep(Duration::from_millis(50));
    let offset = log_len(world);

    let t0 = Instant::now();
    netlink.address(RTM_DELADDR, 0, ifindex, old.host).expect("delete the old address");
    let signal = watch.next(REHOME_TIMEOUT);
    let elapsed = t0.elapsed();

    let expected = (old.subnet.to_string(), new.subnet.to_string());
    assert_eq!(signal, Some(expected), "Rehomed within {REHOME_TIMEOUT:?}");
    // The converge that re-homed is the one logged before "re-homed N guests".
    let converged = rehome_converge(&log_since(world, offset));
    (elapsed.as_secs_f64() * 1000.0, converged)
}

/// Panics unless vmnetd's routes inside `side`'s subnet are exactly `n` host routes when
/// `Rehomed` has arrived, and the old subnet's are gone within 2 s (the full sync that follows
/// the re-home sweeps them).
fn check_routes(world: &World, n: usize, side: &Side) {
    let mask = u32::MAX << (32 - PREFIX_LEN);
    let net = u32::from(side.host) & mask;
    let split = || -> (Vec<String>, Vec<String>) {
        world.vmnet_routes().into_iter().partition(|r| {
            let dest = r.split_whitespace().next().and_then(|a| a.parse::<Ipv4Addr>().ok());
            dest.is_some_and(|a| u32::from(a) & mask == net)
        })
    };
    let (inside, _) = split();
    assert_eq!(inside.len(), n, "after the re-home to {}: routes of proto 118 inside it", side.subnet);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (inside, outside) = split();
        if outside.is_empty() {
            return assert_eq!(inside.len(), n);
        }
        assert!(
            Instant::now() < deadline,
            "2 s after the re-home to {}: {} routes left outside it: {:?}",
            side.subnet,
            outside.len(),
            outside.iter().take(5).collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// rtnetlink in-process, in the host netns: no `ip` process in the timed step

const NLMSG_ERROR: u16 = 2;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// A NETLINK_ROUTE socket created inside a netns (a socket stays in the netns it was made in).
struct HostNetlink {
    fd: OwnedFd,
    seq: u32,
}

impl HostNetlink {
    fn open(netns: &str) -> io::Result<HostNetlink> {
        let path = format!("/run/netns/{netns}");
        // setns in a thread of its own: the bench's other threads stay where they are.
        let fd = std::thread::spawn(move || -> io::Result<OwnedFd> {
            let ns = fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe {
                libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh fd nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(raw) })
        })
        .join()
        .map_err(|_| io::Error::other("the netns thread panicked"))??;
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: setsockopt with a valid pointer and the size of what it points to.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(HostNetlink { fd, seq: 0 })
    }

    /// RTM_NEWADDR / RTM_DELADDR of `address/16` on `ifindex`.
    fn address(&mut self, kind: u16, flags: u16, ifindex: u32, address: Ipv4Addr) -> io::Result<()> {
        let mut body = vec![libc::AF_INET as u8, PREFIX_LEN, 0, 0];
        body.extend_from_slice(&ifindex.to_ne_bytes());
        attribute(&mut body, IFA_LOCAL, &address.octets());
        attribute(&mut body, IFA_ADDRESS, &address.octets());
        self.request(kind, flags, &body)
    }

    /// `ip route replace default via GATEWAY dev IFINDEX`.
    fn default_route(&mut self, ifindex: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut body = vec![libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST];
        body.extend_from_slice(&0u32.to_ne_bytes());
        attribute(&mut body, RTA_GATEWAY, &gateway.octets());
        attribute(&mut body, RTA_OIF, &ifindex.to_ne_bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &body)
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.seq += 1;
        let mut message = Vec::with_capacity(16 + body.len());
        message.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        message.extend_from_slice(&self.seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(body);
        // SAFETY: send(2) from a valid buffer of that length.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; 65536];
        loop {
            // SAFETY: recv(2) into a valid buffer of that length.
            let got = unsafe { libc::recv(self.fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buffer[..got as usize];
            while rest.len() >= 16 {
                let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                let len = (u32_at(rest, 0) as usize).clamp(16, rest.len());
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if kind == NLMSG_ERROR && u32_at(rest, 8) == self.seq && len >= 20 {
                    let code = u32_at(rest, 16) as i32;
                    return if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) };
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
    }
}

/// Appends a netlink attribute (rtattr) to `out`, padded to 4 bytes.
fn attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize((out.len() + 3) & !3, 0);
}

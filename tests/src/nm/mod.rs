//! An [`NmWorld`]: a [`World`] whose uplink is managed by a real NetworkManager (on the World's
//! private bus, confined to the host netns and its own mount namespace) and gets its address by
//! DHCP from one of two LANs, with a "roam" that moves the uplink to the other LAN.
//!
//! ```text
//!  <id>-host                                  <id>-home                 <id>-office
//!  NetworkManager, vmnetd, taps               br0 198.51.100.1 (router,   br0 203.0.113.1
//!  wlan0 (DHCP) <==== veth ====> ap0 -- port of   DHCP, DNS: dnsmasq)       (the same)
//!                                             br0 198.51.100.2 (client)   br0 203.0.113.2
//! ```
//!
//! `ap0` starts in home; [`NmWorld::roam`] moves it to the other LAN's bridge with the link down
//! for longer than NM's `carrier-wait-timeout`, so that NM deactivates the profile and
//! autoconnect re-activates it there with a fresh DHCP exchange (as when a laptop leaves one
//! Wi-Fi network and joins another). On NM 1.42.4 with the defaults here: NM start to the first
//! lease ~0.1-0.3 s; a roam ~1.05-1.2 s (the link is away 1 s; the lease follows link-up within
//! 30-160 ms). A roam gives a new ActiveConnection (and DHCP4Config) object path; the device
//! keeps its IP4Config object. NM 1.42.4 sends no `dhcp4-change` dispatcher event on lease
//! renewals or rebinds, only for an activation's first lease.
//!
//! NetworkManager sees private copies of `/etc/NetworkManager`, `/var/lib/NetworkManager`,
//! `/usr/lib/NetworkManager/dispatcher.d` and `/run` (all under `<dir>/nm/`), and a read-only
//! `/sys` (which keeps it away from udev). nm-dispatcher is D-Bus activated on the World's bus
//! and runs in NM's namespaces (see `dispatcher.rs`). Everything goes on Drop, as for a World.
//!
//! `NmWorld` derefs to [`World`]: the bus, polkit, `start_vmnetd`, `add_guest`, `kernel_state`
//! and the rest work as usual. [`World::lan_ns`] is the *home* LAN there; `NmWorld` shadows
//! `ping_from_lan`/`tcp_from_lan` with versions that use the *current* LAN, and [`NmWorld::lan_ns`]
//! takes a [`Lan`]. The constants [`crate::HOST_ADDR`] etc. do not apply: see
//! [`NmWorld::uplink_address`] and [`Lan`].

mod daemon;
mod dispatcher;
mod ipv6;
mod lan;

pub use dispatcher::{DispatcherCall, RECORDER};
pub use ipv6::{Slaac, RA_INTERVAL, RA_ROUTER_LIFETIME};
pub use lan::Roam;

use crate::cmd::{error, tail};
use crate::world::{World, UPLINK};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The uplink's peer, a port of `br0` in the current LAN.
pub const AP_DEV: &str = "ap0";
/// The bridge of each LAN.
pub const BRIDGE: &str = "br0";
/// NetworkManager's profile for the uplink (a keyfile, written before NM starts).
pub const PROFILE: &str = "vmnet-uplink";
/// NetworkManager's bus name.
pub const NM_BUS_NAME: &str = "org.freedesktop.NetworkManager";
/// nm-dispatcher's bus name (D-Bus activated).
pub const DISPATCHER_BUS_NAME: &str = "org.freedesktop.nm_dispatcher";

/// One of the two LANs the uplink can be on. The addresses below are the default
/// [`LanAddressing`] (see [`NmOptions::lans`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lan {
    /// 198.51.100.0/24, where the uplink starts.
    Home,
    /// 203.0.113.0/24.
    Office,
}

impl Lan {
    pub const ALL: [Lan; 2] = [Lan::Home, Lan::Office];

    /// "home" or "office".
    pub fn name(self) -> &'static str {
        match self {
            Lan::Home => "home",
            Lan::Office => "office",
        }
    }

    /// The first three octets: "198.51.100" or "203.0.113".
    pub fn net(self) -> &'static str {
        match self {
            Lan::Home => "198.51.100",
            Lan::Office => "203.0.113",
        }
    }

    /// "198.51.100.0/24" or "203.0.113.0/24".
    pub fn subnet(self) -> String {
        format!("{}.0/24", self.net())
    }

    /// `.1`: router, DHCP and DNS server (and the host's gateway on this LAN).
    pub fn router(self) -> String {
        format!("{}.1", self.net())
    }

    /// `.2`: the LAN client that `ping_from`/`tcp_from` send from.
    pub fn client(self) -> String {
        format!("{}.2", self.net())
    }

    /// Whether `addr` (with or without `/prefix`) is in this LAN's /24.
    pub fn contains(self, addr: &str) -> bool {
        addr.strip_prefix(self.net()).is_some_and(|rest| rest.starts_with('.'))
    }

    /// The other LAN.
    pub fn other(self) -> Lan {
        match self {
            Lan::Home => Lan::Office,
            Lan::Office => Lan::Home,
        }
    }
}

impl std::fmt::Display for Lan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Knobs of an NmWorld.
#[derive(Debug, Clone)]
pub struct NmOptions {
    /// NM's `[device] carrier-wait-timeout` (NM's default is 6 s; 500 ms keeps roams fast).
    pub carrier_wait: Duration,
    /// How long a roam keeps the link down; `None`: `carrier_wait` + 500 ms. A value below
    /// `carrier_wait` is a mere blip: NM keeps the old lease until the DHCP rebind (~100 s).
    pub link_away: Option<Duration>,
    /// How long to wait for a lease (after NM starts, a roam, `nm_up`).
    pub lease_timeout: Duration,
    /// NM's `[logging] level` (INFO, DEBUG, TRACE...).
    pub log_level: String,
    /// Appended to NetworkManager.conf, e.g.
    /// `"[keyfile]\nunmanaged-devices=interface-name:vmt-*\n"`.
    pub extra_config: String,
    /// Install the recorder `50-record` into dispatcher.d (see [`NmWorld::dispatcher_calls`]).
    pub record_dispatcher: bool,
    /// The LANs' subnets (default: home 198.51.100.0/24, office 203.0.113.0/24).
    pub lans: LanAddressing,
    /// Dual-stack LANs: each also has a /64 ([`Lan::prefix6`]) with RAs for SLAAC, and NM's
    /// profile has `ipv6.method=auto` (see `ipv6.rs`). Off: IPv6 is disabled on the uplink.
    pub ipv6: bool,
}

impl Default for NmOptions {
    fn default() -> NmOptions {
        NmOptions {
            carrier_wait: Duration::from_millis(500),
            link_away: None,
            lease_timeout: Duration::from_secs(20),
            log_level: "INFO".to_string(),
            extra_config: String::new(),
            record_dispatcher: true,
            lans: LanAddressing::default(),
            ipv6: false,
        }
    }
}

impl NmOptions {
    /// The time a roam keeps the link down.
    pub fn link_away(&self) -> Duration {
        self.link_away.unwrap_or(self.carrier_wait + Duration::from_millis(500))
    }
}

/// The addressing of the two LANs. Each LAN is `network/prefix_len` with the router (DHCP and
/// DNS server, gateway) at network + 1, the LAN client at network + 2 and DHCP leases from
/// network + 100 to network + 150. [`Lan`]'s own `net`, `subnet`, `router`, `client` and
/// `contains` describe the default; [`NmWorld::lans`] gives a World's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanAddressing {
    /// The network address of home.
    pub home: Ipv4Addr,
    /// The network address of office.
    pub office: Ipv4Addr,
    /// The prefix length of both LANs, 8 to 24.
    pub prefix_len: u8,
}

impl Default for LanAddressing {
    /// home 198.51.100.0/24, office 203.0.113.0/24.
    fn default() -> LanAddressing {
        LanAddressing {
            home: Ipv4Addr::new(198, 51, 100, 0),
            office: Ipv4Addr::new(203, 0, 113, 0),
            prefix_len: 24,
        }
    }
}

impl LanAddressing {
    /// The RFC 2544 benchmarking range 198.18.0.0/15, as home 198.18.0.0/16 and office
    /// 198.19.0.0/16: room for thousands of guests.
    pub fn benchmarking() -> LanAddressing {
        LanAddressing {
            home: Ipv4Addr::new(198, 18, 0, 0),
            office: Ipv4Addr::new(198, 19, 0, 0),
            prefix_len: 16,
        }
    }

    /// The network address of `lan`.
    pub fn network(&self, lan: Lan) -> Ipv4Addr {
        match lan {
            Lan::Home => self.home,
            Lan::Office => self.office,
        }
    }

    /// The netmask, e.g. 255.255.0.0.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0))
    }

    /// Host number `n` of `lan` (network + n).
    pub fn host(&self, lan: Lan, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network(lan)).wrapping_add(n))
    }

    /// "198.51.100.0/24".
    pub fn subnet(&self, lan: Lan) -> String {
        format!("{}/{}", self.network(lan), self.prefix_len)
    }

    /// The router, DHCP and DNS server: network + 1.
    pub fn router(&self, lan: Lan) -> String {
        self.host(lan, 1).to_string()
    }

    /// The LAN client `ping_from`/`tcp_from` send from: network + 2.
    pub fn client(&self, lan: Lan) -> String {
        self.host(lan, 2).to_string()
    }

    /// Whether `addr` (with or without `/prefix`) is in `lan`.
    pub fn contains(&self, lan: Lan, addr: &str) -> bool {
        let ip = addr.split_once('/').map_or(addr, |(ip, _)| ip);
        let mask = u32::from(self.netmask());
        ip.parse::<Ipv4Addr>().is_ok_and(|ip| u32::from(ip) & mask == u32::from(self.network(lan)))
    }

    /// Checks the prefix length, that both networks are network addresses and that they differ.
    fn check(&self) -> io::Result<()> {
        let mask = u32::from(self.netmask());
        let aligned = |net: Ipv4Addr| u32::from(net) & !mask == 0;
        if !(8..=24).contains(&self.prefix_len) || !aligned(self.home) || !aligned(self.office) {
            return Err(error(format!(
                "bad LAN addressing {self:?}: want network addresses, prefix 8 to 24"
            )));
        }
        if self.contains(Lan::Office, &self.home.to_string()) {
            return Err(error(format!("bad LAN addressing {self:?}: home and office are the same network")));
        }
        Ok(())
    }
}

/// An address the uplink got by DHCP, and how long that took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// CIDR, e.g. "198.51.100.117/24".
    pub address: String,
    pub lan: Lan,
    /// From the action (NM start, `nm_up`...) until NM had the device activated with it.
    pub elapsed: Duration,
}

impl Lease {
    /// The address without its prefix.
    pub fn ip(&self) -> &str {
        self.address.split_once('/').map_or(&self.address, |(ip, _)| ip)
    }
}

pub struct NmWorld {
    // Dropped after NmWorld::drop has stopped NM and nm-dispatcher.
    world: World,
    options: NmOptions,
    home: String,
    office: String,
    /// `<dir>/nm`.
    nm_dir: PathBuf,
    uuid: String,
    /// The running NetworkManager's pid.
    nm_pid: Mutex<Option<u32>>,
}

impl Deref for NmWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl NmWorld {
    /// An NmWorld with default options; panics (after cleaning up) if it cannot be set up.
    #[track_caller]
    pub fn new(tag: &str) -> NmWorld {
        NmWorld::with_options(tag, NmOptions::default())
    }

    /// As [`NmWorld::new`], with options.
    #[track_caller]
    pub fn with_options(tag: &str, options: NmOptions) -> NmWorld {
        match NmWorld::try_new(tag, options) {
            Ok(world) => world,
            Err(e) => panic!("cannot set up NM test world `{tag}`: {e}"),
        }
    }

    /// Sets up the World (host netns, bus, polkitd), both LANs with dnsmasq, the uplink in home,
    /// and NetworkManager, and waits for the first lease. On error, everything is removed again.
    pub fn try_new(tag: &str, options: NmOptions) -> io::Result<NmWorld> {
        options.lans.check()?;
        let t0 = Instant::now();
        let world = World::try_new_bare(tag)?;
        let t1 = Instant::now();
        let home = world.lan_ns().to_string();
        let office = format!("{}-office", world.id());
        let nm_dir = world.dir().join("nm");
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_string();
        let nm = NmWorld { world, options, home, office, nm_dir, uuid, nm_pid: Mutex::new(None) };
        for lan in Lan::ALL {
            nm.setup_lan(lan)?;
        }
        let host = nm.host_ns();
        let peer = ["type", "veth", "peer", "name", AP_DEV, "netns", &nm.home];
        nm.ip(host, &[&["link", "add", UPLINK][..], &peer].concat())?;
        nm.ip(&nm.home, &["link", "set", AP_DEV, "master", BRIDGE, "up"])?;
        // Up before NM starts: when NM itself set it up, the first DHCPDISCOVER was sometimes
        // lost (the bridge port not yet forwarding?) and the lease came ~3 s later, on retry.
        nm.ip(host, &["link", "set", UPLINK, "up"])?;
        nm.write_nm_config()?;
        nm.write_dispatcher_service()?;
        let t2 = Instant::now();
        let lease = nm.start_nm().map_err(|e| error(format!("{e}\n{}", nm.logs_tail())))?;
        eprintln!(
            "[{}] NM world up in {:.3}s (world {:.3}s, LANs {:.3}s, NM start -> lease {} {:.3}s)",
            nm.id(),
            t0.elapsed().as_secs_f64(),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            lease.address,
            lease.elapsed.as_secs_f64()
        );
        Ok(nm)
    }

    /// The underlying World (also reachable through `Deref`).
    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn options(&self) -> &NmOptions {
        &self.options
    }

    /// The LANs' addressing ([`NmOptions::lans`]).
    pub fn lans(&self) -> &LanAddressing {
        &self.options.lans
    }

    /// The netns of `lan` (`<id>-home`, `<id>-office`).
    pub fn lan_ns(&self, lan: Lan) -> &str {
        match lan {
            Lan::Home => &self.home,
            Lan::Office => &self.office,
        }
    }

    /// `<dir>/nm`: `etc/` (NM's /etc/NetworkManager), `lib/` (/var/lib/NetworkManager),
    /// `run/` (/run), `lib-dispatcher.d/` (/usr/lib/NetworkManager/dispatcher.d).
    pub fn nm_dir(&self) -> &Path {
        &self.nm_dir
    }

    /// The UUID of the profile [`PROFILE`] (`CONNECTION_UUID` in dispatcher calls).
    pub fn profile_uuid(&self) -> &str {
        &self.uuid
    }

    /// The tails of NM's, nm-dispatcher's and both dnsmasqs' logs, for error messages.
    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for name in ["NetworkManager", "nm-dispatcher", "dnsmasq-home", "dnsmasq-office"] {
            let text = fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default();
            if !text.trim().is_empty() {
                out.push_str(&format!("--- {name}.log (tail)\n{}\n", tail(&text, 25)));
            }
        }
        out
    }
}

impl Drop for NmWorld {
    fn drop(&mut self) {
        // NM first (so that it triggers no more dispatcher activations), then nm-dispatcher,
        // which the bus started and Procs does not know; World's Drop does the rest.
        if let Some(pid) = self.nm_pid.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Err(e) = self.world.procs.stop(pid) {
                eprintln!("vmnet-tests: cannot stop NetworkManager ({pid}): {e}");
            }
        }
        self.stop_dispatcher();
        if std::thread::panicking() {
            let current = lan::current_lan_of(&self.home, &self.office);
            eprintln!("[{}] NM world at the panic: uplink on {current:?}", self.world.id());
        }
    }
}

//! A World: two network namespaces (the VM host with its Wi-Fi uplink, and the LAN), a private
//! system bus and a real polkitd, all of it removed again on Drop.
//!
//! ```text
//!  <id>-host                                   <id>-lan
//!  wlan0 198.51.100.10/24  <==== veth ====>  lan0 198.51.100.2/24 (LAN client)
//!  default via 198.51.100.1                       198.51.100.1/24 (router)
//! ```

use crate::bus::Bus;
use crate::cmd::{self, in_netns, run};
use crate::polkit::Polkit;
use crate::procs::{start_time, Procs};
use crate::stale;
use crate::users::TestUsers;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The host's uplink in the host netns.
pub const UPLINK: &str = "wlan0";
/// The uplink's peer in the LAN netns.
pub const LAN_DEV: &str = "lan0";
/// The host's address on the uplink.
pub const HOST_ADDR: &str = "198.51.100.10";
/// The LAN router, the host's default gateway.
pub const LAN_ROUTER: &str = "198.51.100.1";
/// A client on the LAN (lan0's primary address, so the source of what the LAN sends).
pub const LAN_CLIENT: &str = "198.51.100.2";

/// Which vmnet files the World's bus and polkitd use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// The checkout's policy and actions (`packaging/`); vmnetd is started by the test.
    Checkout,
    /// What the installed package put under /usr and /etc: its D-Bus policy, polkit actions and
    /// rules, and /usr/bin/vmnetctl. The bus runs in the host netns with the World's
    /// `etc-vmnet/` and `var-lib-vmnet/` bind-mounted over /etc/vmnet and /var/lib/vmnet, so that
    /// a D-Bus-activated /usr/sbin/vmnetd runs there, on the World's files.
    Installed,
}

pub struct World {
    id: String,
    packaging: Packaging,
    dir: PathBuf,
    host: String,
    lan: String,
    pub(crate) procs: Procs,
    netns: Mutex<Vec<String>>,
    bus: Option<Bus>,
    polkit: Option<Polkit>,
    pub(crate) guests: AtomicUsize,
}

fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let tag: String =
        tag.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_ascii_lowercase();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}-{n}", std::process::id())
}

impl World {
    /// Sets up a complete World; panics (after cleaning up what was built) if that fails.
    #[track_caller]
    pub fn new(tag: &str) -> World {
        match World::try_new(tag) {
            Ok(world) => world,
            Err(e) => panic!("cannot set up test world `{tag}`: {e}"),
        }
    }

    /// Sets up a complete World. On error, what was built so far is removed again.
    pub fn try_new(tag: &str) -> io::Result<World> {
        World::build(tag, true, Packaging::Checkout)
    }

    /// A World that uses the installed package's files (see [`Packaging::Installed`]).
    pub fn try_new_installed(tag: &str) -> io::Result<World> {
        World::build(tag, true, Packaging::Installed)
    }

    /// A World with only the host netns (`lo` up, no uplink, no LAN), the bus and polkitd: for
    /// callers that build their own uplink, like [`crate::nm::NmWorld`] (its uplink gets its
    /// address by DHCP). [`World::lan_ns`] then names `<id>-home`, which the caller creates.
    pub fn try_new_bare(tag: &str) -> io::Result<World> {
        World::build(tag, false, Packaging::Checkout)
    }

    fn build(tag: &str, with_lan: bool, packaging: Packaging) -> io::Result<World> {
        stale::sweep_once();
        let t0 = Instant::now();
        let id = unique_id(tag);
        let dir = PathBuf::from(format!("/tmp/{}{id}", stale::DIR_PREFIX));
        if dir.exists() {
            stale::clean(&dir); // left by an earlier test process that had our pid
        }
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let me = std::process::id();
        let owner = format!("{me} {}\n", start_time(me).unwrap_or(0));
        fs::write(dir.join("owner"), owner)?;
        let mut world = World {
            host: format!("{id}-host"),
            lan: if with_lan { format!("{id}-lan") } else { format!("{id}-home") },
            procs: Procs::new(dir.join("pids")),
            netns: Mutex::new(Vec::new()),
            bus: None,
            polkit: None,
            guests: AtomicUsize::new(0),
            id,
            packaging,
            dir,
        };
        if with_lan {
            world.setup_network()?;
        } else {
            world.add_netns(&world.host)?;
            world.ip(&world.host, &["link", "set", "lo", "up"])?;
        }
        let t1 = Instant::now();
        let users = TestUsers::write(&world.dir)?;
        world.bus = Some(Bus::start(&world.dir, &world.procs, &users, packaging, &world.host)?);
        let t2 = Instant::now();
        world.polkit = Some(Polkit::start(&world.dir, &world.procs, world.bus(), &users, packaging)?);
        let t3 = Instant::now();
        eprintln!(
            "[{}] world up in {:.3}s (netns {:.3}s, dbus-daemon {:.3}s, polkitd {:.3}s)",
            world.id,
            (t3 - t0).as_secs_f64(),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64()
        );
        Ok(world)
    }

    fn setup_network(&self) -> io::Result<()> {
        let (host, lan) = (self.host.clone(), self.lan.clone());
        self.add_netns(&host)?;
        self.add_netns(&lan)?;
        self.ip(&host, &["link", "set", "lo", "up"])?;
        self.ip(&lan, &["link", "set", "lo", "up"])?;
        let peer = ["type", "veth", "peer", "name", LAN_DEV, "netns", &lan];
        self.ip(&host, &[&["link", "add", UPLINK][..], &peer].concat())?;
        // .2 first: the primary address, hence the source of what the LAN client sends.
        self.ip(&lan, &["addr", "add", "198.51.100.2/24", "dev", LAN_DEV])?;
        self.ip(&lan, &["addr", "add", "198.51.100.1/24", "dev", LAN_DEV])?;
        self.ip(&lan, &["link", "set", LAN_DEV, "up"])?;
        self.ip(&host, &["addr", "add", "198.51.100.10/24", "dev", UPLINK])?;
        self.ip(&host, &["link", "set", UPLINK, "up"])?;
        // The uplink keeps the kernel's proxy_delay (0.8 s, from the root netns: a netns has
        // no net.ipv4.neigh.default of its own); vmnetd sets it to 0 while it has guests.
        self.ip(&host, &["route", "add", "default", "via", LAN_ROUTER]).map(drop)
    }

    /// Whose vmnet files the bus and polkitd use.
    pub fn packaging(&self) -> Packaging {
        self.packaging
    }

    /// Short unique id of this World (netns names and the directory derive from it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `/tmp/vmnet-test-<id>`: mode 0755, removed on Drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The VM host's netns (uplink `wlan0`; vmnetd and the taps live here).
    pub fn host_ns(&self) -> &str {
        &self.host
    }

    /// The LAN's netns (`lan0` with the LAN client .2 and the router .1).
    pub fn lan_ns(&self) -> &str {
        &self.lan
    }

    /// The private system bus.
    pub fn bus(&self) -> &Bus {
        self.bus.as_ref().expect("the world's bus is not up")
    }

    /// `unix:path=<dir>/system_bus_socket`.
    pub fn bus_address(&self) -> &str {
        self.bus().address()
    }

    /// The polkitd on the private bus.
    pub fn polkit(&self) -> &Polkit {
        self.polkit.as_ref().expect("the world's polkitd is not up")
    }

    /// Creates netns `name` and deletes it on Drop.
    pub fn add_netns(&self, name: &str) -> io::Result<()> {
        self.register_netns(name)?;
        run(Command::new("ip").args(["netns", "add", name])).map(drop)
    }

    /// Makes Drop delete netns `name` (created by someone else).
    pub fn register_netns(&self, name: &str) -> io::Result<()> {
        let mut list = self.netns.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("netns"))?;
        io::Write::write_all(&mut file, format!("{name}\n").as_bytes())?;
        list.push(name.to_string());
        Ok(())
    }

    /// `ip -n NS ARGS...`: stdout, or an error with stderr.
    pub fn ip(&self, ns: &str, args: &[&str]) -> io::Result<String> {
        cmd::ip(ns, args)
    }

    /// Runs `argv` inside netns `ns` and returns its output, whatever the exit status.
    pub fn exec_in(&self, ns: &str, argv: &[&str]) -> io::Result<Output> {
        cmd::output(in_netns(ns, argv).stdin(Stdio::null()))
    }

    /// Starts `cmd` as a process of this World (own process group, stopped on Drop).
    pub fn spawn(&self, name: &str, cmd: Command) -> io::Result<u32> {
        self.procs.spawn(name, cmd).map(|(pid, _)| pid)
    }

    /// Starts `argv` inside netns `ns`, logging to `<dir>/<name>.log`; stopped on Drop.
    pub fn spawn_in(&self, ns: &str, name: &str, argv: &[&str]) -> io::Result<u32> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut cmd = in_netns(ns, argv);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        self.spawn(name, cmd)
    }

    /// Reads sysctl `key` (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`) inside netns `ns`.
    pub fn sysctl(&self, ns: &str, key: &str) -> io::Result<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = run(&mut in_netns(ns, &["cat", &path]))?;
        Ok(out.trim().to_string())
    }

    /// Writes sysctl `key` inside netns `ns`.
    pub fn set_sysctl(&self, ns: &str, key: &str, value: &str) -> io::Result<()> {
        let assignment = format!("{key}={value}");
        run(&mut in_netns(ns, &["sysctl", "-qw", &assignment])).map(drop)
    }

    /// Sets `net.ipv4.neigh.<dev>.proxy_delay=0` in the host netns, so that proxy ARP on `dev`
    /// answers at once. Needed per device: taps that vmnetd creates get the root netns's
    /// default (0.8 s), because a netns has no `neigh.default` of its own.
    pub fn fast_proxy_arp(&self, dev: &str) -> io::Result<()> {
        self.set_sysctl(&self.host, &format!("net.ipv4.neigh.{dev}.proxy_delay"), "0")
    }

    /// The numeric uid of the test user that is in group `vmnet` (as polkitd sees it).
    pub fn tester_uid(&self) -> u32 {
        self.polkit().tester_uid()
    }

    /// `busctl --system ARGS...` on this World's bus, as root (`None`) or as `uid` (via setpriv,
    /// gid = uid, no supplementary groups). Example args: `["call", "org.vmnet", "/org/vmnet",
    /// "org.vmnet.Manager1", "Method", "s", "x"]`. stderr has the error *message* only.
    pub fn busctl_as(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Output> {
        self.bus().busctl_as(uid, args)
    }

    /// `gdbus COMMAND --system REST...` on this World's bus, as root or as `uid`; stderr has the
    /// D-Bus error name (see [`crate::bus::dbus_error_name`]).
    pub fn gdbus_as(&self, uid: Option<u32>, args: &[&str]) -> io::Result<Output> {
        self.bus().gdbus_as(uid, args)
    }
}

impl World {
    /// Prints the tail of every `<dir>/*.log` (after a panic, before they are removed).
    fn print_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "log") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if !text.trim().is_empty() {
                    eprintln!("--- {} (tail)\n{}", path.display(), cmd::tail(&text, 30));
                }
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.procs.stop_all();
        if std::thread::panicking() {
            self.print_logs();
        }
        let netns = std::mem::take(&mut *self.netns.lock().unwrap_or_else(|p| p.into_inner()));
        for ns in netns.iter().rev() {
            if let Err(e) = stale::remove_netns(ns) {
                eprintln!("vmnet-tests: cannot delete netns {ns}: {e}");
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("vmnet-tests: cannot remove {}: {e}", self.dir.display());
        }
    }
}

//! Start-up: takes the state directory's lock and the bus name (so a second vmnetd changes
//! nothing), wires the producers to the reconciler, converges, then runs until a signal or
//! until a long-lived task ends (which makes vmnetd exit non-zero, for systemd to restart it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use zbus::fdo::{DBusProxy, ObjectManager, RequestNameFlags, RequestNameReply};
use zbus::names::BusName;

use crate::arp::ArpProber;
use crate::bus::manager::Manager;
use crate::bus::publish::Publisher;
use crate::config::{Config, SourceKind};
use crate::dhcp::{self, Leases};
use crate::executor::sysctl::Sysctls;
use crate::executor::Executor;
use crate::ndp::{self, Routers};
use crate::netlink::Netlink;
use crate::reconciler::notify::WorldNotifier;
use crate::reconciler::{Inputs, Outputs, Reconciler};
use crate::state::StateFile;
use crate::uplink::kernel::KernelUplink;
use crate::uplink::networkmanager::NmUplink;
use crate::uplink::Source;
use crate::view::ManagerView;

/// Commands queued before callers wait.
const COMMAND_QUEUE: usize = 64;
/// Decline notices queued; more are dropped by the DHCP server.
const DECLINE_QUEUE: usize = 64;
/// Guests' IPv6 addresses found (or unused) queued; more wait in the Neighbor Discovery task.
const FOUND_QUEUE: usize = 64;
const LOCK_FILE: &str = "lock";

pub async fn run(config: Config, state_dir: PathBuf) -> Result<(), String> {
    let _lock = lock_state_dir(&state_dir)?;
    let state_file = StateFile::new(&state_dir);
    let state = state_file.load().map_err(|e| e.to_string())?;
    let connection = zbus::connection::Builder::system()
        .build()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    let authorizer =
        vmnet_polkit::Polkit::new(&connection).await.map_err(|e| format!("polkit proxy: {e}"))?;
    let bus = DBusProxy::new(&connection).await.map_err(|e| format!("bus proxy: {e}"))?;
    let (commands, command_queue) = mpsc::channel(COMMAND_QUEUE);
    let (view, view_reader) = watch::channel(ManagerView::default());
    let (ready, ready_reader) = watch::channel(false);
    let manager =
        Manager::new(commands, view_reader.clone(), ready_reader, Arc::new(authorizer), bus.clone());
    let server = connection.object_server();
    let serve = |e: zbus::Error| format!("cannot export {}: {e}", vmnet_dbus::MANAGER_PATH);
    server.at(vmnet_dbus::MANAGER_PATH, manager).await.map_err(serve)?;
    server.at(vmnet_dbus::MANAGER_PATH, ObjectManager).await.map_err(serve)?;
    own_bus_name(&connection, &bus).await?;

    // From here on this is the only vmnetd: it may touch the kernel.
    let (netlink, netlink_task) = Netlink::connect().map_err(|e| format!("cannot open rtnetlink: {e}"))?;
    let (source, source_task) = configured_source(&config, &connection).await?;
    let uplink = source.clone().follow().await?;
    let carriers = crate::carrier::follow().map_err(|e| format!("cannot follow tap carriers: {e}"))?;
    tokio::spawn(crate::bus::running::publish(connection.clone(), view_reader.clone(), carriers.clone()));
    let (leases, leases_reader) = watch::channel(Leases::default());
    let (declines, decline_queue) = mpsc::channel(DECLINE_QUEUE);
    let dhcp_task = config.dhcp.enabled.then(|| tokio::spawn(dhcp::run(leases_reader, declines)));
    let (routers, routers_reader) = watch::channel(Routers::default());
    let (found, found_queue) = mpsc::channel(FOUND_QUEUE);
    let ipv6 = config.ipv6.clone();
    let ndp_task = ipv6.enabled.then(|| tokio::spawn(ndp::router::run(routers_reader, found, ipv6)));
    let notifier = WorldNotifier {
        publisher: Publisher::new(connection.clone(), view_reader.clone(), carriers.now.clone()),
        announce: config.arp.announce,
    };
    let guests = state.guests.iter().map(|stored| stored.guest.clone()).collect();
    let first = uplink.borrow().clone();
    let mut reconciler = Reconciler::new(
        config,
        source,
        Executor::new(netlink, Sysctls::default()),
        ArpProber,
        state_file,
        state,
        first,
        Outputs { view, ready, leases, routers, notifier },
    );
    reconciler.start().await;
    crate::reconciler::notify::bring_links_up(guests);
    tracing::info!("vmnetd {} ready on {}", env!("CARGO_PKG_VERSION"), vmnet_dbus::BUS_NAME);

    let inputs =
        Inputs { uplink, commands: command_queue, declines: decline_queue, ndp: found_queue, taps: carriers };
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        () = reconciler.run(inputs) => Err("the reconciler stopped".into()),
        ended = netlink_task => Err(format!("the rtnetlink connection ended: {ended:?}")),
        ended = supervise(source_task) => Err(format!("the uplink's rtnetlink connection ended: {ended:?}")),
        ended = supervise(dhcp_task) => Err(match ended {
            Ok(Err(e)) => format!("the DHCP server stopped: {e}"),
            ended => format!("the DHCP server stopped: {ended:?}"),
        }),
        ended = supervise(ndp_task) => Err(format!("the IPv6 Neighbor Discovery task stopped: {ended:?}")),
        // Every source, not only NetworkManager's, needs the bus: D-Bus is vmnetd's interface.
        () = connection.closed() => Err("the system bus connection closed".into()),
        _ = terminate.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
    }
    .inspect(|()| tracing::info!("stopping; guests' taps and routes stay in place"))
}

/// Waits for a task that must never end; forever when there is none.
async fn supervise<T>(task: Option<tokio::task::JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Owns `org.vmnet`, or names the process that does.
async fn own_bus_name(connection: &zbus::Connection, bus: &DBusProxy<'_>) -> Result<(), String> {
    match connection.request_name_with_flags(vmnet_dbus::BUS_NAME, RequestNameFlags::DO_NOT_QUEUE).await {
        Ok(RequestNameReply::PrimaryOwner) => return Ok(()),
        Ok(_) | Err(zbus::Error::NameTaken) => {}
        Err(e) => return Err(format!("cannot own {}: {e}", vmnet_dbus::BUS_NAME)),
    }
    let name = BusName::try_from(vmnet_dbus::BUS_NAME).map_err(|e| e.to_string())?;
    let owner = match bus.get_connection_unix_process_id(name).await {
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process".to_owned(),
    };
    Err(format!("{} is already owned by {owner} (another vmnetd?); changing nothing", vmnet_dbus::BUS_NAME))
}

/// Takes an exclusive lock on the state directory for as long as the returned file is open.
fn lock_state_dir(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(failed)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() { "another vmnetd".to_owned() } else { format!("vmnetd {holder}") };
        return Err(format!("{} is in use by {who}; changing nothing", dir.display()));
    }
    file.set_len(0).map_err(failed)?;
    file.rewind().map_err(failed)?;
    writeln!(file, "pid {}", std::process::id()).map_err(failed)?;
    Ok(file)
}

/// The source, with the task of its own rtnetlink connection if it has one (to supervise).
async fn configured_source(
    config: &Config,
    connection: &zbus::Connection,
) -> Result<(Source, Option<tokio::task::JoinHandle<()>>), String> {
    Ok(match config.uplink.source {
        SourceKind::Kernel => {
            let interface = config.uplink.interface.clone().ok_or("uplink.interface is required")?;
            // A socket of its own: a netlink socket runs one dump at a time (EBUSY otherwise),
            // and the executor's dumps must not make a reading of the uplink fail.
            let (netlink, task) = Netlink::connect_reader()
                .map_err(|e| format!("cannot open rtnetlink for the uplink: {e}"))?;
            let source = KernelUplink::new(netlink, &config.uplink, interface, config.ipv6.enabled);
            (Source::Kernel(source), Some(task))
        }
        SourceKind::NetworkManager => (
            Source::NetworkManager(
                NmUplink::new(connection.clone(), &config.uplink, config.ipv6.enabled)
                    .await
                    .map_err(|e| format!("NetworkManager source: {e}"))?,
            ),
            None,
        ),
    })
}

//! vmnetd: puts virtual machines on the laptop's Wi-Fi LAN (routed taps, proxy ARP) and
//! re-homes them when the uplink moves to another subnet.

mod allocator;
mod arp;
mod bus;
mod config;
mod dhcp;
mod executor;
mod model;
mod names;
mod packet;
mod planner;
mod qmp;
mod reconciler;
mod state;
mod uplink;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use vmnetd_cli::Args;
use zbus::fdo::{DBusProxy, ObjectManager, RequestNameFlags, RequestNameReply};

use bus::manager::Manager;
use bus::publish::Publisher;
use config::{Config, SourceKind};
use executor::netlink::Netlink;
use executor::sysctl::Sysctls;
use executor::Executor;
use reconciler::Reconciler;
use state::StateFile;
use uplink::kernel::KernelUplink;
use uplink::networkmanager::NmUplink;
use uplink::{Source, UplinkSource};
use view::ManagerView;

/// Pending events before senders wait: a roam's burst fits easily.
const EVENT_QUEUE: usize = 256;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.state_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, state_dir: PathBuf) -> Result<(), String> {
    let state_file = StateFile::new(&state_dir);
    let state = state_file.load().map_err(|e| e.to_string())?;
    let netlink = Netlink::connect().map_err(|e| format!("cannot open rtnetlink: {e}"))?;
    let connection = zbus::connection::Builder::system()
        .build()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    let source = configured_source(&config, &netlink, &connection).await?;
    let uplink = source.read().await.unwrap_or_else(|e| {
        tracing::warn!("cannot read the uplink yet: {e}");
        None
    });
    let authorizer =
        vmnet_polkit::Polkit::new(&connection).await.map_err(|e| format!("polkit proxy: {e}"))?;
    let bus = DBusProxy::new(&connection).await.map_err(|e| format!("bus proxy: {e}"))?;
    let (events, event_queue) = mpsc::channel(EVENT_QUEUE);
    let (view, view_reader) = watch::channel(ManagerView::default());
    let manager = Manager::new(events.clone(), view_reader.clone(), Arc::new(authorizer), bus.clone());
    let server = connection.object_server();
    let serve = |e: zbus::Error| format!("cannot export {}: {e}", vmnet_dbus::MANAGER_PATH);
    server.at(vmnet_dbus::MANAGER_PATH, manager).await.map_err(serve)?;
    server.at(vmnet_dbus::MANAGER_PATH, ObjectManager).await.map_err(serve)?;

    let executor = Executor::new(netlink, Sysctls::default());
    let publisher = Publisher::new(connection.clone(), view_reader);
    let (leases, leases_reader) = watch::channel(dhcp::Leases::default());
    if config.dhcp.enabled {
        tokio::spawn(dhcp::run(leases_reader, events.clone()));
    }
    let mut reconciler = Reconciler::new(
        config,
        source.clone(),
        executor,
        state_file,
        state,
        uplink.clone(),
        view,
        publisher,
        leases,
    );
    reconciler.start().await;
    source.clone().watch(uplink.clone(), events.clone()).await?;
    // A change between the first read and the subscription would otherwise go unnoticed.
    if let Ok(now) = source.read().await {
        if now != uplink {
            let _ = events.send(reconciler::Event::Uplink(now)).await;
        }
    }

    let reply = connection
        .request_name_with_flags(vmnet_dbus::BUS_NAME, RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(|e| format!("cannot own {}: {e}", vmnet_dbus::BUS_NAME))?;
    if reply != RequestNameReply::PrimaryOwner {
        return Err(format!("{} is already owned by another process", vmnet_dbus::BUS_NAME));
    }
    tracing::info!("vmnetd {} ready on {}", env!("CARGO_PKG_VERSION"), vmnet_dbus::BUS_NAME);

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        () = reconciler.run(event_queue) => Err("the reconciler stopped".into()),
        _ = terminate.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
    }
    .inspect(|()| tracing::info!("stopping; guests' taps and routes stay in place"))
}

async fn configured_source(
    config: &Config,
    netlink: &Netlink,
    connection: &zbus::Connection,
) -> Result<Source, String> {
    Ok(match config.uplink.source {
        SourceKind::Kernel => {
            let interface = config.uplink.interface.clone().ok_or("uplink.interface is required")?;
            Source::Kernel(KernelUplink::new(netlink.clone(), &config.uplink, interface))
        }
        SourceKind::NetworkManager => Source::NetworkManager(
            NmUplink::new(connection.clone(), &config.uplink)
                .await
                .map_err(|e| format!("NetworkManager source: {e}"))?,
        ),
    })
}

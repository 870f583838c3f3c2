//! Start-up: opens the kernel and bus connections, builds the tasks and runs them until a
//! signal or a failure.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use zbus::fdo::{DBusProxy, ObjectManager, RequestNameFlags, RequestNameReply};

use crate::bus::manager::Manager;
use crate::bus::publish::Publisher;
use crate::config::{Config, SourceKind};
use crate::executor::netlink::Netlink;
use crate::executor::sysctl::Sysctls;
use crate::executor::Executor;
use crate::reconciler::Reconciler;
use crate::state::StateFile;
use crate::uplink::kernel::KernelUplink;
use crate::uplink::networkmanager::NmUplink;
use crate::uplink::{Source, UplinkSource};
use crate::view::ManagerView;

/// Pending events before senders wait: a roam's burst fits easily.
const EVENT_QUEUE: usize = 256;

pub async fn run(config: Config, state_dir: PathBuf) -> Result<(), String> {
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
    let (leases, leases_reader) = watch::channel(crate::dhcp::Leases::default());
    if config.dhcp.enabled {
        tokio::spawn(crate::dhcp::run(leases_reader, events.clone()));
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
            let _ = events.send(crate::reconciler::Event::Uplink(now)).await;
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

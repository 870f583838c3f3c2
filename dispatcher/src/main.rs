//! vmnet-dispatcher: a NetworkManager dispatcher plugin, installed as
//! `/usr/lib/NetworkManager/dispatcher.d/90-vmnet`.
//!
//! NM runs it as `90-vmnet INTERFACE ACTION` for every network event. On the events that can
//! move the uplink it calls `org.vmnet.Manager1.Resync()` on the system bus, which also
//! D-Bus-activates vmnetd when it is not running. vmnetd follows NM over D-Bus on its own; this
//! is a nudge. It never makes NM wait long (2 s at most), always exits 0, and logs one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vmnet_dbus::Manager1Proxy;
use vmnet_dispatcher_cli::{Args, TIMEOUT};

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(action) = args.resync_action() else {
        return ExitCode::SUCCESS;
    };
    let started = Instant::now();
    let outcome = match resync_within(TIMEOUT) {
        Ok(()) => "vmnetd resynced".to_owned(),
        Err(reason) => format!("vmnetd not resynced: {reason}"),
    };
    let shown = args.shown_interface();
    eprintln!("vmnet-dispatcher: {shown} {action}: {outcome} ({} ms)", started.elapsed().as_millis());
    ExitCode::SUCCESS
}

fn resync_within(timeout: Duration) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no async runtime: {e}"))?;
    runtime.block_on(async {
        match tokio::time::timeout(timeout, resync()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    })
}

async fn resync() -> Result<(), String> {
    let connection = zbus::Connection::system().await.map_err(|e| format!("system bus: {e}"))?;
    let manager = Manager1Proxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    // The call itself starts vmnetd through D-Bus activation when it is not running.
    manager.resync().await.map_err(|e| match e {
        // Name the D-Bus error (e.g. ServiceUnknown when vmnetd cannot be activated).
        vmnet_dbus::Error::ZBus(zbus::Error::FDO(fdo)) => fdo.to_string(),
        other => other.to_string(),
    })
}

//! vmnet-tray: vmnetd's state and its virtual machines as a StatusNotifierItem (KDE Plasma 5
//! and 6, XFCE, Cinnamon, GNOME with the AppIndicator extension). The menu lists every guest
//! with its address, state and whether it runs, copies its address or QEMU arguments, adds and
//! removes guests; a re-home posts a notification. It follows vmnetd's signals, never polls,
//! and never starts vmnetd by itself.

mod actions;
mod desktop;
mod menu;
mod state;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use ksni::TrayMethods;
use vmnet_tray::cli::Args;

use crate::menu::VmnetTray;
use crate::state::{Change, State};

/// How long a burst of signals (a re-home changes every guest) is gathered before one re-read.
const BURST: Duration = Duration::from_millis(30);

/// Whether the user running this is a member of group `vmnet` (by /etc/group, as polkit reads it).
fn in_vmnet_group() -> bool {
    let Ok(Some(group)) = nix::unistd::Group::from_name("vmnet") else { return false };
    let uid = nix::unistd::getuid();
    let Ok(Some(user)) = nix::unistd::User::from_uid(uid) else { return false };
    user.gid == group.gid || group.mem.contains(&user.name)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.autostart && !in_vmnet_group() {
        tracing::info!("not a member of group vmnet: not starting (--autostart)");
        return ExitCode::SUCCESS;
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmnet-tray: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let system = zbus::Connection::system().await.map_err(|e| format!("cannot reach the system bus: {e}"))?;
    let session =
        zbus::Connection::session().await.map_err(|e| format!("cannot reach the session bus: {e}"))?;
    let state = State::new(system).await.map_err(|e| format!("D-Bus: {e}"))?;
    let mut changes = state.changes().await.map_err(|e| format!("cannot follow vmnetd: {e}"))?;
    let (commands, queue) = tokio::sync::mpsc::unbounded_channel();
    let tray = VmnetTray {
        snapshot: state.read().await,
        message: String::new(),
        can_prompt: desktop::can_prompt(),
        commands,
    };
    // Without a well-known name: the AppIndicator extension of GNOME 46 sometimes misses
    // items that own one.
    let handle = tray
        .disable_dbus_name(true)
        .spawn()
        .await
        .map_err(|e| format!("cannot show the tray icon (is there a StatusNotifierWatcher?): {e}"))?;
    tokio::spawn(actions::run(queue, state.connection().clone(), session.clone(), handle.clone()));
    tracing::info!("vmnet-tray is up");
    while let Some(first) = changes.next().await {
        let mut burst = vec![first];
        while let Ok(Some(more)) = tokio::time::timeout(BURST, changes.next()).await {
            burst.push(more);
        }
        for change in &burst {
            if let Change::Rehomed { sender, old_subnet, new_subnet } = change {
                if state.is_vmnetd(sender).await {
                    let count = state.read().await.guests.len();
                    let body = format!(
                        "From {old_subnet}: {count} guest{} got addresses in the new subnet.",
                        if count == 1 { "" } else { "s" }
                    );
                    desktop::notify(&session, &format!("Guests moved to {new_subnet}"), &body).await;
                }
            }
        }
        let snapshot = state.read().await;
        if handle.update(|tray| tray.snapshot = snapshot).await.is_none() {
            return Err("the tray service stopped".into());
        }
    }
    Err("the system bus connection ended".into())
}

//! Root integration-test harness for vmnet: real peers in private namespaces.
//!
//! A [`World`] is a VM host netns with a Wi-Fi-like uplink to a LAN netns, a private
//! dbus-daemon as the system bus, and a real polkitd on it (see `world.rs`). Guests sit behind
//! taps ([`GuestHandle`] for a netns guest, [`QemuGuest`] for a VM), vmnetd runs in the host netns ([`VmnetdHandle`]). Everything a World
//! creates is removed on Drop, also after a panic; Worlds of test processes that were killed are
//! removed by the next World. The machine's root netns and /etc are never changed.
//!
//! Everything here needs root: start each test with [`require_root!`].

mod arpwatch;
mod cmd;
mod guest_image;
mod lan;
mod procs;
mod stale;
pub mod users;

pub mod bus;
pub mod checks;
pub mod client;
pub mod container;
pub mod guest;
mod guest6;
pub mod hostile;
mod hostile6;
pub mod ip6;
pub mod lease;
pub mod ndp;
pub mod nm;
pub mod polkit;
pub mod qemu;
pub mod qmp;
pub mod shell;
pub mod standin;
pub mod tray;
pub mod vmnetctl;
pub mod vmnetd;
pub mod wifi;
pub mod world;

pub use arpwatch::{ArpSeen, ArpWatch};
pub use bus::{dbus_error_name, Bus};
pub use checks::{kernel_config, KernelState};
pub use client::{Client, Opt};
pub use cmd::wait_until;
pub use container::Container;
pub use guest::{GuestHandle, Ipv6Guest};
pub use ip6::{Addr6, Prefix6};
pub use lease::Lease;
pub use nix::sys::signal::Signal;
pub use nm::{Lan, NmOptions, NmWorld, Slaac};
pub use polkit::{Polkit, MANAGE_GUESTS};
pub use qemu::QemuGuest;
pub use qmp::{Qmp, QmpError};
pub use shell::GnomeShell;
pub use standin::{DhcpServer, Udhcpd};
pub use users::{GROUP, NOBODY, TESTER};
pub use vmnetctl::VmnetctlProcess;
pub use vmnetd::VmnetdHandle;
pub use world::{Packaging, World, HOST_ADDR, LAN_CLIENT, LAN_DEV, LAN_ROUTER, UPLINK};

use std::path::PathBuf;

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The workspace root (the directory with `packaging/`), found from this crate's manifest dir.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Fails the calling test, naming what it needs, unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or(module_path!());
            // A test that cannot run fails, with the reason: it never passes silently.
            panic!(
                "{test} needs root (network namespaces, taps, polkitd): run tests/run.sh, which uses sudo"
            );
        }
    };
}

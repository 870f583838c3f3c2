//! The org.vmnet D-Bus contract: names, errors, shared types and client proxies.
//!
//! vmnetd, vmnet-dispatcher, vmnetctl and the tests all speak through this crate, so the wire
//! names live in one place. The API is documented in `docs/dbus-api.md`; the introspection XML
//! is `dbus/org.vmnet.Manager1.xml`.

mod error;
mod guest_info;
mod path;
mod proxy;
mod qemu;

pub use error::Error;
pub use guest_info::{managed_guests, GuestInfo};
pub use path::{guest_name_from_path, guest_object_path};
pub use proxy::{Guest1Proxy, Manager1Proxy, RehomedArgs, RehomedStream};
pub use qemu::{qemu_args, shell_line, shell_word};

/// Well-known bus name of vmnetd.
pub const BUS_NAME: &str = "org.vmnet";
/// Object path of the manager (also the ObjectManager root).
pub const MANAGER_PATH: &str = "/org/vmnet";
/// Interface of the manager object.
pub const MANAGER_INTERFACE: &str = "org.vmnet.Manager1";
/// Interface of each guest object.
pub const GUEST_INTERFACE: &str = "org.vmnet.Guest1";
/// Guest objects live below this path.
pub const GUESTS_PATH: &str = "/org/vmnet/guests";

/// The QEMU netdev id of a guest's tap, in the arguments `vmnetctl qemu-args` prints
/// (`-netdev tap,id=vmnet,...`); vmnetd's QMP `set_link` names the same id. It is a QEMU
/// identifier, not a link name.
pub const QEMU_NETDEV_ID: &str = "vmnet";

/// Keys accepted in the `options` dictionary of `AddGuest`.
pub mod add_option {
    /// `u`: uid that owns the tap (default: the caller).
    pub const OWNER: &str = "owner";
    /// `s`: MAC address of the guest's NIC (default: a stable locally administered one).
    pub const MAC: &str = "mac";
    /// `s`: IPv4 address requested in the current subnet.
    pub const ADDRESS: &str = "address";
    /// `s`: path of the guest's QMP socket.
    pub const QMP: &str = "qmp";
    /// Every accepted key.
    pub const ALL: [&str; 4] = [OWNER, MAC, ADDRESS, QMP];
}

/// One row of `ListGuests`: name, tap, mac, address ("" when none), state.
pub type GuestRow = (String, String, String, String, String);

/// One counter of the `Dropped` property: name, what it counts, packets, bytes.
pub type DroppedRow = (String, String, u64, u64);

/// Values of the manager's `State` property.
pub mod manager_state {
    pub const ONLINE: &str = "online";
    pub const OFFLINE: &str = "offline";
}

/// Values of a guest's `State` property.
pub mod guest_state {
    /// Routed at its address in the uplink's subnet.
    pub const ACTIVE: &str = "active";
    /// The uplink is offline: the tap stays, nothing is routed.
    pub const OFFLINE: &str = "offline";
    /// Online, but no free address was found for it.
    pub const CONFLICT: &str = "conflict";
}

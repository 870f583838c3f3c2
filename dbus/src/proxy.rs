use std::collections::HashMap;

use zbus::proxy;
use zbus::{OwnedObjectPath, Variant};

use crate::{DroppedRow, Error, GuestRow};

/// Client side of `org.vmnet.Manager1` at `/org/vmnet`.
#[proxy(interface = "org.vmnet.Manager1", default_service = "org.vmnet", default_path = "/org/vmnet")]
pub trait Manager1 {
    /// Creates a guest and its tap; returns the guest's object path.
    fn add_guest(&self, name: &str, options: HashMap<&str, Variant<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Removes a guest, its route and its tap.
    fn remove_guest(&self, name: &str) -> Result<(), Error>;

    /// Every guest: name, tap, mac, address ("" when none), state.
    fn list_guests(&self) -> Result<Vec<GuestRow>, Error>;

    /// Re-reads the uplink and reconciles the kernel state.
    fn resync(&self) -> Result<(), Error>;

    /// Emitted when the uplink moves to another subnet and the guests were re-homed.
    #[zbus(signal)]
    fn rehomed(&self, old_subnet: &str, new_subnet: &str) -> zbus::Result<()>;

    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn uplink(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn host_address(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn subnet(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn nameservers(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn prefix6(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gateway6(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn nameservers6(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn problems(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Read from the kernel at every Get; no change signal.
    #[zbus(property)]
    fn dropped(&self) -> zbus::Result<Vec<DroppedRow>>;
}

/// Client side of `org.vmnet.Guest1` at `/org/vmnet/guests/<escaped name>`.
#[proxy(interface = "org.vmnet.Guest1", default_service = "org.vmnet")]
pub trait Guest1 {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn tap(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn mac(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn owner(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn address(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Why the guest is not `active` ("" when it is).
    #[zbus(property)]
    fn state_reason(&self) -> zbus::Result<String>;
    /// The QMP socket registered with `AddGuest` ("" when none).
    #[zbus(property)]
    fn qmp(&self) -> zbus::Result<String>;
    /// Whether something (QEMU) holds the tap (its carrier is on).
    #[zbus(property)]
    fn running(&self) -> zbus::Result<bool>;
    /// Its IPv6 addresses that are routed.
    #[zbus(property)]
    fn addresses6(&self) -> zbus::Result<Vec<String>>;
}

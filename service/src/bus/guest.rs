//! `/org/vmnet/guests/<escaped name>`: org.vmnet.Guest1.

use tokio::sync::watch;
use zbus::interface;

use crate::carrier::Carriers;
use crate::view::{GuestView, ManagerView};

pub struct GuestObject {
    name: String,
    view: watch::Receiver<ManagerView>,
    carriers: watch::Receiver<Carriers>,
}

impl GuestObject {
    pub fn new(
        name: String,
        view: watch::Receiver<ManagerView>,
        carriers: watch::Receiver<Carriers>,
    ) -> Self {
        Self { name, view, carriers }
    }

    fn read<T: Default>(&self, field: impl FnOnce(&GuestView) -> T) -> T {
        self.view.borrow().guests.get(&self.name).map(field).unwrap_or_default()
    }
}

#[interface(name = "org.vmnet.Guest1")]
impl GuestObject {
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn tap(&self) -> String {
        self.read(|g| g.tap.clone())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn mac(&self) -> String {
        self.read(|g| g.mac.clone())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn owner(&self) -> u32 {
        self.read(|g| g.owner)
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.read(|g| g.address.clone())
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.read(|g| g.state.to_owned())
    }

    #[zbus(property)]
    fn state_reason(&self) -> String {
        self.read(|g| g.reason.clone())
    }

    /// Its IPv6 addresses that are routed (learned from its own Neighbor Discovery).
    #[zbus(property)]
    fn addresses6(&self) -> Vec<String> {
        self.read(|g| g.addresses6.clone())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn qmp(&self) -> String {
        self.read(|g| g.qmp.clone())
    }

    /// Whether something (QEMU) holds the tap: its carrier is on.
    #[zbus(property)]
    fn running(&self) -> bool {
        let tap = self.read(|g| g.tap.clone());
        self.carriers.borrow().get(&tap).copied().unwrap_or(false)
    }
}

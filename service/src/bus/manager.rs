//! `/org/vmnet`: org.vmnet.Manager1.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use vmnet_dbus::{DroppedRow, Error, GuestRow};
use vmnet_polkit::{Action, Authorizer};
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, OwnedObjectPath, Variant};

use super::{options, Command, NewGuest, Reply};
use crate::names::validate_guest_name;
use crate::view::ManagerView;

pub struct Manager {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<ManagerView>,
    /// True once the first full sync is done: reads wait for it, so no client ever sees the
    /// state before vmnetd has converged.
    ready: watch::Receiver<bool>,
    authorizer: Arc<dyn Authorizer>,
    bus: DBusProxy<'static>,
}

impl Manager {
    pub fn new(
        commands: mpsc::Sender<Command>,
        view: watch::Receiver<ManagerView>,
        ready: watch::Receiver<bool>,
        authorizer: Arc<dyn Authorizer>,
        bus: DBusProxy<'static>,
    ) -> Self {
        Self { commands, view, ready, authorizer, bus }
    }

    /// Authorizes the caller for `action`: root always, anyone else through polkit.
    async fn authorize(&self, header: &Header<'_>, caller: u32, action: Action) -> Result<(), Error> {
        if caller == 0 {
            return Ok(());
        }
        self.authorizer
            .authorize(header, action)
            .await
            .map_err(|denied| Error::NotAuthorized(denied.to_string()))
    }

    /// The uid of the process that sent `header`'s message, as the bus daemon knows it.
    async fn caller_uid(&self, header: &Header<'_>) -> Result<u32, Error> {
        let sender =
            header.sender().ok_or_else(|| Error::NotAuthorized("the message names no sender".into()))?;
        self.bus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| Error::NotAuthorized(format!("cannot tell who the caller is: {e}")))
    }

    /// Authorizes managing a guest owned by `owner`: one's own needs manage-guests, another
    /// user's also manage-all-guests.
    async fn authorize_for_owner(&self, header: &Header<'_>, owner: Option<u32>) -> Result<u32, Error> {
        let caller = self.caller_uid(header).await?;
        self.authorize(header, caller, Action::ManageGuests).await?;
        if owner.is_some_and(|owner| owner != caller) {
            self.authorize(header, caller, Action::ManageAllGuests).await?;
        }
        Ok(caller)
    }

    async fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Failed("vmnetd is shutting down".into());
        self.commands.send(command(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn read<T>(&self, field: impl FnOnce(&ManagerView) -> T) -> T {
        let mut ready = self.ready.clone();
        // Closed only when vmnetd stops; then the last view is as good as any.
        let _ = ready.wait_for(|ready| *ready).await;
        field(&self.view.borrow())
    }
}

fn checked_name(name: &str) -> Result<(), Error> {
    validate_guest_name(name).map_err(Error::InvalidArgument)
}

#[interface(name = "org.vmnet.Manager1")]
impl Manager {
    async fn add_guest(
        &self,
        name: String,
        options: HashMap<String, Variant<'_>>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        checked_name(&name)?;
        let options = options::parse(&options)?;
        let caller = self.authorize_for_owner(&header, options.owner).await?;
        let guest = NewGuest {
            name,
            owner: options.owner.unwrap_or(caller),
            mac: options.mac,
            address: options.address,
            qmp: options.qmp,
        };
        self.request(|reply| Command::AddGuest(guest, reply)).await
    }

    async fn remove_guest(&self, name: String, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        checked_name(&name)?;
        let owner = self.read(|v| v.guests.get(&name).map(|g| g.owner)).await;
        let Some(owner) = owner else {
            return Err(Error::NotFound(format!("no guest named {name:?}")));
        };
        self.authorize_for_owner(&header, Some(owner)).await?;
        self.request(|reply| Command::RemoveGuest(name, reply)).await
    }

    async fn list_guests(&self) -> Vec<GuestRow> {
        self.read(ManagerView::rows).await
    }

    async fn resync(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        let caller = self.caller_uid(&header).await?;
        self.authorize(&header, caller, Action::Resync).await?;
        self.request(Command::Resync).await
    }

    #[zbus(signal)]
    pub async fn rehomed(emitter: &SignalEmitter<'_>, old_subnet: &str, new_subnet: &str)
        -> zbus::Result<()>;

    #[zbus(property)]
    async fn state(&self) -> String {
        self.read(|v| v.state.to_owned()).await
    }

    #[zbus(property)]
    async fn uplink(&self) -> String {
        self.read(|v| v.uplink.clone()).await
    }

    #[zbus(property)]
    async fn host_address(&self) -> String {
        self.read(|v| v.host_address.clone()).await
    }

    #[zbus(property)]
    async fn subnet(&self) -> String {
        self.read(|v| v.subnet.clone()).await
    }

    #[zbus(property)]
    async fn gateway(&self) -> String {
        self.read(|v| v.gateway.clone()).await
    }

    #[zbus(property)]
    async fn nameservers(&self) -> Vec<String> {
        self.read(|v| v.nameservers.clone()).await
    }

    #[zbus(property)]
    async fn prefix6(&self) -> String {
        self.read(|v| v.prefix6.clone()).await
    }

    #[zbus(property)]
    async fn gateway6(&self) -> String {
        self.read(|v| v.gateway6.clone()).await
    }

    #[zbus(property)]
    async fn nameservers6(&self) -> Vec<String> {
        self.read(|v| v.nameservers6.clone()).await
    }

    #[zbus(property)]
    async fn problems(&self) -> Vec<String> {
        self.read(|v| v.problems.clone()).await
    }

    /// What vmnetd's nftables tables dropped, by counter: name, what it counts, packets,
    /// bytes. Read from the kernel at every Get (none without a guest: no tables then).
    #[zbus(property(emits_changed_signal = "false"))]
    async fn dropped(&self) -> zbus::fdo::Result<Vec<DroppedRow>> {
        let read = tokio::task::spawn_blocking(crate::firewall::dropped).await;
        let found =
            read.map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?.map_err(zbus::fdo::Error::Failed)?;
        Ok(found.into_iter().map(|d| (d.name, d.what.to_owned(), d.packets, d.bytes)).collect())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }
}

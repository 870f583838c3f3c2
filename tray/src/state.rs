//! What the tray shows, read from vmnetd on the system bus, and the signals that tell it to read
//! again. Nothing here starts vmnetd: it is only read while it owns its name.

use std::collections::HashMap;

use futures::StreamExt;
use vmnet_dbus::{managed_guests, GuestInfo, Manager1Proxy, BUS_NAME};
use zbus::fdo::DBusProxy;
use zbus::message::Type;
use zbus::names::BusName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, MessageStream};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// The polkit action for adding and removing one's own guests.
const MANAGE_ACTION: &str = "org.vmnet.manage-guests";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Service {
    #[default]
    NotRunning,
    Offline,
    Online {
        subnet: String,
        /// The host's address on the uplink: the guests' gateway.
        gateway: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub service: Service,
    pub guests: Vec<GuestInfo>,
    /// polkit would allow (or ask for a password for) managing guests.
    pub can_manage: bool,
}

/// What happened on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something changed: read again.
    Changed,
    /// `Rehomed` from `sender` (a unique name: see [`State::is_vmnetd`]).
    Rehomed { sender: String, old_subnet: String, new_subnet: String },
}

pub struct State {
    connection: Connection,
    bus: DBusProxy<'static>,
    polkit: Option<AuthorityProxy<'static>>,
}

impl State {
    pub async fn new(connection: Connection) -> zbus::Result<State> {
        let bus = DBusProxy::new(&connection).await?;
        let polkit = AuthorityProxy::new(&connection).await.ok();
        Ok(State { connection, bus, polkit })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// vmnetd's state and guests now; `NotRunning` (and no guests) when it has no owner.
    pub async fn read(&self) -> Snapshot {
        let can_manage = self.can_manage().await;
        let name = BusName::from_static_str(BUS_NAME).expect("a valid bus name");
        if !self.bus.name_has_owner(name).await.unwrap_or(false) {
            return Snapshot { service: Service::NotRunning, guests: Vec::new(), can_manage };
        }
        match self.read_service().await {
            Ok((service, guests)) => Snapshot { service, guests, can_manage },
            Err(e) => {
                tracing::warn!("reading vmnetd: {e}");
                Snapshot { service: Service::NotRunning, guests: Vec::new(), can_manage }
            }
        }
    }

    async fn read_service(&self) -> Result<(Service, Vec<GuestInfo>), vmnet_dbus::Error> {
        let manager =
            Manager1Proxy::builder(&self.connection).cache_properties(CacheProperties::No).build().await?;
        let service = if manager.state().await? == vmnet_dbus::manager_state::ONLINE {
            Service::Online { subnet: manager.subnet().await?, gateway: manager.host_address().await? }
        } else {
            Service::Offline
        };
        Ok((service, managed_guests(&self.connection).await?))
    }

    /// Whether `sender` is vmnetd (owns its name now): another client could send a `Rehomed`.
    pub async fn is_vmnetd(&self, sender: &str) -> bool {
        let name = BusName::from_static_str(BUS_NAME).expect("a valid bus name");
        self.bus.get_name_owner(name).await.is_ok_and(|owner| owner.as_str() == sender)
    }

    /// Whether polkit allows this process to manage guests, possibly after a password.
    async fn can_manage(&self) -> bool {
        let Some(polkit) = &self.polkit else { return false };
        let uid = nix::unistd::getuid().as_raw();
        let Ok(subject) = Subject::new_for_pid(std::process::id(), None, Some(uid)) else { return false };
        let details = HashMap::new();
        let flags = CheckAuthorizationFlags::empty();
        match polkit.check_authorization(&subject, MANAGE_ACTION, &details, flags, "").await {
            Ok(result) => result.is_authorized || result.is_challenge,
            Err(e) => {
                tracing::warn!("asking polkit about {MANAGE_ACTION}: {e}");
                false
            }
        }
    }

    /// Every signal vmnetd sends (PropertiesChanged, InterfacesAdded/Removed, Rehomed), its
    /// name's owner changes, and polkit's `Changed`, as a stream of changes.
    pub async fn changes(&self) -> zbus::Result<impl futures::Stream<Item = Change> + Unpin + use<>> {
        // By path: a match on the well-known sender would not match the unique name in the
        // messages on the client side.
        let from_vmnetd =
            MatchRule::builder().msg_type(Type::Signal).path_namespace(vmnet_dbus::MANAGER_PATH).build();
        let owner = MatchRule::builder()
            .msg_type(Type::Signal)
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, BUS_NAME)
            .build();
        let polkit = MatchRule::builder()
            .msg_type(Type::Signal)
            .interface("org.freedesktop.PolicyKit1.Authority")
            .member("Changed")
            .build();
        let mut streams = Vec::new();
        for rule in [from_vmnetd, owner, polkit] {
            streams.push(MessageStream::for_match_rule(rule?, &self.connection, None).await?);
        }
        Ok(Box::pin(futures::stream::select_all(streams).filter_map(|message| async move {
            let message = message.ok()?;
            let header = message.header();
            let rehomed = header.interface().is_some_and(|i| i.as_str() == vmnet_dbus::MANAGER_INTERFACE)
                && header.member().is_some_and(|m| m.as_str() == "Rehomed");
            if rehomed {
                let sender = header.sender()?.to_string();
                let (old_subnet, new_subnet): (String, String) = message.body().deserialize().ok()?;
                return Some(Change::Rehomed { sender, old_subnet, new_subnet });
            }
            Some(Change::Changed)
        })))
    }
}

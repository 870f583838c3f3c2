//! The "networkmanager" uplink source: NetworkManager's active connection, over its D-Bus API.
//!
//! The followed connection is the primary one when its type is one of `connection_types`,
//! otherwise the first activated connection of such a type (optionally pinned to an
//! interface). A connection counts once it is activating or activated *and* its device has an
//! IPv4 address: on a roam NM switches `PrimaryConnection` before the address exists, so the
//! address (AddressData), not the switch, is what moves the uplink. Every PropertiesChanged under NM's object
//! tree and every NameOwnerChanged of NM triggers a re-read into a `watch` channel, so a burst
//! of signals leaves one value for the reconciler.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::fdo::DBusProxy;
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant};

use super::first_reading;
use crate::config::UplinkConfig;
use crate::model::{Uplink, Uplink6};
use crate::model6;

const NM: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const ACTIVE_CONNECTION: &str = "org.freedesktop.NetworkManager.Connection.Active";
const DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const IP4_CONFIG: &str = "org.freedesktop.NetworkManager.IP4Config";
const IP6_CONFIG: &str = "org.freedesktop.NetworkManager.IP6Config";
/// NM_ACTIVE_CONNECTION_STATE_ACTIVATING and _ACTIVATED.
const ACTIVATING: u32 = 1;
const ACTIVATED: u32 = 2;
/// Interfaces whose property changes can change the uplink. Others (statistics, access point
/// signal strength, scans) change often and never matter here.
const RELEVANT: [&str; 7] = [
    NM,
    ACTIVE_CONNECTION,
    DEVICE,
    IP4_CONFIG,
    IP6_CONFIG,
    "org.freedesktop.NetworkManager.DHCP4Config",
    "org.freedesktop.NetworkManager.DHCP6Config",
];
/// Signals of one NM state change arrive within a few ms of each other: read after a pause.
const QUIET: Duration = Duration::from_millis(1);

type Properties = HashMap<String, OwnedVariant>;

#[derive(Clone)]
pub struct NmUplink {
    connection: Connection,
    bus: DBusProxy<'static>,
    connection_types: Vec<String>,
    interface: Option<String>,
    nameservers: Vec<Ipv4Addr>,
    domains: Vec<String>,
    /// Whether the uplink's IPv6 is read at all (`[ipv6] enabled`).
    ipv6: bool,
}

impl NmUplink {
    pub async fn new(connection: Connection, config: &UplinkConfig, ipv6: bool) -> zbus::Result<Self> {
        let bus = DBusProxy::new(&connection).await?;
        Ok(Self {
            connection,
            bus,
            connection_types: config.connection_types.clone(),
            interface: config.interface.clone(),
            nameservers: config.nameservers.clone(),
            domains: config.domains.clone(),
            ipv6,
        })
    }

    async fn properties(&self, path: &str, interface: &str) -> zbus::Result<Properties> {
        let reply = self
            .connection
            .call_method(Some(NM), path, Some("org.freedesktop.DBus.Properties"), "GetAll", &(interface,))
            .await?;
        reply.body().deserialize()
    }

    pub async fn read_uplink(&self) -> Result<Option<Uplink>, String> {
        // Never auto-start NM by calling it: only read while it runs.
        let nm_running = self.bus.name_has_owner(NM.try_into().map_err(|e| format!("{e}"))?).await;
        if !nm_running.map_err(|e| format!("asking the bus about NetworkManager: {e}"))? {
            return Ok(None);
        }
        let manager = match self.properties(NM_PATH, NM).await {
            Ok(manager) => manager,
            Err(e) => {
                tracing::debug!("NetworkManager did not answer: {e}");
                return Ok(None);
            }
        };
        let primary: Option<OwnedObjectPath> = take(&manager, "PrimaryConnection");
        let active: Vec<OwnedObjectPath> = take(&manager, "ActiveConnections").unwrap_or_default();
        let mut candidates: Vec<OwnedObjectPath> = primary.into_iter().collect();
        for path in active {
            if !candidates.contains(&path) {
                candidates.push(path);
            }
        }
        for path in candidates.iter().filter(|p| p.as_str() != "/") {
            // An object can vanish between two calls during a roam: skip it.
            match self.read_active_connection(path).await {
                Ok(Some(uplink)) => return Ok(Some(uplink)),
                Ok(None) => {}
                Err(e) => tracing::debug!("reading {path}: {e}"),
            }
        }
        Ok(None)
    }

    /// The uplink of one active connection, if it is followed, activated and has an address.
    async fn read_active_connection(&self, path: &OwnedObjectPath) -> zbus::Result<Option<Uplink>> {
        let connection = self.properties(path, ACTIVE_CONNECTION).await?;
        let kind: String = take(&connection, "Type").unwrap_or_default();
        let state: u32 = take(&connection, "State").unwrap_or_default();
        // An activating connection counts once its device has the address: NM publishes the
        // DHCP address ~5 ms before it marks the connection activated.
        if !matches!(state, ACTIVATING | ACTIVATED) || !self.connection_types.contains(&kind) {
            return Ok(None);
        }
        let devices: Vec<OwnedObjectPath> = take(&connection, "Devices").unwrap_or_default();
        let Some(device_path) = devices.first() else { return Ok(None) };
        let device = self.properties(device_path, DEVICE).await?;
        let interface = take::<String>(&device, "IpInterface")
            .filter(|name| !name.is_empty())
            .or_else(|| take(&device, "Interface"))
            .unwrap_or_default();
        if self.interface.as_ref().is_some_and(|pin| *pin != interface) {
            return Ok(None);
        }
        // The device keeps its IP4Config object across re-activations; the connection's is
        // set only after activation.
        let ip4_path: OwnedObjectPath = match take(&device, "Ip4Config") {
            Some(path) => path,
            None => return Ok(None),
        };
        if ip4_path.as_str() == "/" {
            return Ok(None);
        }
        let ip4 = self.properties(&ip4_path, IP4_CONFIG).await?;
        let addresses: Vec<Properties> = take(&ip4, "AddressData").unwrap_or_default();
        let Some((address, prefix_len)) = addresses.iter().find_map(|a| {
            let address: Ipv4Addr = take::<String>(a, "address")?.parse().ok()?;
            let prefix: u32 = take(a, "prefix")?;
            Some((address, u8::try_from(prefix).ok().filter(|p| *p <= 32)?))
        }) else {
            return Ok(None);
        };
        let gateway = take::<String>(&ip4, "Gateway").and_then(|g| g.parse().ok());
        let nameservers = if self.nameservers.is_empty() {
            let servers: Vec<Properties> = take(&ip4, "NameserverData").unwrap_or_default();
            servers.iter().filter_map(|s| take::<String>(s, "address")?.parse().ok()).collect()
        } else {
            self.nameservers.clone()
        };
        let mut domains = Vec::new();
        let mtu = take(&device, "Mtu").unwrap_or(1500);
        let ipv6 = match self.ipv6 {
            true => self.read_ip6(&device, &mut domains).await?,
            false => None,
        };
        let domains = if self.domains.is_empty() {
            // IPv4's (DHCP) first, then IPv6's (DNSSL, DHCPv6): one search list for both.
            let mut all = domains_of(&ip4);
            for domain in domains {
                if !all.contains(&domain) {
                    all.push(domain);
                }
            }
            all
        } else {
            self.domains.clone()
        };
        // Named once activated: while the next connection activates, the device may still
        // hold the previous network's address.
        let profile =
            take::<String>(&connection, "Uuid").filter(|uuid| state == ACTIVATED && !uuid.is_empty());
        Ok(Some(Uplink {
            interface,
            address,
            prefix_len,
            gateway,
            mtu,
            nameservers,
            domains,
            connection: profile,
            ipv6,
        }))
    }

    /// The device's IPv6 from its IP6Config: a global address in a /64, the gateway, the DNS
    /// servers; its search domains go to `domains` (shared with IPv4's).
    async fn read_ip6(
        &self,
        device: &Properties,
        domains: &mut Vec<String>,
    ) -> zbus::Result<Option<Uplink6>> {
        let Some(path) = take::<OwnedObjectPath>(device, "Ip6Config").filter(|p| p.as_str() != "/") else {
            return Ok(None);
        };
        let ip6 = self.properties(&path, IP6_CONFIG).await?;
        *domains = domains_of(&ip6);
        let addresses: Vec<Properties> = take(&ip6, "AddressData").unwrap_or_default();
        let addresses = addresses.iter().filter_map(|a| {
            let address: Ipv6Addr = take::<String>(a, "address")?.parse().ok()?;
            Some((address, u8::try_from(take::<u32>(a, "prefix")?).ok()?))
        });
        let gateway = take::<String>(&ip6, "Gateway").and_then(|g| g.parse().ok());
        let nameservers: Vec<Vec<u8>> = take(&ip6, "Nameservers").unwrap_or_default();
        let nameservers = nameservers
            .iter()
            .filter_map(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).ok().map(Ipv6Addr::from))
            .collect();
        Ok(model6::from_addresses(addresses, gateway, nameservers))
    }

    /// Follows NM's signals (and NM coming and going); after each burst the uplink is read
    /// again into the returned channel. Subscribes before the first reading, so no change in
    /// between is missed.
    pub async fn follow(self) -> zbus::Result<watch::Receiver<Option<Uplink>>> {
        let changes = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace(NM_PATH)
            .build()?;
        let owner = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .add_arg(NM)
            .build()?;
        let changes = MessageStream::for_match_rule(changes, &self.connection, None).await?;
        let owner = MessageStream::for_match_rule(owner, &self.connection, None).await?;
        let mut signals = futures::stream::select(changes, owner);
        let (latest, reader) = watch::channel(first_reading(self.read_uplink()).await);
        // Signals are drained by a task of their own that never waits for a method reply: a
        // signal queue left full while a GetAll reply is awaited would stall the connection.
        // A full queue of one means a read is pending already.
        let (notify, mut changed) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while let Some(message) = signals.next().await {
                if message.as_ref().is_ok_and(is_relevant) {
                    let _ = notify.try_send(());
                }
            }
            // The bus connection closed: NM cannot be read from now on. The reader below ends
            // too, the reconciler sees its channel close and vmnetd exits, to be restarted.
            tracing::error!("the bus connection closed; NetworkManager is no longer followed");
        });
        tokio::spawn(async move {
            while changed.recv().await.is_some() {
                // Let the rest of a burst arrive; what comes during the read causes one more.
                tokio::time::sleep(QUIET).await;
                match self.read_uplink().await {
                    Ok(now) => {
                        if latest.send(now).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("reading NetworkManager's uplink: {e}"),
                }
            }
        });
        Ok(reader)
    }
}

/// An IP config's `Domains`, then its `Searches` not among them.
fn domains_of(config: &Properties) -> Vec<String> {
    let mut domains: Vec<String> = take(config, "Domains").unwrap_or_default();
    let searches: Vec<String> = take(config, "Searches").unwrap_or_default();
    for search in searches {
        if !domains.contains(&search) {
            domains.push(search);
        }
    }
    domains
}

/// NameOwnerChanged of NM, or PropertiesChanged of an interface that matters.
fn is_relevant(message: &zbus::Message) -> bool {
    let header = message.header();
    if header.member().is_some_and(|m| m.as_str() == "NameOwnerChanged") {
        return true;
    }
    message
        .body()
        .deserialize::<(String, Properties, Vec<String>)>()
        .is_ok_and(|(interface, _, _)| RELEVANT.contains(&interface.as_str()))
}

/// A property converted to `T`, if present and of that type.
fn take<T>(properties: &Properties, name: &str) -> Option<T>
where
    T: TryFrom<OwnedVariant>,
{
    properties.get(name)?.try_clone().ok().and_then(|v| T::try_from(v).ok())
}

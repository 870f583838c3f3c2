//! The "kernel" uplink source: one interface's IPv4 address, followed through rtnetlink.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::MulticastGroup;
use tokio::sync::watch;

use super::{first_reading, resolv};
use crate::config::UplinkConfig;
use crate::model::Uplink;
use crate::model6;
use crate::netlink::Netlink;

type Notifications = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, rtnetlink::sys::SocketAddr)>;
/// Notifications of one change arrive within a few ms: read once after the burst.
const BURST: Duration = Duration::from_millis(2);

#[derive(Clone)]
pub struct KernelUplink {
    netlink: Netlink,
    interface: String,
    nameservers: Vec<Ipv4Addr>,
    domains: Vec<String>,
    resolv_conf: PathBuf,
    /// Whether the uplink's IPv6 is read at all (`[ipv6] enabled`).
    ipv6: bool,
    /// The interface's index as last read (0: unknown): IPv6 address notifications name
    /// their link by index only.
    index: Arc<AtomicU32>,
}

impl KernelUplink {
    pub fn new(netlink: Netlink, config: &UplinkConfig, interface: String, ipv6: bool) -> Self {
        Self {
            netlink,
            interface,
            nameservers: config.nameservers.clone(),
            domains: config.domains.clone(),
            resolv_conf: config.resolv_conf.clone(),
            ipv6,
            index: Arc::default(),
        }
    }

    pub async fn read_uplink(&self) -> Result<Option<Uplink>, String> {
        let Some(link) = self.netlink.link_by_name(&self.interface).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        self.index.store(link.index, Ordering::Relaxed);
        // Without carrier (disassociated, cable out) the uplink is offline: when it returns it
        // may be on another network with the same subnet.
        if !link.up || !link.lower_up {
            return Ok(None);
        }
        let addresses = self.netlink.ipv4_addresses(link.index).await.map_err(|e| e.to_string())?;
        let Some(&(address, prefix_len)) = addresses.first() else {
            return Ok(None);
        };
        let gateway = self.netlink.default_gateway(link.index).await.map_err(|e| e.to_string())?;
        let resolv = resolv::read(&self.resolv_conf);
        let nameservers =
            if self.nameservers.is_empty() { resolv.nameservers } else { self.nameservers.clone() };
        let domains = if self.domains.is_empty() { resolv.domains } else { self.domains.clone() };
        let ipv6 = match self.ipv6 {
            true => {
                let addresses = self.netlink.ipv6_addresses(link.index).await.map_err(|e| e.to_string())?;
                let gateway = self.netlink.default_gateway6(link.index).await.map_err(|e| e.to_string())?;
                model6::from_addresses(addresses, gateway, resolv.nameservers6)
            }
            false => None,
        };
        Ok(Some(Uplink {
            interface: link.name,
            address,
            prefix_len,
            gateway,
            mtu: link.mtu,
            nameservers,
            domains,
            connection: None,
            ipv6,
        }))
    }

    /// Follows link, IPv4 address and default-route notifications; after each burst of them
    /// the uplink is read again into the returned channel. If notifications were lost (the
    /// socket overran) or the socket closed, it reads again (and resubscribes): never silence.
    pub async fn follow(self) -> std::io::Result<watch::Receiver<Option<Uplink>>> {
        let mut notifications = subscribe()?;
        let (latest, reader) = watch::channel(first_reading(self.read_uplink()).await);
        tokio::spawn(async move {
            loop {
                let uplink = (self.interface.as_str(), self.index.load(Ordering::Relaxed));
                let relevant = match next_burst(&mut notifications, uplink).await {
                    Some(relevant) => relevant,
                    None => {
                        tracing::warn!("rtnetlink notifications ended; subscribing again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match subscribe() {
                            Ok(again) => notifications = again,
                            Err(e) => tracing::error!("cannot subscribe to rtnetlink again: {e}"),
                        }
                        true
                    }
                };
                if !relevant {
                    continue;
                }
                match self.read_uplink().await {
                    Ok(now) => {
                        if latest.send(now).is_err() {
                            return; // the reconciler is gone: shutting down
                        }
                    }
                    Err(e) => tracing::warn!("reading uplink {}: {e}", self.interface),
                }
            }
        });
        Ok(reader)
    }
}

fn subscribe() -> std::io::Result<Notifications> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv6Route,
    ];
    let (connection, _, notifications) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(connection);
    Ok(notifications)
}

/// Waits for a notification and drains the rest of its burst; returns whether any of them
/// concerns the uplink, `None` when the stream ended.
async fn next_burst(notifications: &mut Notifications, uplink: (&str, u32)) -> Option<bool> {
    let (message, _) = notifications.next().await?;
    let mut relevant = is_relevant(&message.payload, uplink);
    while let Ok(Some((more, _))) = tokio::time::timeout(BURST, notifications.next()).await {
        relevant |= is_relevant(&more.payload, uplink);
    }
    Some(relevant)
}

/// Changes of the uplink's link and addresses (by name, `index` for IPv6: 0 if unknown), and
/// of default routes, or lost notifications. Not vmnetd's own taps, their router link-locals
/// and host routes, which change by the thousand during a re-home.
fn is_relevant(payload: &NetlinkPayload<RouteNetlinkMessage>, (interface, index): (&str, u32)) -> bool {
    let message = match payload {
        NetlinkPayload::InnerMessage(message) => message,
        NetlinkPayload::Overrun(_) => return true,
        _ => return false,
    };
    match message {
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            r.header.destination_prefix_length == 0
        }
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            l.attributes.iter().any(|a| matches!(a, LinkAttribute::IfName(name) if name == interface))
        }
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m)
            if m.header.family == AddressFamily::Inet6 =>
        {
            index == 0 || m.header.index == index
        }
        // IPv4 addresses carry their interface's name (or "name:alias") as label.
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => m.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Label(label)
                if label == interface || label.strip_prefix(interface).is_some_and(|rest| rest.starts_with(':')))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::link::LinkMessage;
    use netlink_packet_route::route::{RouteAttribute, RouteMessage};

    use super::*;

    const UPLINK: &str = "wlan0";

    fn payload(message: RouteNetlinkMessage) -> NetlinkPayload<RouteNetlinkMessage> {
        NetlinkPayload::InnerMessage(message)
    }

    fn link(name: &str) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.to_owned()));
        link
    }

    fn address(label: &str) -> AddressMessage {
        let mut address = AddressMessage::default();
        address.attributes.push(AddressAttribute::Label(label.to_owned()));
        address
    }

    /// A route to a /`prefix_len` through interface index `oif`.
    fn route(prefix_len: u8, oif: u32) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.destination_prefix_length = prefix_len;
        route.attributes.push(RouteAttribute::Oif(oif));
        route
    }

    #[test]
    fn lost_notifications_are_relevant() {
        // What netlink-proto delivers when recv(2) fails with ENOBUFS.
        assert!(is_relevant(&NetlinkPayload::Overrun(Vec::new()), (UPLINK, 2)));
    }

    #[test]
    fn the_uplinks_link_and_addresses_and_every_default_route_are_relevant() {
        for message in [
            RouteNetlinkMessage::NewLink(link(UPLINK)),
            RouteNetlinkMessage::DelLink(link(UPLINK)),
            RouteNetlinkMessage::NewAddress(address(UPLINK)),
            RouteNetlinkMessage::DelAddress(address("wlan0:1")),
            RouteNetlinkMessage::NewRoute(route(0, 2)),
            RouteNetlinkMessage::DelRoute(route(0, 9)),
        ] {
            assert!(is_relevant(&payload(message.clone()), (UPLINK, 2)), "{message:?}");
        }
    }

    #[test]
    fn taps_their_host_routes_and_other_interfaces_are_not() {
        for message in [
            RouteNetlinkMessage::NewLink(link("vmt-web")),
            RouteNetlinkMessage::DelLink(link("wlan01")),
            RouteNetlinkMessage::NewAddress(address("wlan01")),
            RouteNetlinkMessage::NewAddress(address("eth0")),
            // A tap's /32 host route, as vmnetd adds one per guest.
            RouteNetlinkMessage::NewRoute(route(32, 7)),
            RouteNetlinkMessage::DelRoute(route(32, 7)),
            RouteNetlinkMessage::NewRoute(route(24, 2)),
        ] {
            assert!(!is_relevant(&payload(message.clone()), (UPLINK, 2)), "{message:?}");
        }
        assert!(!is_relevant(&NetlinkPayload::Noop, (UPLINK, 2)));
    }

    #[test]
    fn ipv6_addresses_of_the_uplink_only_are_relevant() {
        let ipv6_address = |index| {
            let mut address = AddressMessage::default();
            address.header.family = AddressFamily::Inet6;
            address.header.index = index;
            payload(RouteNetlinkMessage::NewAddress(address))
        };
        assert!(is_relevant(&ipv6_address(2), (UPLINK, 2)));
        assert!(!is_relevant(&ipv6_address(7), (UPLINK, 2)), "a tap's router link-local");
        assert!(is_relevant(&ipv6_address(7), (UPLINK, 0)), "the uplink's index not known yet");
    }
}

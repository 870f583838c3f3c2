//! The "kernel" uplink source: one interface's IPv4 address, followed through rtnetlink.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use super::{resolv, UplinkSource};
use crate::config::UplinkConfig;
use crate::executor::netlink::Netlink;
use crate::model::Uplink;
use crate::reconciler::Event;

#[derive(Clone)]
pub struct KernelUplink {
    netlink: Netlink,
    interface: String,
    nameservers: Vec<Ipv4Addr>,
    domains: Vec<String>,
    resolv_conf: PathBuf,
}

impl KernelUplink {
    pub fn new(netlink: Netlink, config: &UplinkConfig, interface: String) -> Self {
        Self {
            netlink,
            interface,
            nameservers: config.nameservers.clone(),
            domains: config.domains.clone(),
            resolv_conf: config.resolv_conf.clone(),
        }
    }

    async fn read_uplink(&self) -> Result<Option<Uplink>, String> {
        let Some(link) = self.netlink.link_by_name(&self.interface).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        if !link.up {
            return Ok(None);
        }
        let addresses = self.netlink.ipv4_addresses(link.index).await.map_err(|e| e.to_string())?;
        let Some(&(address, prefix_len)) = addresses.first() else {
            return Ok(None);
        };
        let routes = self.netlink.main_routes().await.map_err(|e| e.to_string())?;
        let gateway =
            routes.iter().filter(|r| r.prefix_len == 0 && r.oif == Some(link.index)).find_map(|r| r.gateway);
        let resolv = resolv::read(&self.resolv_conf);
        let nameservers =
            if self.nameservers.is_empty() { resolv.nameservers } else { self.nameservers.clone() };
        let domains = if self.domains.is_empty() { resolv.domains } else { self.domains.clone() };
        Ok(Some(Uplink {
            interface: link.name,
            address,
            prefix_len,
            gateway,
            mtu: link.mtu,
            nameservers,
            domains,
        }))
    }

    /// Follows link, IPv4 address and default-route notifications and sends
    /// `Event::Uplink` whenever what [`UplinkSource::read`] returns changes. A burst of
    /// notifications (an address replaced, a route moved) is read once, after the burst.
    pub fn watch(self, initial: Option<Uplink>, events: mpsc::Sender<Event>) -> std::io::Result<()> {
        let groups = [MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv4Route];
        let (connection, _, mut notifications) = rtnetlink::new_multicast_connection(&groups)?;
        tokio::spawn(connection);
        tokio::spawn(async move {
            let mut last = initial;
            while let Some((message, _)) = notifications.next().await {
                let mut relevant = is_relevant(&message.payload, &self.interface);
                // Drain what is already queued, so a burst costs one read.
                while let Ok(Some((more, _))) =
                    tokio::time::timeout(std::time::Duration::from_millis(2), notifications.next()).await
                {
                    relevant |= is_relevant(&more.payload, &self.interface);
                }
                if !relevant {
                    continue;
                }
                match self.read_uplink().await {
                    Ok(now) if now != last => {
                        last = now.clone();
                        if events.send(Event::Uplink(now)).await.is_err() {
                            return; // the reconciler is gone: shutting down
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("reading uplink {}: {e}", self.interface),
                }
            }
            tracing::error!("rtnetlink notifications ended; uplink changes are no longer followed");
        });
        Ok(())
    }
}

/// Changes of the uplink's link and IPv4 addresses, and of default routes. Not vmnetd's own
/// taps and host routes, which change by the thousand during a re-home.
fn is_relevant(payload: &NetlinkPayload<RouteNetlinkMessage>, interface: &str) -> bool {
    let NetlinkPayload::InnerMessage(message) = payload else { return false };
    match message {
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            r.header.destination_prefix_length == 0
        }
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            l.attributes.iter().any(|a| matches!(a, LinkAttribute::IfName(name) if name == interface))
        }
        // IPv4 addresses carry their interface's name (or "name:alias") as label.
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => m.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Label(label)
                if label == interface || label.strip_prefix(interface).is_some_and(|rest| rest.starts_with(':')))
        }),
        _ => false,
    }
}

impl UplinkSource for KernelUplink {
    async fn read(&self) -> Result<Option<Uplink>, String> {
        self.read_uplink().await
    }
}

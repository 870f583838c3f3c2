//! A typed rtnetlink wrapper: one method per kernel operation vmnetd performs.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Route protocol number that marks vmnetd's routes (`ip route show proto 118`); packaging
/// names it "vmnet" in /etc/iproute2/rt_protos.d.
pub const VMNET_ROUTE_PROTOCOL: u8 = 118;
/// IFLA_TUN_OWNER inside a tun device's IFLA_INFO_DATA.
const IFLA_TUN_OWNER: u16 = 1;

/// A failed netlink operation, naming what was attempted.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {source}")]
pub struct NetlinkError {
    pub operation: String,
    #[source]
    pub source: rtnetlink::Error,
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

fn failed(operation: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let operation = operation.into();
    move |source| NetlinkError { operation, source }
}

/// What vmnetd needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    /// The uid that owns a tun/tap device; `None` for other links or unowned taps.
    pub tun_owner: Option<u32>,
    pub is_tun: bool,
}

/// A route as read back from the kernel (IPv4, main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub protocol: u8,
}

/// rtnetlink connection of the executor and the kernel uplink source.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the current network namespace; must run inside a Tokio runtime.
    pub fn connect() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Every link, in one dump.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let messages: Vec<_> =
            self.handle.link().get().execute().try_collect().await.map_err(failed("dump links"))?;
        Ok(messages.iter().map(parse_link).collect())
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let mut request = self.handle.link().get().match_name(name.to_owned()).execute();
        match request.try_next().await {
            Ok(message) => Ok(message.as_ref().map(parse_link)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(failed(format!("get link {name}"))(e)),
        }
    }

    /// Sets the link up and, when given, its MTU.
    pub async fn set_up(&self, link: &Link, mtu: Option<u32>) -> Result<()> {
        let mut builder = LinkUnspec::new_with_index(link.index).up();
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        self.handle
            .link()
            .set(builder.build())
            .execute()
            .await
            .map_err(failed(format!("set {} up (mtu {mtu:?})", link.name)))
    }

    pub async fn delete_link(&self, link: &Link) -> Result<()> {
        match self.handle.link().del(link.index).execute().await {
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            other => other.map_err(failed(format!("delete link {}", link.name))),
        }
    }

    /// The IPv4 addresses of a link, primary (non-secondary) global ones first.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!("dump addresses of link {index}")))?;
        let mut found: Vec<_> = messages
            .iter()
            .filter(|m| m.header.index == index && m.header.family == AddressFamily::Inet)
            .filter(|m| m.header.scope == AddressScope::Universe)
            .filter_map(|m| {
                let secondary = m.header.flags.contains(AddressHeaderFlags::Secondary);
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((secondary, *ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect();
        found.sort_by_key(|(secondary, _, _)| *secondary);
        Ok(found.into_iter().map(|(_, ip, len)| (ip, len)).collect())
    }

    /// IPv4 routes of the main table.
    pub async fn main_routes(&self) -> Result<Vec<Route>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let messages: Vec<_> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(failed("dump IPv4 routes"))?;
        Ok(messages.iter().filter_map(parse_route).collect())
    }

    /// `ip route replace <address>/32 dev <oif> proto vmnet scope link`.
    pub async fn replace_host_route(&self, address: Ipv4Addr, oif: u32) -> Result<()> {
        self.handle
            .route()
            .add(host_route(address, oif))
            .replace()
            .execute()
            .await
            .map_err(failed(format!("replace route {address}/32 dev #{oif}")))
    }

    /// Deletes one of vmnetd's host routes; an absent route is not an error.
    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.destination, route.prefix_len)
            .protocol(RouteProtocol::Other(route.protocol))
            .scope(RouteScope::NoWhere); // "any scope": the kernel matches scope exactly otherwise
        if let Some(oif) = route.oif {
            builder = builder.output_interface(oif);
        }
        match self.handle.route().del(builder.build()).execute().await {
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT) => Ok(()),
            other => {
                other.map_err(failed(format!("delete route {}/{}", route.destination, route.prefix_len)))
            }
        }
    }
}

fn host_route(address: Ipv4Addr, oif: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(address, 32)
        .output_interface(oif)
        .protocol(RouteProtocol::Other(VMNET_ROUTE_PROTOCOL))
        .scope(RouteScope::Link)
        .build()
}

fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(msg) if msg.raw_code() == -errno)
}

fn parse_link(message: &netlink_packet_route::link::LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        tun_owner: None,
        is_tun: false,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Tun) => link.is_tun = true,
                        LinkInfo::Data(InfoData::Tun(data)) => link.tun_owner = tun_owner(data),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn tun_owner(data: &[netlink_packet_route::link::InfoTun]) -> Option<u32> {
    use netlink_packet_core::Nla;
    data.iter().find(|nla| nla.kind() == IFLA_TUN_OWNER).and_then(|nla| {
        let mut value = [0u8; 4];
        (nla.value_len() == 4).then(|| {
            nla.emit_value(&mut value);
            u32::from_ne_bytes(value)
        })
    })
}

fn parse_route(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    let table = message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(header.table));
    if header.address_family != AddressFamily::Inet || table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let mut route = Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: header.destination_prefix_length,
        oif: None,
        gateway: None,
        protocol: header.protocol.into(),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            _ => {}
        }
    }
    Some(route)
}

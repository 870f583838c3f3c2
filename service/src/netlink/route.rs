//! Routes of the main table: vmnetd's host routes (/32 and /128 to a tap) and the uplink's
//! default routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use super::{failed, is_errno, Netlink, Result};

/// Route protocol number that marks vmnetd's routes (`ip route show proto 118`); packaging
/// names it "vmnet" in /etc/iproute2/rt_protos.d.
pub const VMNET_ROUTE_PROTOCOL: u8 = 118;

/// A route as read back from the kernel (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub protocol: u8,
}

impl Route {
    /// A host route: /32 for IPv4, /128 for IPv6.
    pub fn is_host_route(&self) -> bool {
        self.prefix_len == host_prefix_len(self.destination)
    }
}

/// The prefix length of a route to `address` alone.
pub fn host_prefix_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl Netlink {
    /// vmnetd's routes (protocol 118) of both families in the main table; the kernel filters
    /// the dumps.
    pub async fn vmnet_routes(&self) -> Result<Vec<Route>> {
        let protocol = RouteProtocol::Other(VMNET_ROUTE_PROTOCOL);
        let v4 = RouteMessageBuilder::<Ipv4Addr>::new().protocol(protocol).build();
        let mut routes = self.dump_routes(v4, "dump vmnet routes").await?;
        let v6 = RouteMessageBuilder::<Ipv6Addr>::new().protocol(protocol).build();
        routes.extend(self.dump_routes(v6, "dump vmnet IPv6 routes").await?);
        Ok(routes)
    }

    /// The gateway of the main table's IPv4 default route through link `oif`, if any.
    pub async fn default_gateway(&self, oif: u32) -> Result<Option<Ipv4Addr>> {
        let mut filter = RouteMessageBuilder::<Ipv4Addr>::new().output_interface(oif).build();
        filter.header.protocol = RouteProtocol::Unspec; // any protocol
        let routes = self.dump_routes(filter, "dump the uplink's routes").await?;
        Ok(default_via(&routes, oif).and_then(|gateway| match gateway {
            IpAddr::V4(gateway) => Some(gateway),
            IpAddr::V6(_) => None,
        }))
    }

    /// The gateway of the main table's IPv6 default route through link `oif`, if any.
    pub async fn default_gateway6(&self, oif: u32) -> Result<Option<Ipv6Addr>> {
        let mut filter = RouteMessageBuilder::<Ipv6Addr>::new().output_interface(oif).build();
        filter.header.protocol = RouteProtocol::Unspec;
        let routes = self.dump_routes(filter, "dump the uplink's IPv6 routes").await?;
        Ok(default_via(&routes, oif).and_then(|gateway| match gateway {
            IpAddr::V6(gateway) => Some(gateway),
            IpAddr::V4(_) => None,
        }))
    }

    async fn dump_routes(&self, filter: RouteMessage, operation: &str) -> Result<Vec<Route>> {
        let mut stream = self.handle.route().get(filter).execute();
        let mut routes = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(failed(operation))? {
            routes.extend(parse_route(&message));
        }
        Ok(routes)
    }

    /// `ip route replace <address>/32 (or /128) dev <oif> proto vmnet scope link`.
    pub async fn replace_host_route(&self, address: IpAddr, oif: u32) -> Result<()> {
        let protocol = RouteProtocol::Other(VMNET_ROUTE_PROTOCOL);
        let route = match address {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .output_interface(oif)
                .protocol(protocol)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .output_interface(oif)
                .protocol(protocol)
                .build(),
        };
        let len = host_prefix_len(address);
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("replace route {address}/{len} dev #{oif}")))
    }

    /// Deletes one of vmnetd's routes; an absent route is not an error.
    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        let protocol = RouteProtocol::Other(route.protocol);
        let mut message = match route.destination {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, route.prefix_len)
                .protocol(protocol)
                .scope(RouteScope::NoWhere) // "any scope": the kernel matches scope exactly otherwise
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, route.prefix_len)
                .protocol(protocol)
                .build(),
        };
        if let Some(oif) = route.oif {
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        match self.handle.route().del(message).execute().await {
            Err(e) if is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT) => Ok(()),
            other => {
                other.map_err(failed(format!("delete route {}/{}", route.destination, route.prefix_len)))
            }
        }
    }
}

/// The gateway of the default route through `oif` among `routes`.
fn default_via(routes: &[Route], oif: u32) -> Option<IpAddr> {
    routes.iter().filter(|r| r.prefix_len == 0 && r.oif == Some(oif)).find_map(|r| r.gateway)
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
    let unspecified = match header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let mut route = Route {
        destination: unspecified,
        prefix_len: header.destination_prefix_length,
        oif: None,
        gateway: None,
        protocol: header.protocol.into(),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.destination = IpAddr::V4(*ip),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => route.destination = IpAddr::V6(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => route.gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            _ => {}
        }
    }
    Some(route)
}

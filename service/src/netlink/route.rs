//! IPv4 routes of the main table: vmnetd's host routes and the uplink's default route.

use std::net::Ipv4Addr;

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

/// A route as read back from the kernel (IPv4, main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub protocol: u8,
}

impl Netlink {
    /// vmnetd's routes (protocol 118) in the main table; the kernel filters the dump.
    pub async fn vmnet_routes(&self) -> Result<Vec<Route>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new()
            .protocol(RouteProtocol::Other(VMNET_ROUTE_PROTOCOL))
            .build();
        self.dump_routes(filter, "dump vmnet routes").await
    }

    /// The gateway of the main table's default route through link `oif`, if any.
    pub async fn default_gateway(&self, oif: u32) -> Result<Option<Ipv4Addr>> {
        let mut filter = RouteMessageBuilder::<Ipv4Addr>::new().output_interface(oif).build();
        filter.header.protocol = RouteProtocol::Unspec; // any protocol
        let routes = self.dump_routes(filter, "dump the uplink's routes").await?;
        Ok(routes.iter().filter(|r| r.prefix_len == 0 && r.oif == Some(oif)).find_map(|r| r.gateway))
    }

    async fn dump_routes(&self, filter: RouteMessage, operation: &str) -> Result<Vec<Route>> {
        let mut stream = self.handle.route().get(filter).execute();
        let mut routes = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(failed(operation))? {
            routes.extend(parse_route(&message));
        }
        Ok(routes)
    }

    /// `ip route replace <address>/32 dev <oif> proto vmnet scope link`.
    pub async fn replace_host_route(&self, address: Ipv4Addr, oif: u32) -> Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(address, 32)
            .output_interface(oif)
            .protocol(RouteProtocol::Other(VMNET_ROUTE_PROTOCOL))
            .scope(RouteScope::Link)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(failed(format!("replace route {address}/32 dev #{oif}")))
    }

    /// Deletes one of vmnetd's routes; an absent route is not an error.
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

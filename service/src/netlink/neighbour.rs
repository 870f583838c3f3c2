//! Proxy neighbour entries (`ip neigh add proxy ADDRESS dev UPLINK protocol vmnet`): the uplink
//! answers ARP (IPv4) or Neighbor Solicitations (IPv6, with `proxy_ndp` on) for exactly these
//! addresses, each a guest's, and for nothing else it routes.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::AddressFamily;

use super::{failed, is_errno, Netlink, Result, VMNET_ROUTE_PROTOCOL};

/// One of vmnetd's proxy entries as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proxy {
    pub address: IpAddr,
    pub ifindex: u32,
}

impl Netlink {
    /// vmnetd's proxy entries of both families (tagged with its protocol number), on any link.
    pub async fn vmnet_proxies(&self) -> Result<Vec<Proxy>> {
        let mut proxies = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let request = self.handle.neighbours().get().proxies().set_address_family(family);
            let mut stream = request.execute();
            while let Some(message) = stream.try_next().await.map_err(failed("dump proxy neighbours"))? {
                proxies.extend(parse_proxy(&message));
            }
        }
        Ok(proxies)
    }

    /// `ip neigh replace proxy <address> dev #<ifindex> protocol vmnet`.
    pub async fn add_proxy(&self, proxy: Proxy) -> Result<()> {
        let mut request =
            self.handle.neighbours().add(proxy.ifindex, proxy.address).flags(NeighbourFlags::Proxy).replace();
        let protocol = NeighbourAttribute::Protocol(RouteProtocol::Other(VMNET_ROUTE_PROTOCOL));
        request.message_mut().attributes.push(protocol);
        request.execute().await.map_err(failed(format!("add proxy {} dev #{}", proxy.address, proxy.ifindex)))
    }

    /// Deletes a proxy entry; an absent one (or link) is not an error.
    pub async fn delete_proxy(&self, proxy: Proxy) -> Result<()> {
        let mut message = NeighbourMessage::default();
        message.header.ifindex = proxy.ifindex;
        message.header.flags = NeighbourFlags::Proxy;
        let (family, destination) = match proxy.address {
            IpAddr::V4(ip) => (AddressFamily::Inet, NeighbourAddress::Inet(ip)),
            IpAddr::V6(ip) => (AddressFamily::Inet6, NeighbourAddress::Inet6(ip)),
        };
        message.header.family = family;
        message.attributes.push(NeighbourAttribute::Destination(destination));
        match self.handle.neighbours().del(message).execute().await {
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::ENODEV) => Ok(()),
            other => other.map_err(failed(format!("delete proxy {} dev #{}", proxy.address, proxy.ifindex))),
        }
    }
}

fn parse_proxy(message: &NeighbourMessage) -> Option<Proxy> {
    let header = &message.header;
    if !matches!(header.family, AddressFamily::Inet | AddressFamily::Inet6)
        || !header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let mut address = None;
    let mut ours = false;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => address = Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => address = Some(IpAddr::V6(*ip)),
            NeighbourAttribute::Protocol(protocol) => ours = u8::from(*protocol) == VMNET_ROUTE_PROTOCOL,
            _ => {}
        }
    }
    Some(Proxy { address: address?, ifindex: header.ifindex }).filter(|_| ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(protocol: Option<u8>, proxy: bool) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.ifindex = 3;
        if proxy {
            message.header.flags = NeighbourFlags::Proxy;
        }
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet([198, 51, 100, 200].into())));
        if let Some(protocol) = protocol {
            message.attributes.push(NeighbourAttribute::Protocol(RouteProtocol::from(protocol)));
        }
        message
    }

    #[test]
    fn only_vmnetd_s_proxy_entries_are_its_own() {
        let ours = Proxy { address: IpAddr::from([198, 51, 100, 200]), ifindex: 3 };
        assert_eq!(parse_proxy(&message(Some(VMNET_ROUTE_PROTOCOL), true)), Some(ours));
        assert_eq!(parse_proxy(&message(None, true)), None, "the user's own");
        assert_eq!(parse_proxy(&message(Some(4), true)), None, "another program's");
        assert_eq!(parse_proxy(&message(Some(VMNET_ROUTE_PROTOCOL), false)), None, "not a proxy entry");
    }
}

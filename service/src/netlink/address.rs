//! IPv4 addresses of a link.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};
use netlink_packet_route::AddressFamily;

use super::{failed, Netlink, Result};

impl Netlink {
    /// The global IPv4 addresses of a link, primary (non-secondary) ones first.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        // Filtered by the kernel too (strict checking): only this link's IPv4 addresses.
        request.message_mut().header.family = AddressFamily::Inet;
        request.message_mut().header.index = index;
        let mut stream = request.execute();
        let mut found = Vec::new();
        while let Some(m) =
            stream.try_next().await.map_err(failed(format!("dump addresses of link {index}")))?
        {
            if m.header.index != index || m.header.family != AddressFamily::Inet {
                continue;
            }
            if m.header.scope != AddressScope::Universe {
                continue;
            }
            let secondary = m.header.flags.contains(AddressHeaderFlags::Secondary);
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local {
                found.push((secondary, ip, m.header.prefix_len));
            }
        }
        found.sort_by_key(|(secondary, _, _)| *secondary);
        Ok(found.into_iter().map(|(_, ip, len)| (ip, len)).collect())
    }
}

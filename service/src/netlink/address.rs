//! Addresses of a link: the uplink's (IPv4 and IPv6), and the router link-local vmnetd puts
//! on each tap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::AddressFamily;

use super::{failed, is_errno, Netlink, Result};

/// Prefix length of a router link-local address on a tap.
const LINK_LOCAL_LEN: u8 = 64;

impl Netlink {
    /// The global IPv4 addresses of a link, primary (non-secondary) ones first.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let messages = self.dump_addresses(AddressFamily::Inet, Some(index)).await?;
        let mut found: Vec<_> = messages
            .iter()
            .filter(|m| m.header.index == index && m.header.scope == AddressScope::Universe)
            .filter_map(|m| match local_address(m)? {
                IpAddr::V4(ip) => {
                    Some((m.header.flags.contains(AddressHeaderFlags::Secondary), ip, m.header.prefix_len))
                }
                IpAddr::V6(_) => None,
            })
            .collect();
        found.sort_by_key(|(secondary, _, _)| *secondary);
        Ok(found.into_iter().map(|(_, ip, len)| (ip, len)).collect())
    }

    /// The global IPv6 addresses of a link that are usable (not tentative, not failed DAD),
    /// preferred ones before deprecated ones.
    pub async fn ipv6_addresses(&self, index: u32) -> Result<Vec<(Ipv6Addr, u8)>> {
        let messages = self.dump_addresses(AddressFamily::Inet6, Some(index)).await?;
        let mut found: Vec<_> = messages
            .iter()
            .filter(|m| m.header.index == index && m.header.scope == AddressScope::Universe)
            .filter_map(|m| {
                let flags = flags_of(m);
                if flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed) {
                    return None;
                }
                match address_of(m)? {
                    IpAddr::V6(ip) => {
                        Some((flags.contains(AddressFlags::Deprecated), ip, m.header.prefix_len))
                    }
                    IpAddr::V4(_) => None,
                }
            })
            .collect();
        found.sort_by_key(|(deprecated, _, _)| *deprecated);
        Ok(found.into_iter().map(|(_, ip, len)| (ip, len)).collect())
    }

    /// Every link-local IPv6 address of every link, as (link index, address): one dump.
    pub async fn link_local_addresses(&self) -> Result<Vec<(u32, Ipv6Addr)>> {
        let messages = self.dump_addresses(AddressFamily::Inet6, None).await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.scope == AddressScope::Link)
            .filter_map(|m| match address_of(m)? {
                IpAddr::V6(ip) => Some((m.header.index, ip)),
                IpAddr::V4(_) => None,
            })
            .collect())
    }

    /// `ip -6 address replace <address>/64 dev #<index> nodad`: a router link-local on a tap,
    /// usable at once (the tap's only neighbour is the guest, which never takes it).
    pub async fn replace_link_local(&self, index: u32, address: Ipv6Addr) -> Result<()> {
        let mut request = self.handle.address().add(index, IpAddr::V6(address), LINK_LOCAL_LEN).replace();
        let message = request.message_mut();
        message.header.flags = AddressHeaderFlags::Nodad;
        message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        request.execute().await.map_err(failed(format!("add {address}/64 dev #{index}")))
    }

    /// Removes a link-local address from a link; an absent one (or link) is not an error.
    pub async fn delete_link_local(&self, index: u32, address: Ipv6Addr) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet6;
        message.header.index = index;
        message.header.prefix_len = LINK_LOCAL_LEN;
        message.attributes.push(AddressAttribute::Address(IpAddr::V6(address)));
        match self.handle.address().del(message).execute().await {
            Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) || is_errno(&e, libc::ENODEV) => Ok(()),
            other => other.map_err(failed(format!("delete {address}/64 dev #{index}"))),
        }
    }

    /// One family's addresses, of one link (filtered by the kernel) or of all.
    async fn dump_addresses(&self, family: AddressFamily, index: Option<u32>) -> Result<Vec<AddressMessage>> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
            request.message_mut().header.index = index;
        }
        request.message_mut().header.family = family;
        let mut stream = request.execute();
        let mut found = Vec::new();
        let what =
            index.map_or_else(|| "dump addresses".to_owned(), |i| format!("dump addresses of link {i}"));
        while let Some(m) = stream.try_next().await.map_err(failed(what.clone()))? {
            if m.header.family == family {
                found.push(m);
            }
        }
        Ok(found)
    }
}

/// IFA_LOCAL (IPv4's own address), else IFA_ADDRESS.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| address_of(message))
}

/// IFA_ADDRESS (IPv6's own address).
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

/// IFA_FLAGS (32 bits) when present, else the header's 8 bits.
fn flags_of(message: &AddressMessage) -> AddressFlags {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(flags) => Some(*flags),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_truncate(u32::from(message.header.flags.bits())))
}

//! Links: the taps vmnetd owns, and the uplink.

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoTun, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::LinkUnspec;

use super::{failed, is_errno, Netlink, Result};

/// IFLA_TUN_OWNER inside a tun device's IFLA_INFO_DATA.
const IFLA_TUN_OWNER: u16 = 1;

/// What vmnetd needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    /// Carrier: for a tap, some process (QEMU) holds it.
    pub lower_up: bool,
    /// The uid that owns a tun/tap device; `None` for other links or unowned taps.
    pub tun_owner: Option<u32>,
    pub is_tun: bool,
}

impl Netlink {
    /// Every tun/tap device, in one dump filtered by the kernel.
    pub async fn tun_links(&self) -> Result<Vec<Link>> {
        let mut request = self.handle.link().get();
        let attributes = &mut request.message_mut().attributes;
        attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Tun)]));
        attributes.push(skip_stats());
        let mut stream = request.execute();
        let mut links = Vec::new();
        // Parsed one message at a time: the dump's messages are never all held at once.
        while let Some(message) = stream.try_next().await.map_err(failed("dump tun links"))? {
            links.push(parse_link(&message));
        }
        Ok(links)
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let mut request = self.handle.link().get().match_name(name.to_owned());
        request.message_mut().attributes.push(skip_stats());
        let mut request = request.execute();
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

    /// Sets the link down: a tap that is down passes no frames. Quick, unlike deleting it.
    pub async fn set_down(&self, index: u32, name: &str) -> Result<()> {
        match self.handle.link().set(LinkUnspec::new_with_index(index).down().build()).execute().await {
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            other => other.map_err(failed(format!("set {name} down"))),
        }
    }

    /// Deletes the link. The kernel waits for RCU grace periods before it answers, so this is
    /// carried out on the netlink thread: awaiting it stalls nothing else.
    pub async fn delete_link(&self, index: u32, name: &str) -> Result<()> {
        match self.slow.link().del(index).execute().await {
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            other => other.map_err(failed(format!("delete link {name}"))),
        }
    }
}

/// Links come without their statistics: vmnetd never reads them, and they are most of a
/// link message.
fn skip_stats() -> LinkAttribute {
    LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
}

pub(super) fn parse_link(message: &LinkMessage) -> Link {
    let flags = message.header.flags;
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
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

fn tun_owner(data: &[InfoTun]) -> Option<u32> {
    use netlink_packet_core::Nla;
    data.iter().find(|nla| nla.kind() == IFLA_TUN_OWNER).and_then(|nla| {
        let mut value = [0u8; 4];
        (nla.value_len() == 4).then(|| {
            nla.emit_value(&mut value);
            u32::from_ne_bytes(value)
        })
    })
}

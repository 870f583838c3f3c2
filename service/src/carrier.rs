//! Which guest taps something holds open: a tap's carrier (IFF_LOWER_UP) is on while a process
//! (QEMU, libvirt) is attached to it. Followed through rtnetlink link notifications, on their
//! own multicast connection, independent of the reconciler; published as tap name → running
//! in a `watch` channel that `Guest1.Running` reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::watch;

use crate::names::TAP_PREFIX;

/// Tap name → whether its carrier is on. Only vmnetd's taps (`vmt-*`) are kept.
pub type Carriers = Arc<BTreeMap<String, bool>>;

/// Links by index, so that a rename or a removal drops the old name.
#[derive(Default)]
struct Links(BTreeMap<u32, (String, bool)>);

impl Links {
    /// Applies one link message (others are ignored).
    fn apply(&mut self, message: &RouteNetlinkMessage) {
        match message {
            RouteNetlinkMessage::NewLink(link) => match tap_carrier(link) {
                Some(entry) => {
                    self.0.insert(link.header.index, entry);
                }
                None => {
                    self.0.remove(&link.header.index);
                }
            },
            RouteNetlinkMessage::DelLink(link) => {
                self.0.remove(&link.header.index);
            }
            _ => {}
        }
    }

    fn carriers(&self) -> BTreeMap<String, bool> {
        self.0.values().cloned().collect()
    }
}

/// `(name, running)` of a vmnetd tap; `None` for any other link.
fn tap_carrier(link: &LinkMessage) -> Option<(String, bool)> {
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name),
        _ => None,
    })?;
    name.starts_with(TAP_PREFIX).then(|| (name.clone(), link.header.flags.contains(LinkFlags::LowerUp)))
}

/// Starts following carriers: the receiver holds the state after the first dump (empty until
/// then). Notifications lost to a full socket buffer (ENOBUFS, an overrun) trigger a new dump.
pub fn follow() -> std::io::Result<watch::Receiver<Carriers>> {
    let (connection, handle, notifications) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(connection);
    let (sender, receiver) = watch::channel(Carriers::default());
    tokio::spawn(run(handle, notifications, sender));
    Ok(receiver)
}

async fn run<A>(
    handle: Handle,
    mut notifications: impl Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, A)> + Unpin,
    sender: watch::Sender<Carriers>,
) {
    let mut links = dump(&handle).await;
    publish(&sender, &links);
    while let Some((message, _)) = notifications.next().await {
        match message.payload {
            NetlinkPayload::InnerMessage(inner) => links.apply(&inner),
            NetlinkPayload::Overrun(_) => {
                tracing::warn!("link notifications were lost (socket buffer full); reading all links again");
                links = dump(&handle).await;
            }
            _ => continue,
        }
        publish(&sender, &links);
    }
    tracing::error!("rtnetlink link notifications ended; Guest1.Running is no longer updated");
}

/// Every link, read again. Notifications that arrive meanwhile are queued and applied after,
/// which is right: they are newer than the dump or repeat it.
async fn dump(handle: &Handle) -> Links {
    let mut links = Links::default();
    let mut stream = handle.link().get().execute();
    while let Some(result) = stream.next().await {
        match result {
            Ok(link) => links.apply(&RouteNetlinkMessage::NewLink(link)),
            Err(e) => {
                tracing::warn!("reading links for carrier states: {e}");
                break;
            }
        }
    }
    links
}

fn publish(sender: &watch::Sender<Carriers>, links: &Links) {
    let now = links.carriers();
    sender.send_if_modified(|current| {
        let changed = **current != now;
        if changed {
            *current = Arc::new(now);
        }
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, lower_up: bool) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = index;
        if lower_up {
            link.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        }
        link.attributes.push(LinkAttribute::IfName(name.to_owned()));
        link
    }

    #[test]
    fn taps_are_followed_by_index_through_changes_renames_and_removal() {
        let mut links = Links::default();
        links.apply(&RouteNetlinkMessage::NewLink(link(7, "vmt-web", false)));
        links.apply(&RouteNetlinkMessage::NewLink(link(2, "wlan0", true)));
        assert_eq!(links.carriers(), BTreeMap::from([("vmt-web".to_owned(), false)]));
        links.apply(&RouteNetlinkMessage::NewLink(link(7, "vmt-web", true)));
        assert_eq!(links.carriers(), BTreeMap::from([("vmt-web".to_owned(), true)]));
        links.apply(&RouteNetlinkMessage::NewLink(link(7, "renamed", true)));
        assert!(links.carriers().is_empty());
        links.apply(&RouteNetlinkMessage::NewLink(link(8, "vmt-db", true)));
        links.apply(&RouteNetlinkMessage::DelLink(link(8, "vmt-db", true)));
        assert!(links.carriers().is_empty());
    }
}

//! Which guest taps something holds open: a tap's carrier (IFF_LOWER_UP) is on while a process
//! (QEMU, libvirt) is attached to it. Followed through rtnetlink link notifications, on their
//! own multicast connection, independent of the reconciler; published as tap name → running
//! in a `watch` channel that `Guest1.Running` reads.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::{broadcast, watch};

use crate::names::TAP_PREFIX;

/// Every guest tap that exists, by name, with its carrier.
pub type Carriers = BTreeMap<String, bool>;

/// Changes queued for a slow reader before it must read everything again.
const CHANGE_QUEUE: usize = 256;

/// One tap appeared, vanished or had its carrier change (`None`: it does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapChange {
    pub tap: String,
    pub before: Option<bool>,
    pub after: Option<bool>,
}

impl TapChange {
    /// Whether `Guest1.Running` (carrier on) changed.
    pub fn running_changed(&self) -> bool {
        self.before.unwrap_or(false) != self.after.unwrap_or(false)
    }
}

/// What a reader of the taps learns next.
#[derive(Debug)]
pub enum TapUpdate {
    Changed(TapChange),
    /// Changes were lost (the reader was too slow): compare with [`TapFeed::now`].
    Lost,
}

/// The taps for one reader: the current map, and each change as it happens (so a reader does
/// what a change needs, not a comparison of every tap).
pub struct TapFeed {
    pub now: watch::Receiver<Carriers>,
    changes: broadcast::Receiver<TapChange>,
}

impl Clone for TapFeed {
    fn clone(&self) -> Self {
        Self { now: self.now.clone(), changes: self.changes.resubscribe() }
    }
}

impl TapFeed {
    /// The next change; `None` once the follower stopped.
    pub async fn next(&mut self) -> Option<TapUpdate> {
        match self.changes.recv().await {
            Ok(change) => Some(TapUpdate::Changed(change)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(TapUpdate::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// A feed with nothing behind it (tests): the taps in `now`, no changes.
    #[cfg(test)]
    pub fn fixed(now: Carriers) -> (Self, broadcast::Sender<TapChange>) {
        let (sender, changes) = broadcast::channel(CHANGE_QUEUE);
        (Self { now: watch::channel(now).1, changes }, sender)
    }
}

#[derive(Default)]
struct Links(BTreeMap<u32, (String, bool)>);

impl Links {
    /// Applies one notification; returns what it changed.
    fn apply(&mut self, message: &RouteNetlinkMessage) -> Vec<TapChange> {
        let (index, now) = match message {
            RouteNetlinkMessage::NewLink(link) => (link.header.index, tap_carrier(link)),
            RouteNetlinkMessage::DelLink(link) => (link.header.index, None),
            _ => return Vec::new(),
        };
        let before = match &now {
            Some(entry) => self.0.insert(index, entry.clone()),
            None => self.0.remove(&index),
        };
        match (before, now) {
            (Some((old, was)), Some((new, is))) if old == new => {
                change(new, Some(was), Some(is)).into_iter().collect()
            }
            (before, now) => {
                let gone = before.and_then(|(old, was)| change(old, Some(was), None));
                let came = now.and_then(|(new, is)| change(new, None, Some(is)));
                gone.into_iter().chain(came).collect()
            }
        }
    }

    /// What differs from `older` (after links were lost).
    fn changes_since(&self, older: &Links) -> Vec<TapChange> {
        let (old, new) = (older.carriers(), self.carriers());
        let vanished = old.iter().filter(|(tap, _)| !new.contains_key(*tap));
        let gone = vanished.map(|(tap, was)| TapChange { tap: tap.clone(), before: Some(*was), after: None });
        let differ = new.iter().filter(|(tap, is)| old.get(*tap) != Some(is));
        let came = differ.map(|(tap, is)| TapChange {
            tap: tap.clone(),
            before: old.get(tap).copied(),
            after: Some(*is),
        });
        gone.chain(came).collect()
    }

    fn carriers(&self) -> Carriers {
        self.0.values().cloned().collect()
    }
}

fn change(tap: String, before: Option<bool>, after: Option<bool>) -> Option<TapChange> {
    (before != after).then_some(TapChange { tap, before, after })
}

fn tap_carrier(link: &LinkMessage) -> Option<(String, bool)> {
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name),
        _ => None,
    })?;
    name.starts_with(TAP_PREFIX).then(|| (name.clone(), link.header.flags.contains(LinkFlags::LowerUp)))
}

pub fn follow() -> std::io::Result<TapFeed> {
    let (connection, handle, notifications) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(connection);
    let (sender, now) = watch::channel(Carriers::default());
    let (changes, first) = broadcast::channel(CHANGE_QUEUE);
    let read_links = move || {
        let handle = handle.clone();
        async move { dump(&handle).await }
    };
    tokio::spawn(run(read_links, notifications, sender, changes));
    Ok(TapFeed { now, changes: first })
}

/// Follows `notifications`; `read_links` reads every link, at the start and after an overrun.
async fn run<A, Read>(
    mut read_links: impl FnMut() -> Read,
    mut notifications: impl Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, A)> + Unpin,
    sender: watch::Sender<Carriers>,
    changes: broadcast::Sender<TapChange>,
) where
    Read: std::future::Future<Output = Links>,
{
    let mut links = read_links().await;
    sender.send_replace(links.carriers());
    while let Some((message, _)) = notifications.next().await {
        let changed = match message.payload {
            NetlinkPayload::InnerMessage(inner) => links.apply(&inner),
            NetlinkPayload::Overrun(_) => {
                tracing::warn!("link notifications were lost (socket buffer full); reading all links again");
                let older = std::mem::replace(&mut links, read_links().await);
                links.changes_since(&older)
            }
            _ => continue,
        };
        for change in changed {
            // In place: readers hold no copy of the map, so this costs one entry.
            sender.send_modify(|taps| match change.after {
                Some(carrier) => drop(taps.insert(change.tap.clone(), carrier)),
                None => drop(taps.remove(&change.tap)),
            });
            // No reader (yet) is not an error.
            let _ = changes.send(change);
        }
    }
    tracing::error!("rtnetlink link notifications ended; Guest1.Running is no longer updated");
}

async fn dump(handle: &Handle) -> Links {
    let mut links = Links::default();
    let mut stream = handle.link().get().execute();
    while let Some(result) = stream.next().await {
        match result {
            Ok(link) => drop(links.apply(&RouteNetlinkMessage::NewLink(link))),
            Err(e) => {
                tracing::warn!("reading links for carrier states: {e}");
                break;
            }
        }
    }
    links
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

    fn tap(tap: &str, before: Option<bool>, after: Option<bool>) -> TapChange {
        TapChange { tap: tap.into(), before, after }
    }

    #[test]
    fn taps_are_followed_by_index_through_changes_renames_and_removal() {
        let mut links = Links::default();
        let new = |links: &mut Links, index, name, up| {
            links.apply(&RouteNetlinkMessage::NewLink(link(index, name, up)))
        };
        assert_eq!(new(&mut links, 7, "vmt-web", false), [tap("vmt-web", None, Some(false))]);
        assert_eq!(new(&mut links, 2, "wlan0", true), [], "not a guest tap");
        assert_eq!(links.carriers(), BTreeMap::from([("vmt-web".to_owned(), false)]));
        assert_eq!(new(&mut links, 7, "vmt-web", false), [], "nothing changed");
        let started = new(&mut links, 7, "vmt-web", true);
        assert_eq!(started, [tap("vmt-web", Some(false), Some(true))]);
        assert!(started[0].running_changed());
        assert_eq!(links.carriers(), BTreeMap::from([("vmt-web".to_owned(), true)]));
        assert_eq!(new(&mut links, 7, "renamed", true), [tap("vmt-web", Some(true), None)]);
        assert!(links.carriers().is_empty());
        assert!(!new(&mut links, 8, "vmt-db", false)[0].running_changed(), "a new tap is not running");
        let gone = links.apply(&RouteNetlinkMessage::DelLink(link(8, "vmt-db", false)));
        assert_eq!(gone, [tap("vmt-db", Some(false), None)]);
        assert!(links.carriers().is_empty());
    }

    fn links(all: &[(u32, &str, bool)]) -> Links {
        let mut links = Links::default();
        for &(index, name, up) in all {
            links.apply(&RouteNetlinkMessage::NewLink(link(index, name, up)));
        }
        links
    }

    #[tokio::test]
    async fn an_overrun_reads_every_link_again_and_reports_what_changed_meanwhile() {
        // The first reading, then the one after the overrun: vmt-web went, vmt-db started.
        let mut readings = vec![
            links(&[(8, "vmt-db", false), (9, "vmt-new", false)]).0,
            links(&[(7, "vmt-web", true), (8, "vmt-db", false)]).0,
        ];
        let read_links = move || {
            let reading = Links(readings.pop().unwrap_or_default());
            async move { reading }
        };
        let overrun = NetlinkMessage::new(Default::default(), NetlinkPayload::Overrun(Vec::new()));
        let more = RouteNetlinkMessage::NewLink(link(8, "vmt-db", true));
        let more = NetlinkMessage::new(Default::default(), NetlinkPayload::InnerMessage(more));
        let notifications = futures::stream::iter([(overrun, ()), (more, ())]);
        let (sender, now) = watch::channel(Carriers::default());
        let (changes, mut seen) = broadcast::channel(CHANGE_QUEUE);
        run(read_links, notifications, sender, changes).await;
        let mut reported = Vec::new();
        while let Ok(change) = seen.try_recv() {
            reported.push(change);
        }
        let expected = [
            tap("vmt-web", Some(true), None),
            tap("vmt-new", None, Some(false)),
            tap("vmt-db", Some(false), Some(true)),
        ];
        assert_eq!(reported, expected);
        let carriers = BTreeMap::from([("vmt-db".to_owned(), true), ("vmt-new".to_owned(), false)]);
        assert_eq!(*now.borrow(), carriers);
    }

    #[test]
    fn after_lost_notifications_the_difference_is_reported() {
        let mut older = Links::default();
        older.apply(&RouteNetlinkMessage::NewLink(link(7, "vmt-web", true)));
        older.apply(&RouteNetlinkMessage::NewLink(link(8, "vmt-db", false)));
        let mut now = Links::default();
        now.apply(&RouteNetlinkMessage::NewLink(link(8, "vmt-db", true)));
        now.apply(&RouteNetlinkMessage::NewLink(link(9, "vmt-new", false)));
        let changes = now.changes_since(&older);
        let expected = [
            tap("vmt-web", Some(true), None),
            tap("vmt-db", Some(false), Some(true)),
            tap("vmt-new", None, Some(false)),
        ];
        assert_eq!(changes, expected);
    }
}

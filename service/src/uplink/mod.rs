//! Where the uplink comes from. A source reads the uplink on demand and, from a task of its
//! own, keeps the latest reading in a `watch` channel: the reconciler sees only the newest
//! value, however many changes a roam brings.

pub mod kernel;
pub mod networkmanager;
pub mod resolv;

use std::future::Future;

use tokio::sync::watch;

use crate::model::Uplink;

/// A way to follow the uplink.
pub trait UplinkSource {
    /// The uplink right now; `Ok(None)` when it has no IPv4 address (offline).
    fn read(&self) -> impl Future<Output = Result<Option<Uplink>, String>>;
}

/// The configured source.
#[derive(Clone)]
pub enum Source {
    Kernel(kernel::KernelUplink),
    NetworkManager(networkmanager::NmUplink),
}

impl Source {
    /// Starts following changes: subscribes, then reads, so no change in between is missed.
    pub async fn follow(self) -> Result<watch::Receiver<Option<Uplink>>, String> {
        match self {
            Source::Kernel(source) => {
                source.follow().await.map_err(|e| format!("cannot follow rtnetlink: {e}"))
            }
            Source::NetworkManager(source) => {
                source.follow().await.map_err(|e| format!("cannot follow NetworkManager: {e}"))
            }
        }
    }
}

impl UplinkSource for Source {
    async fn read(&self) -> Result<Option<Uplink>, String> {
        match self {
            Source::Kernel(source) => source.read_uplink().await,
            Source::NetworkManager(source) => source.read_uplink().await,
        }
    }
}

/// The first reading: a source that cannot be read yet counts as offline.
async fn first_reading(read: impl Future<Output = Result<Option<Uplink>, String>>) -> Option<Uplink> {
    read.await.unwrap_or_else(|e| {
        tracing::warn!("cannot read the uplink yet: {e}");
        None
    })
}

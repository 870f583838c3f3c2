//! Where the uplink comes from. A source reads the uplink on demand and, from a task of its
//! own, reports every change into the reconciler's event channel.

pub mod kernel;
pub mod networkmanager;
pub mod resolv;

use std::future::Future;

use crate::model::Uplink;

/// A way to follow the uplink.
pub trait UplinkSource: Send + Sync + 'static {
    /// The uplink right now; `Ok(None)` when it has no IPv4 address (offline).
    fn read(&self) -> impl Future<Output = Result<Option<Uplink>, String>> + Send;
}

/// The configured source.
#[derive(Clone)]
pub enum Source {
    Kernel(kernel::KernelUplink),
    NetworkManager(networkmanager::NmUplink),
}

impl Source {
    /// Starts following changes, reporting them into `events`.
    pub async fn watch(
        self,
        initial: Option<Uplink>,
        events: tokio::sync::mpsc::Sender<crate::reconciler::Event>,
    ) -> Result<(), String> {
        match self {
            Source::Kernel(source) => {
                source.watch(initial, events).map_err(|e| format!("cannot follow rtnetlink: {e}"))
            }
            Source::NetworkManager(source) => {
                source.watch(initial, events).await.map_err(|e| format!("cannot follow NetworkManager: {e}"))
            }
        }
    }
}

impl UplinkSource for Source {
    async fn read(&self) -> Result<Option<Uplink>, String> {
        match self {
            Source::Kernel(source) => source.read().await,
            Source::NetworkManager(source) => source.read().await,
        }
    }
}

//! Where the uplink comes from. A source reads the uplink on demand and, from a task of its
//! own, reports every change into the reconciler's event channel.

pub mod kernel;
pub mod resolv;

use std::future::Future;

use crate::model::Uplink;

/// A way to follow the uplink.
pub trait UplinkSource: Send + Sync + 'static {
    /// The uplink right now; `Ok(None)` when it has no IPv4 address (offline).
    fn read(&self) -> impl Future<Output = Result<Option<Uplink>, String>> + Send;
}

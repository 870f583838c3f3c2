//! A typed rtnetlink wrapper: one method per kernel operation vmnetd performs, shared by the
//! executor and the kernel uplink source.
//!
//! The socket has strict checking on (`NETLINK_GET_STRICT_CHK`), so dumps are filtered by the
//! kernel: vmnetd never reads the host's whole routing table or every link.
//! Deleting a link waits for RCU grace periods (tens of ms); those requests go through a
//! connection driven by a thread of its own, so they never stall the runtime.

mod address;
mod link;
mod neighbour;
mod route;

use std::sync::mpsc as std_mpsc;

use rtnetlink::Handle;

pub use link::Link;
pub use neighbour::Proxy;
pub use route::{host_prefix_len, Route, VMNET_ROUTE_PROTOCOL};

/// A failed netlink operation, naming what was attempted.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {source}")]
pub struct NetlinkError {
    pub operation: String,
    #[source]
    pub source: rtnetlink::Error,
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

fn failed(operation: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let operation = operation.into();
    move |source| NetlinkError { operation, source }
}

fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(msg) if msg.raw_code() == -errno)
}

/// rtnetlink connections of the executor and the kernel uplink source.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    /// Driven by the "vmnetd-netlink" thread: for requests the kernel answers slowly.
    slow: Handle,
}

impl Netlink {
    /// Opens the netlink sockets in the current network namespace; must run inside a Tokio
    /// runtime. The task returned drives the main connection: it must not end.
    pub fn connect() -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        let task = tokio::spawn(connection);
        Ok((Self { handle, slow: slow_connection()? }, task))
    }

    /// [`Netlink::connect`] without the deletion thread: for a reader of links, addresses and
    /// routes (the kernel uplink source), whose dumps then never meet the executor's. The task
    /// returned drives the connection: it must not end.
    pub fn connect_reader() -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        let task = tokio::spawn(connection);
        Ok((Self { slow: handle.clone(), handle }, task))
    }
}

/// A connection whose requests are sent, and so carried out by the kernel, on a thread of its
/// own.
fn slow_connection() -> std::io::Result<Handle> {
    let (sender, receiver) = std_mpsc::channel();
    std::thread::Builder::new().name("vmnetd-netlink".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(sender.send(Err(e))),
        };
        runtime.block_on(async move {
            match rtnetlink::new_connection_with_strict_check() {
                Ok((connection, handle, _)) => {
                    if sender.send(Ok(handle)).is_ok() {
                        connection.await;
                    }
                }
                Err(e) => drop(sender.send(Err(e))),
            }
        });
    })?;
    receiver.recv().map_err(std::io::Error::other)?
}

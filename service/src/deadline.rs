//! Waiting for an optional deadline in a `select!`.

use tokio::time::Instant;

/// Sleeps until `deadline`; forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

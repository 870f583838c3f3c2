//! The full sync: every guest homed in the current subnet, the whole plan applied with the
//! kernel's state read back and swept, everything published.

use vmnet_dbus::Error;

use super::{Reconciler, SaveFailed};
use crate::address_book::Prober;
use crate::executor::{Kernel, Outcome};
use crate::planner;
use crate::uplink::UplinkSource;

/// How much of the kernel a converge reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Everything vmnetd owns: taps (a dump of every tap), host sysctls, routes.
    Full,
    /// What an uplink change moves: routes and host sysctls, with the taps as last set up. A
    /// full sync follows at once, after the re-home is published.
    Routes,
}

impl<S: UplinkSource, K: Kernel, P: Prober, N: super::Notifier> Reconciler<S, K, P, N> {
    /// The full sync.
    pub(super) async fn converge(&mut self) -> Result<Outcome, SaveFailed> {
        self.converge_with(Scope::Full).await
    }

    /// Assigns addresses (probing new ones), persists, applies, publishes. Fails only when the
    /// state could not be written (the kernel was converged all the same).
    pub(super) async fn converge_with(&mut self, scope: Scope) -> Result<Outcome, SaveFailed> {
        let started = tokio::time::Instant::now();
        self.retry = None;
        let mut rehomed = None;
        let new_network = self.uplink.is_some() && std::mem::take(&mut self.new_network);
        if let Some(subnet) = self.uplink.as_ref().map(|up| up.subnet()) {
            let names: Vec<String> = self.guests.keys().cloned().collect();
            for name in self.book.rehome(names.iter().map(String::as_str)).await {
                self.unsaved.guest(name);
            }
            if self.last_subnet != Some(subnet) || new_network {
                // Another network with the same subnet is a re-home too (old = new subnet).
                rehomed = self.last_subnet.map(|old| (old, subnet));
                self.last_subnet = Some(subnet);
                self.unsaved.host = true;
            }
        }
        let homed = started.elapsed();
        let desired =
            planner::plan(self.uplink.as_ref(), self.guests.values().map(|g| (g, self.addresses(&g.name))));
        match self.kernel.record_originals(&desired.host_sysctls, &mut self.saved) {
            Ok(grew) => self.unsaved.host |= grew,
            Err(e) => tracing::warn!("cannot record a sysctl before changing it: {e}"),
        }
        // The kernel follows the uplink even when the state cannot be written: a failed write
        // is retried with back-off (and kept in memory until then).
        let _ = self.save();
        let planned = started.elapsed();
        // What this sync finds failing replaces what earlier steps did.
        self.problems.clear();
        let saved_before = self.saved.clone();
        let mut outcome = match scope {
            Scope::Full => self.kernel.sync_all(&desired, &mut self.saved).await,
            Scope::Routes => self.kernel.sync_routes(&desired, &mut self.saved, &self.tap_indexes).await,
        };
        self.unsaved.host |= self.saved != saved_before;
        let saved = self.save();
        if let Err(SaveFailed(reason)) = &saved {
            outcome.errors.push(reason.clone());
        }
        self.after_apply(&outcome);
        let applied = started.elapsed();
        if scope == Scope::Full {
            // In place: the indexes rarely change, and a fresh copy of every name would be
            // scattered over the memory the sync just freed.
            let indexes = std::mem::take(&mut outcome.tap_indexes);
            self.tap_indexes.retain(|tap, _| indexes.contains_key(tap));
            for (tap, index) in indexes {
                if self.tap_indexes.get(&tap) != Some(&index) {
                    self.tap_indexes.insert(tap, index);
                }
            }
        }
        let names: Vec<String> = self.guests.keys().cloned().collect();
        self.tell_guests(names.iter().map(String::as_str), new_network);
        self.publish_all(rehomed).await;
        if scope == Scope::Full {
            release_freed_memory();
        }
        tracing::debug!(?homed, ?planned, ?applied, "converge: addresses, plan and state file, kernel");
        tracing::debug!(elapsed = ?started.elapsed(), outcome = outcome.summary(), "converged");
        if let Some((old, new)) = rehomed {
            tracing::info!("re-homed {} guests from {old} to {new}", self.guests.len());
        }
        saved.map(|()| outcome)
    }

    /// Reads the uplink again, forgets what was found in use on the LAN and verifies every
    /// tap again; answers once the kernel has converged.
    pub(super) async fn resync(&mut self) -> Result<(), Error> {
        self.kernel.forget();
        self.book.forget_lan();
        let uplink =
            self.source.read().await.map_err(|e| Error::Failed(format!("reading the uplink: {e}")))?;
        if uplink != self.uplink {
            self.set_uplink(uplink).await;
        }
        self.converge().await.map_err(|SaveFailed(m)| Error::Failed(m))?;
        let outcome = self.kernel.settle().await;
        self.after_apply(&outcome);
        Ok(())
    }
}

/// Gives the memory a full sync used (a dump of every tap) back to the system: the allocator
/// keeps freed pages otherwise, and a long-running daemon should not hold its peak for good.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

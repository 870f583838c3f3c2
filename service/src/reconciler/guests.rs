//! Changes of one guest: added, removed, or moved off an address its DHCP client declined.
//! Each touches that guest's kernel state only, and the host-wide settings only when the first
//! guest arrives or the last one goes.

use vmnet_dbus::Error;
use zbus::OwnedObjectPath;

use super::{Notifier, Reconciler, SaveFailed};
use crate::address_book::Prober;
use crate::bus::NewGuest;
use crate::carrier::Carriers;
use crate::dhcp::Declined;
use crate::executor::Kernel;
use crate::model::Guest;
use crate::names::{default_mac, tap_name};
use crate::planner::{self, Addresses};
use crate::uplink::UplinkSource;

impl<S: UplinkSource, K: Kernel, P: Prober, N: Notifier> Reconciler<S, K, P, N> {
    pub(super) async fn add_guest(&mut self, request: NewGuest) -> Result<OwnedObjectPath, Error> {
        let started = std::time::Instant::now();
        let requested = request.address;
        let guest = self.admit(request)?;
        let name = guest.name.clone();
        let address =
            self.book.admit(&name, requested).await.map_err(|e| Error::AddressUnavailable(e.to_string()))?;
        self.guests.insert(name.clone(), guest.clone());
        self.unsaved.guest(&name);
        if let Err(SaveFailed(reason)) = self.enter_host_settings() {
            self.forget_guest(&name);
            return Err(Error::Failed(format!("could not add guest {name}: {reason}")));
        }
        let saved = started.elapsed();
        let plan = planner::plan_guest(self.uplink.as_ref(), &guest, Addresses::v4_only(address));
        let outcome = self.kernel.ensure_guest(&plan, &[]).await;
        let applied = started.elapsed();
        if outcome.failed_taps.contains(&guest.tap) {
            let reason = outcome.errors.join("; ");
            let cleanup = self.kernel.remove_guest(&guest.tap, &plan.routes).await;
            self.forget_guest(&name);
            let _ = self.leave_host_settings();
            self.after_apply(&cleanup);
            self.publish_problems().await;
            return Err(Error::Failed(format!("could not set up guest {name}: {reason}")));
        }
        self.after_apply(&outcome);
        self.tap_indexes.extend(outcome.tap_indexes);
        self.tell_guests([name.as_str()], false);
        self.publish_guest(&name, &guest.tap).await;
        tracing::debug!(?saved, ?applied, published = ?started.elapsed(), "AddGuest {name}: state file, kernel, published");
        tracing::info!("added guest {name} on {}", guest.tap);
        Ok(vmnet_dbus::guest_object_path(&name))
    }

    /// Checks a new guest against the others and gives it a tap and a MAC.
    fn admit(&self, request: NewGuest) -> Result<Guest, Error> {
        if self.guests.contains_key(&request.name) {
            return Err(Error::AlreadyExists(format!("a guest named {:?} already exists", request.name)));
        }
        let limit = self.config.limits.guests_per_owner;
        let owned = self.guests.values().filter(|g| g.owner == request.owner).count();
        if request.owner != 0 && limit != 0 && owned >= limit as usize {
            return Err(Error::LimitExceeded(format!(
                "user {} has {owned} guests, as many as [limits] guests_per_owner allows; remove one first",
                request.owner
            )));
        }
        let mac = match request.mac {
            Some(mac) => {
                if let Some(other) = self.guests.values().find(|g| g.mac == mac) {
                    return Err(Error::AlreadyExists(format!("MAC {mac} is used by guest {:?}", other.name)));
                }
                mac
            }
            None => (0..)
                .map(|attempt| default_mac(&request.name, attempt))
                .find(|mac| self.guests.values().all(|g| g.mac != *mac))
                .unwrap_or_else(|| default_mac(&request.name, 0)),
        };
        let tap = (0..)
            .map(|attempt| tap_name(&request.name, attempt))
            .find(|tap| self.guests.values().all(|g| g.tap != *tap))
            .unwrap_or_else(|| tap_name(&request.name, 0));
        Ok(Guest { name: request.name, tap, mac, owner: request.owner, qmp: request.qmp })
    }

    /// Drops a guest that could not be added (or saved) from memory and the state file.
    fn forget_guest(&mut self, name: &str) {
        self.guests.remove(name);
        self.book.release(name);
        self.unsaved.guest(name);
        let _ = self.save();
    }

    pub(super) async fn remove_guest(&mut self, name: &str) -> Result<(), Error> {
        let Some(guest) = self.guests.remove(name) else {
            return Err(Error::NotFound(format!("no guest named {name:?}")));
        };
        let number = self.book.number(name);
        let routes = planner::plan_guest(self.uplink.as_ref(), &guest, self.addresses(name)).routes;
        self.book.release(name);
        let learned6 = self.learned6.remove(name);
        self.unsaved.guest(name);
        if let Err(SaveFailed(reason)) = self.save() {
            // Nothing changed: the guest stays, as the state file says.
            self.book.reinstate(name, number);
            self.learned6.extend(learned6.map(|learned| (name.to_owned(), learned)));
            self.guests.insert(name.to_owned(), guest);
            return Err(Error::Failed(format!("could not remove guest {name}: {reason}")));
        }
        let outcome = self.kernel.remove_guest(&guest.tap, &routes).await;
        self.after_apply(&outcome);
        self.tap_indexes.remove(&guest.tap);
        self.given.remove(name);
        if let Err(SaveFailed(reason)) = self.leave_host_settings() {
            tracing::warn!("removed guest {name}, but {reason}");
        }
        self.publish_guest(name, &guest.tap).await;
        tracing::info!("removed guest {name}");
        Ok(())
    }

    /// The guest's DHCP client found its address in use: it moves to the next free one.
    pub(super) async fn declined(&mut self, Declined { guest: name, address }: Declined) {
        if !self.book.declined(&name, address) {
            return; // not (or no longer) its address
        }
        let Some(guest) = self.guests.get(&name).cloned() else { return };
        let new = self.book.place(&name).await;
        self.unsaved.guest(&name);
        let _ = self.save();
        let plan = planner::plan_guest(self.uplink.as_ref(), &guest, self.addresses(&name));
        let declined = Addresses { v4: Some(address), ..self.addresses(&name) };
        let declined = planner::plan_guest(self.uplink.as_ref(), &guest, declined).routes;
        let outcome = self.kernel.ensure_guest(&plan, &declined).await;
        self.after_apply(&outcome);
        self.tap_indexes.extend(outcome.tap_indexes);
        match new {
            Some(new) => tracing::info!("guest {name} moves from {address} to {new}"),
            None => tracing::warn!("guest {name} declined {address} and no other address is free"),
        }
        self.tell_guests([name.as_str()], false);
        self.publish_guest(&name, &guest.tap).await;
    }

    /// Sets up again the taps of guests that vanished (deleted from outside: their owner may),
    /// so that they are served again at once rather than at the next full sync.
    /// Sets up a guest's tap again that was deleted from outside (one vmnetd set up: a tap it
    /// removed itself is no longer in `tap_indexes`).
    pub(super) async fn recreate_vanished_tap(&mut self, tap: &str) {
        if !self.tap_indexes.contains_key(tap) {
            return;
        }
        let Some(guest) = self.guests.values().find(|g| g.tap == tap).cloned() else { return };
        self.recreate_taps([guest]).await;
    }

    /// [`Self::recreate_vanished_tap`] for every guest tap missing from `present`.
    pub(super) async fn recreate_vanished_taps(&mut self, present: &Carriers) {
        let vanished: Vec<Guest> = self
            .guests
            .values()
            .filter(|g| self.tap_indexes.contains_key(&g.tap) && !present.contains_key(&g.tap))
            .cloned()
            .collect();
        self.recreate_taps(vanished).await;
    }

    async fn recreate_taps(&mut self, vanished: impl IntoIterator<Item = Guest>) {
        for guest in vanished {
            tracing::warn!("the tap {} of guest {} vanished: setting it up again", guest.tap, guest.name);
            let plan = planner::plan_guest(self.uplink.as_ref(), &guest, self.addresses(&guest.name));
            let outcome = self.kernel.ensure_guest(&plan, &[]).await;
            self.after_apply(&outcome);
            self.tap_indexes.remove(&guest.tap);
            self.tap_indexes.extend(outcome.tap_indexes);
            self.publish_guest(&guest.name, &guest.tap).await;
        }
    }

    /// With the first guest, the host starts forwarding (and the uplink proxying): the values
    /// before are recorded and persisted first.
    fn enter_host_settings(&mut self) -> Result<(), SaveFailed> {
        if self.guests.len() != 1 {
            return self.save();
        }
        let wanted = planner::host_sysctls(self.uplink.as_ref(), true);
        match self.kernel.record_originals(&wanted, &mut self.saved) {
            Ok(grew) => self.unsaved.host |= grew,
            Err(e) => tracing::warn!("cannot record a sysctl before changing it: {e}"),
        }
        self.save()?;
        let outcome = self.kernel.sync_host(&wanted, &mut self.saved);
        self.after_apply(&outcome);
        Ok(())
    }

    /// With the last guest gone, the host's settings are restored.
    fn leave_host_settings(&mut self) -> Result<(), SaveFailed> {
        if !self.guests.is_empty() {
            return Ok(());
        }
        let saved_before = self.saved.clone();
        let outcome = self.kernel.sync_host(&[], &mut self.saved);
        self.after_apply(&outcome);
        self.unsaved.host |= self.saved != saved_before;
        self.save()
    }
}

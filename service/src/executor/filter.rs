//! The executor's steps on vmnetd's nftables tables ([`crate::firewall`]): in place before
//! the host forwards (and without them it does not), gone only after forwarding is restored.

use super::{Executor, Outcome, SavedSysctls};
use crate::firewall::GuestFilter;
use crate::planner::{Desired, Sysctl};

const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// Whether the host forwarded no IPv4 before vmnetd turned forwarding on: vmnetd recorded
/// the original value then.
fn forwarding_was_off(saved: &SavedSysctls) -> bool {
    saved.get(IP_FORWARD).is_some_and(|original| original == "0")
}

impl Executor {
    /// Both tables written anew with every guest of `desired` (when there is any).
    pub(super) fn sync_filter(&mut self, desired: &Desired, saved: &SavedSysctls, outcome: &mut Outcome) {
        self.block_forwarding = forwarding_was_off(saved);
        if desired.taps.is_empty() {
            // Kept for the first guest, which installs the tables.
            return self.firewall.set_uplink(desired.filter.uplink.clone());
        }
        if let Err(e) = self.firewall.replace(&desired.filter, self.block_forwarding) {
            outcome.error(e);
        }
    }

    /// The tables deleted when `desired` has no guest.
    pub(super) fn sweep_filter(&mut self, desired: &Desired, outcome: &mut Outcome) {
        if desired.taps.is_empty() {
            outcome.errors.extend(self.firewall.delete());
        }
    }

    /// With the first guest: the tables in place before ip_forward is written.
    pub(super) fn filter_before_forwarding(
        &mut self,
        wanted: &[Sysctl],
        saved: &SavedSysctls,
        outcome: &mut Outcome,
    ) {
        self.block_forwarding = forwarding_was_off(saved);
        if wanted.is_empty() {
            return;
        }
        if let Err(e) = self.firewall.ensure_installed(self.block_forwarding) {
            outcome.error(e);
        }
    }

    /// With the last guest gone: the tables deleted once ip_forward is restored.
    pub(super) fn filter_after_forwarding(&mut self, wanted: &[Sysctl], outcome: &mut Outcome) {
        if wanted.is_empty() {
            outcome.errors.extend(self.firewall.delete());
        }
    }

    /// The host sysctls to write: none while the tables are not in place, so that the saved
    /// values are restored and the host never forwards for guests unfiltered (fail closed; the
    /// failure is reported and retried).
    pub(super) fn filtered<'a>(&self, wanted: &'a [Sysctl]) -> &'a [Sysctl] {
        if wanted.is_empty() || self.firewall.is_installed() {
            wanted
        } else {
            &[]
        }
    }

    pub(super) fn ensure_guest_filter(&mut self, filter: &GuestFilter, outcome: &mut Outcome) {
        if let Err(e) = self.firewall.ensure_guest(filter, self.block_forwarding) {
            outcome.error(e);
        }
    }

    pub(super) fn remove_guest_filter(&mut self, tap: &str, outcome: &mut Outcome) {
        if let Err(e) = self.firewall.remove_guest(tap) {
            outcome.error(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_counts_as_off_only_when_vmnetd_turned_it_on() {
        let mut saved = SavedSysctls::new();
        assert!(!forwarding_was_off(&saved), "nothing recorded: the host forwarded already");
        saved.insert(IP_FORWARD.into(), "0".into());
        assert!(forwarding_was_off(&saved));
        saved.insert(IP_FORWARD.into(), "1".into());
        assert!(!forwarding_was_off(&saved));
    }
}

//! The executor's steps on vmnetd's nftables tables ([`crate::firewall`]): in place before
//! the host forwards (and without them it does not), gone only after forwarding is restored.

use super::{Executor, Outcome, SavedSysctls};
use crate::firewall::{Blocking, GuestFilter};
use crate::planner::{Desired, Sysctl};

const IP_FORWARD: &str = "net/ipv4/ip_forward";
const IPV6_FORWARDING: &str = "net/ipv6/conf/all/forwarding";

/// Per IP version, whether the host forwarded nothing before vmnetd turned forwarding on:
/// vmnetd recorded the original value then.
fn blocking(saved: &SavedSysctls) -> Blocking {
    let was_off = |key| saved.get(key).is_some_and(|original| original == "0");
    Blocking { ipv4: was_off(IP_FORWARD), ipv6: was_off(IPV6_FORWARDING) }
}

impl Executor {
    /// Both tables written anew with every guest of `desired` (when there is any).
    pub(super) fn sync_filter(&mut self, desired: &Desired, saved: &SavedSysctls, outcome: &mut Outcome) {
        self.blocking = blocking(saved);
        if desired.taps.is_empty() {
            // Kept for the first guest, which installs the tables.
            return self.firewall.set_uplink(desired.filter.uplink.clone(), desired.filter.ipv6);
        }
        if let Err(e) = self.firewall.replace(&desired.filter, self.blocking) {
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
        self.blocking = blocking(saved);
        if wanted.is_empty() {
            return;
        }
        if let Err(e) = self.firewall.ensure_installed(self.blocking) {
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
        if let Err(e) = self.firewall.ensure_guest(filter, self.blocking) {
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
        assert_eq!(blocking(&saved), Blocking::default(), "nothing recorded: the host forwarded already");
        saved.insert(IP_FORWARD.into(), "0".into());
        assert_eq!(blocking(&saved), Blocking { ipv4: true, ipv6: false });
        saved.insert(IPV6_FORWARDING.into(), "0".into());
        assert_eq!(blocking(&saved), Blocking { ipv4: true, ipv6: true });
        saved.insert(IP_FORWARD.into(), "1".into());
        assert_eq!(blocking(&saved), Blocking { ipv4: false, ipv6: true }, "each version apart");
    }
}

//! Host-wide sysctls (ip_forward, the uplink's proxy_arp): their previous values are recorded
//! before the first write and restored once they are no longer wanted.

use std::collections::BTreeSet;

use super::sysctl::Sysctls;
use super::{Outcome, SavedSysctls};
use crate::planner::Sysctl;

pub fn record_originals(
    sysctls: &Sysctls,
    wanted: &[Sysctl],
    saved: &mut SavedSysctls,
) -> Result<bool, String> {
    let mut grew = false;
    for setting in wanted {
        if saved.contains_key(&setting.key) {
            continue;
        }
        let current = sysctls.read(&setting.key).map_err(|e| e.to_string())?;
        if current != setting.value {
            saved.insert(setting.key.clone(), current);
            grew = true;
        }
    }
    Ok(grew)
}

/// Writes `wanted`, and restores (then forgets) every saved value that is not wanted.
pub fn sync(sysctls: &Sysctls, wanted: &[Sysctl], saved: &mut SavedSysctls, outcome: &mut Outcome) {
    for setting in wanted {
        match sysctls.ensure(&setting.key, setting.value) {
            Ok(wrote) => outcome.sysctls_written += usize::from(wrote),
            Err(e) => outcome.error(e),
        }
    }
    let keys: BTreeSet<&str> = wanted.iter().map(|s| s.key.as_str()).collect();
    saved.retain(|key, original| {
        if keys.contains(key.as_str()) {
            return true;
        }
        match sysctls.ensure(key, original) {
            Ok(wrote) => {
                outcome.sysctls_written += usize::from(wrote);
                false
            }
            Err(e) if e.is_missing() => false, // its interface is gone: nothing to restore
            Err(e) => {
                outcome.error(format!("restoring: {e}"));
                true
            }
        }
    });
}

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
        let applies = setting.only_over.is_none_or(|from| from == current);
        if current != setting.value && applies {
            saved.insert(setting.key.clone(), current);
            grew = true;
        }
    }
    Ok(grew)
}

/// Writes `wanted`, and restores (then forgets) every saved value that is not wanted. A
/// setting written only over a given value is written when vmnetd recorded that value.
pub fn sync(sysctls: &Sysctls, wanted: &[Sysctl], saved: &mut SavedSysctls, outcome: &mut Outcome) {
    for setting in wanted {
        if setting.only_over.is_some() && !saved.contains_key(&setting.key) {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_ra() -> Sysctl {
        Sysctl { key: "net/ipv6/conf/wlan0/accept_ra".into(), value: "2", only_over: Some("1") }
    }

    #[test]
    fn a_setting_written_only_over_a_value_leaves_any_other_alone_and_is_restored() {
        let dir = std::env::temp_dir().join(format!("vmnet-host-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv6/conf/wlan0")).unwrap();
        let sysctls = Sysctls::at(dir.clone());
        let file = dir.join("net/ipv6/conf/wlan0/accept_ra");
        for (before, after) in [("0", "0"), ("1", "2")] {
            std::fs::write(&file, before).unwrap();
            let (mut saved, mut outcome) = (SavedSysctls::new(), Outcome::default());
            record_originals(&sysctls, &[accept_ra()], &mut saved).unwrap();
            sync(&sysctls, &[accept_ra()], &mut saved, &mut outcome);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), after, "over {before}");
            sync(&sysctls, &[], &mut saved, &mut outcome);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "restored");
            assert!(outcome.errors.is_empty() && saved.is_empty());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

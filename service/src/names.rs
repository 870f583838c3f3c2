//! Guest names, and the tap names and default MACs derived from them.

use crate::model::Mac;

/// Longest guest name accepted.
pub const MAX_GUEST_NAME: usize = 32;
/// Every tap vmnetd creates starts with this. It never matches NetworkManager's `vmnet[0-9]*`
/// (which NM treats as VMware devices), and lets vmnetd sweep taps it owns and no longer wants.
pub const TAP_PREFIX: &str = "vmt-";
/// Linux interface names have at most 15 bytes.
const MAX_IFNAME: usize = 15;
/// Default MACs are `0a:76:6d:xx:xx:xx`: locally administered, unicast, "vm" in ASCII.
const MAC_PREFIX: [u8; 3] = [0x0a, 0x76, 0x6d];

/// Checks a guest name: 1 to 32 ASCII letters, digits, `-`, `_` or `.`, starting with a letter
/// or digit.
pub fn validate_guest_name(name: &str) -> Result<(), String> {
    let rule = "use 1 to 32 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit";
    if name.is_empty() || name.len() > MAX_GUEST_NAME {
        return Err(format!("guest name {} has {} bytes: {rule}", quoted(name), name.len()));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(valid_char) {
        return Err(format!("guest name {} is not allowed: {rule}", quoted(name)));
    }
    Ok(())
}

/// A caller's text for an error message: quoted and escaped, and cut after 40 characters so a
/// long value does not fill the message (or the log).
pub fn quoted(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The tap name for a guest: `vmt-<name>` when it fits in 15 bytes, otherwise
/// `vmt-<first 6>-<4 hex digits of a hash>`. `attempt` > 0 picks another hash, for the rare
/// case where the first choice is already taken.
pub fn tap_name(guest: &str, attempt: u32) -> String {
    let plain = format!("{TAP_PREFIX}{guest}");
    if attempt == 0 && plain.len() <= MAX_IFNAME {
        return plain;
    }
    let hash = fnv1a(guest.as_bytes(), attempt) as u16;
    let head: String = guest.chars().take(6).collect();
    let name = format!("{TAP_PREFIX}{head}-{hash:04x}");
    debug_assert!(name.len() <= MAX_IFNAME);
    name
}

/// A stable MAC for a guest; `attempt` > 0 picks another one.
pub fn default_mac(guest: &str, attempt: u32) -> Mac {
    let hash = fnv1a(guest.as_bytes(), attempt).to_be_bytes();
    let [a, b, c] = MAC_PREFIX;
    Mac([a, b, c, hash[5], hash[6], hash[7]])
}

/// FNV-1a, salted: stable across builds and Rust versions (unlike std's hasher).
fn fnv1a(bytes: &[u8], salt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in salt.to_le_bytes().iter().chain(bytes) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_names() {
        for good in ["web", "web-01", "a", "db_2.test", "A9", &"x".repeat(32)] {
            assert!(validate_guest_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", ".x", "has space", "slash/y", "é", &"x".repeat(33), "a:b"] {
            assert!(validate_guest_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_names_are_quoted_short_in_errors() {
        let error = validate_guest_name(&"x".repeat(1200)).unwrap_err();
        assert!(error.contains("1200 bytes") && error.len() < 200, "{error}");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(quoted(&"é".repeat(41)), format!("{:?}…", "é".repeat(40)));
    }

    #[test]
    fn tap_names_fit_and_avoid_nm_vmware_pattern() {
        let vmware =
            |n: &str| n.strip_prefix("vmnet").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()));
        for guest in ["web", "exactly-11c", "a-much-longer-guest-name", &"z".repeat(32), "vmnet0"] {
            for attempt in 0..3 {
                let tap = tap_name(guest, attempt);
                assert!(tap.len() <= 15, "{tap}");
                assert!(tap.starts_with(TAP_PREFIX));
                assert!(!vmware(&tap), "{tap}");
            }
        }
        assert_eq!(tap_name("web", 0), "vmt-web");
        assert_eq!(tap_name("exactly-11c", 0), "vmt-exactly-11c");
        assert_ne!(tap_name("web", 1), tap_name("web", 2));
        assert_eq!(tap_name("a-much-longer-guest-name", 0), tap_name("a-much-longer-guest-name", 0));
    }

    #[test]
    fn default_macs_are_stable_local_unicast() {
        let mac = default_mac("web", 0);
        assert_eq!(mac, default_mac("web", 0));
        assert_ne!(mac, default_mac("web", 1));
        assert_ne!(mac, default_mac("db", 0));
        assert!(mac.is_unicast());
        assert_eq!(mac.0[0] & 2, 2, "locally administered");
    }
}

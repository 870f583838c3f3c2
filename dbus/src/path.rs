use zbus::{ObjectPath, OwnedObjectPath};

use crate::GUESTS_PATH;

/// Object path of the guest `name`: `/org/vmnet/guests/<escaped name>`.
///
/// Bytes other than ASCII letters and digits are written `_xx` (two lowercase hex digits), as
/// systemd does, so every guest name maps to exactly one valid path element.
pub fn guest_object_path(name: &str) -> OwnedObjectPath {
    let mut path = String::with_capacity(GUESTS_PATH.len() + 1 + name.len() * 3);
    path.push_str(GUESTS_PATH);
    path.push('/');
    if name.is_empty() {
        path.push('_');
    }
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            path.push(byte as char);
        } else {
            path.push_str(&format!("_{byte:02x}"));
        }
    }
    // Only ASCII letters, digits, '_' and '/' were written: always a valid object path.
    OwnedObjectPath::from(ObjectPath::from_string_unchecked(path))
}

/// The guest name encoded in a path made by [`guest_object_path`], if it is one.
pub fn guest_name_from_path(path: &ObjectPath<'_>) -> Option<String> {
    let escaped = path.as_str().strip_prefix(GUESTS_PATH)?.strip_prefix('/')?;
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(guest_object_path("web01").as_str(), "/org/vmnet/guests/web01");
    }

    #[test]
    fn other_bytes_are_escaped_and_round_trip() {
        for name in ["web-1", "a_b", "x.y", "Z9"] {
            let path = guest_object_path(name);
            assert_eq!(guest_name_from_path(&path).as_deref(), Some(name), "{path}");
        }
        assert_eq!(guest_object_path("web-1").as_str(), "/org/vmnet/guests/web_2d1");
    }

    #[test]
    fn foreign_paths_are_not_guests() {
        let path = ObjectPath::try_from("/org/vmnet").unwrap();
        assert_eq!(guest_name_from_path(&path), None);
        let bad = ObjectPath::try_from("/org/vmnet/guests/a_zz").unwrap();
        assert_eq!(guest_name_from_path(&bad), None);
    }
}

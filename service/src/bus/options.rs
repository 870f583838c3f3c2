//! The `options` dictionary of `AddGuest`, checked strictly: unknown keys and wrongly typed
//! values are refused, not ignored.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use vmnet_dbus::{add_option, Error};
use zbus::Variant;

use crate::model::Mac;
use crate::names::quoted;

/// A unix socket's path has room for 108 bytes including the terminating NUL.
pub const MAX_QMP_PATH: usize = 107;
/// "52:54:00:12:34:56" and "255.255.255.255".
const MAX_MAC: usize = 17;
const MAX_ADDRESS: usize = 15;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct AddOptions {
    pub owner: Option<u32>,
    pub mac: Option<Mac>,
    pub address: Option<Ipv4Addr>,
    pub qmp: Option<String>,
}

pub fn parse(options: &HashMap<String, Variant<'_>>) -> Result<AddOptions, Error> {
    let mut parsed = AddOptions::default();
    for (key, value) in options {
        let value = match value {
            Variant::Variant(inner) => inner.as_ref(),
            other => other,
        };
        match key.as_str() {
            add_option::OWNER => parsed.owner = Some(expect_u32(key, value)?),
            add_option::MAC => parsed.mac = Some(check_mac(expect_str(key, value)?)?),
            add_option::ADDRESS => parsed.address = Some(check_address(expect_str(key, value)?)?),
            add_option::QMP => parsed.qmp = Some(check_qmp_path(expect_str(key, value)?)?),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {key:?}; known options: {}",
                    add_option::ALL.join(", ")
                )))
            }
        }
    }
    Ok(parsed)
}

fn check_mac(text: &str) -> Result<Mac, Error> {
    let mac: Mac = match text.len() {
        0..=MAX_MAC => text.parse().map_err(Error::InvalidArgument)?,
        n => return Err(Error::InvalidArgument(format!("mac {} has {n} bytes, not 17", quoted(text)))),
    };
    if !mac.is_unicast() || mac.is_zero() {
        return Err(Error::InvalidArgument(format!("mac {mac} is not a unicast address")));
    }
    Ok(mac)
}

fn check_address(text: &str) -> Result<Ipv4Addr, Error> {
    let parsed = (text.len() <= MAX_ADDRESS).then(|| text.parse::<Ipv4Addr>().ok()).flatten();
    let address = parsed.ok_or_else(|| {
        Error::InvalidArgument(format!("address {} is not an IPv4 address like 198.51.100.20", quoted(text)))
    })?;
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback() {
        return Err(Error::InvalidArgument(format!(
            "address {address} cannot be a guest's: it is unspecified, broadcast, multicast or loopback"
        )));
    }
    Ok(address)
}

/// An absolute, normalized path (no empty, `.` or `..` components, so the path vmnetd checks
/// is the path it connects to) that fits a unix socket address, without control characters.
fn check_qmp_path(path: &str) -> Result<String, Error> {
    let refuse = |why: String| Err(Error::InvalidArgument(format!("qmp {}: {why}", quoted(path))));
    if path.len() > MAX_QMP_PATH {
        return refuse(format!("{} bytes; a unix socket path has at most {MAX_QMP_PATH}", path.len()));
    }
    let Some(relative) = path.strip_prefix('/') else {
        return refuse("must be an absolute path".into());
    };
    if path.chars().any(char::is_control) {
        return refuse("contains a control character (NUL, newline, ...)".into());
    }
    if relative.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return refuse("must be a normalized path to a socket: no '//', '.', '..' or trailing '/'".into());
    }
    Ok(path.to_owned())
}

fn expect_u32(key: &str, value: &Variant<'_>) -> Result<u32, Error> {
    match value {
        Variant::U32(n) => Ok(*n),
        other => Err(wrong_type(key, "u", other)),
    }
}

fn expect_str<'v>(key: &str, value: &'v Variant<'_>) -> Result<&'v str, Error> {
    match value {
        Variant::Str(s) => Ok(s.as_str()),
        other => Err(wrong_type(key, "s", other)),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Variant<'_>) -> Error {
    Error::InvalidArgument(format!(
        "option {key:?} must have type '{expected}', not '{}'",
        got.value_signature()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: Vec<(&str, Variant<'static>)>) -> HashMap<String, Variant<'static>> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn empty_and_full() {
        assert_eq!(parse(&opts(vec![])).unwrap(), AddOptions::default());
        let parsed = parse(&opts(vec![
            ("owner", Variant::U32(1000)),
            ("mac", Variant::from("52:54:00:12:34:56")),
            ("address", Variant::from("198.51.100.20")),
            ("qmp", Variant::from("/run/vm/web.qmp")),
        ]))
        .unwrap();
        assert_eq!(parsed.owner, Some(1000));
        assert_eq!(parsed.mac.unwrap().to_string(), "52:54:00:12:34:56");
        assert_eq!(parsed.address, Some("198.51.100.20".parse().unwrap()));
        assert_eq!(parsed.qmp.as_deref(), Some("/run/vm/web.qmp"));
        let longest = format!("/{}", "q".repeat(MAX_QMP_PATH - 1));
        assert_eq!(parse(&opts(vec![("qmp", Variant::from(longest.clone()))])).unwrap().qmp, Some(longest));
        let dotted = parse(&opts(vec![("qmp", Variant::from("/run/user/1000/.vm..qmp"))])).unwrap();
        assert_eq!(dotted.qmp.as_deref(), Some("/run/user/1000/.vm..qmp"));
    }

    #[test]
    fn refusals() {
        let cases: Vec<(&str, Variant<'static>, &str)> = vec![
            ("owner", Variant::I32(1000), "type 'u'"),
            ("owner", Variant::from("1000"), "type 'u'"),
            ("mac", Variant::U32(1), "type 's'"),
            ("mac", Variant::from("01:00:5e:00:00:01"), "unicast"),
            ("mac", Variant::from("00:00:00:00:00:00"), "unicast"),
            ("mac", Variant::from("nonsense"), "MAC address"),
            ("mac", Variant::from("52:54:00:12:34:+6"), "MAC address"),
            ("mac", Variant::from("5".repeat(1200)), "1200 bytes"),
            ("address", Variant::from("198.51.100.300"), "IPv4"),
            ("address", Variant::from("198.51.100.020"), "IPv4"),
            ("address", Variant::from(" 198.51.100.20"), "IPv4"),
            ("address", Variant::from("1".repeat(1200)), "IPv4"),
            ("address", Variant::from("0.0.0.0"), "unspecified"),
            ("address", Variant::from("255.255.255.255"), "broadcast"),
            ("address", Variant::from("224.0.0.1"), "multicast"),
            ("address", Variant::from("127.0.0.1"), "loopback"),
            ("qmp", Variant::from("relative.sock"), "absolute"),
            ("qmp", Variant::from(format!("/{}", "q".repeat(1199))), "1200 bytes"),
            ("qmp", Variant::from(format!("/{}", "q".repeat(107))), "108 bytes"),
            ("qmp", Variant::from("/run/vm\0/web.qmp"), "control character"),
            ("qmp", Variant::from("/run/vm/web\n.qmp"), "control character"),
            ("qmp", Variant::from("/run/vm/../../etc/web.qmp"), "normalized"),
            ("qmp", Variant::from("/run/./vm/web.qmp"), "normalized"),
            ("qmp", Variant::from("/run//vm/web.qmp"), "normalized"),
            ("qmp", Variant::from("/run/vm/"), "normalized"),
            ("qmp", Variant::from("/"), "normalized"),
            ("colour", Variant::from("blue"), "unknown option"),
        ];
        for (key, value, expected) in cases {
            match parse(&opts(vec![(key, value)])) {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains(expected), "{key}: {message}");
                    assert!(message.len() < 200, "{key}: a long message: {message}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}

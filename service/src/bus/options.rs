//! The `options` dictionary of `AddGuest`, checked strictly: unknown keys and wrongly typed
//! values are refused, not ignored.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use vmnet_dbus::{add_option, Error};
use zbus::Variant;

use crate::model::Mac;

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
            add_option::MAC => {
                let mac: Mac = expect_str(key, value)?.parse().map_err(Error::InvalidArgument)?;
                if !mac.is_unicast() || mac.is_zero() {
                    return Err(Error::InvalidArgument(format!("mac {mac} is not a unicast address")));
                }
                parsed.mac = Some(mac);
            }
            add_option::ADDRESS => {
                let text = expect_str(key, value)?;
                let address = text.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "address {text:?} is not an IPv4 address like 198.51.100.20"
                    ))
                })?;
                parsed.address = Some(address);
            }
            add_option::QMP => {
                let path = expect_str(key, value)?;
                if !path.starts_with('/') || path.contains('\0') {
                    return Err(Error::InvalidArgument(format!("qmp {path:?} must be an absolute path")));
                }
                parsed.qmp = Some(path.to_owned());
            }
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
            ("address", Variant::from("198.51.100.300"), "IPv4"),
            ("qmp", Variant::from("relative.sock"), "absolute"),
            ("colour", Variant::from("blue"), "unknown option"),
        ];
        for (key, value, expected) in cases {
            match parse(&opts(vec![(key, value)])) {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains(expected), "{key}: {message}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}

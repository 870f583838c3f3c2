//! The events `vmnetctl watch` reports: decoded from vmnetd's signals, written as a line for
//! people or a JSON object for scripts.

use std::collections::HashMap;

use serde_json::{json, Map};
use vmnet_dbus::{guest_name_from_path, GuestInfo, GUEST_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH};
use zbus::{Message, OwnedObjectPath, OwnedVariant, Variant};

use crate::guests::guest_json;

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";

/// A property value as watch shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(u64),
    Flag(bool),
    List(Vec<String>),
    /// Any other type, in D-Bus text form.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first event: watching has begun.
    Watching {
        vmnetd_running: bool,
    },
    Started,
    Stopped,
    Rehomed {
        old_subnet: String,
        new_subnet: String,
    },
    /// Manager properties that changed: (D-Bus name, new value), sorted by name.
    ManagerChanged(Vec<(String, Value)>),
    GuestAdded(GuestInfo),
    GuestRemoved(String),
    GuestChanged {
        name: String,
        changes: Vec<(String, Value)>,
    },
}

impl Value {
    fn of(variant: &Variant<'_>) -> Value {
        match variant {
            Variant::Str(s) => Value::Text(s.to_string()),
            Variant::U32(n) => Value::Number(u64::from(*n)),
            Variant::U64(n) => Value::Number(*n),
            Variant::Bool(b) => Value::Flag(*b),
            Variant::Array(items) => Value::List(
                items
                    .iter()
                    .map(|item| match item {
                        Variant::Str(s) => s.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            ),
            Variant::Variant(inner) => Value::of(inner),
            other => Value::Other(format!("{other:?}")),
        }
    }

    fn human(&self) -> String {
        let text = match self {
            Value::Text(s) | Value::Other(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Flag(b) => b.to_string(),
            Value::List(items) => items.join(","),
        };
        if text.is_empty() || text.contains(char::is_whitespace) {
            format!("{text:?}")
        } else {
            text
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) | Value::Other(s) => json!(s),
            Value::Number(n) => json!(n),
            Value::Flag(b) => json!(b),
            Value::List(items) => json!(items),
        }
    }
}

/// `HostAddress` → `host_address`: the keys of the JSON output.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn changes(properties: &HashMap<String, OwnedVariant>) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = properties.iter().map(|(k, v)| (k.clone(), Value::of(v))).collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

impl Event {
    /// The event a signal of vmnetd's objects stands for, if any (the caller checks that
    /// vmnetd sent it).
    pub fn from_signal(message: &Message) -> Option<Event> {
        let header = message.header();
        let (path, interface, member) = (header.path()?, header.interface()?, header.member()?);
        let body = message.body();
        match (interface.as_str(), member.as_str()) {
            (MANAGER_INTERFACE, "Rehomed") => {
                let (old_subnet, new_subnet): (String, String) = body.deserialize().ok()?;
                Some(Event::Rehomed { old_subnet, new_subnet })
            }
            (PROPERTIES, "PropertiesChanged") => {
                let (iface, changed, _invalidated): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                    body.deserialize().ok()?;
                if changed.is_empty() {
                    return None;
                }
                if iface == MANAGER_INTERFACE && path.as_str() == MANAGER_PATH {
                    Some(Event::ManagerChanged(changes(&changed)))
                } else if iface == GUEST_INTERFACE {
                    Some(Event::GuestChanged {
                        name: guest_name_from_path(path)?,
                        changes: changes(&changed),
                    })
                } else {
                    None
                }
            }
            (OBJECT_MANAGER, "InterfacesAdded") => {
                let (_, interfaces): (OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>) =
                    body.deserialize().ok()?;
                GuestInfo::from_properties(interfaces.get(GUEST_INTERFACE)?).ok().map(Event::GuestAdded)
            }
            (OBJECT_MANAGER, "InterfacesRemoved") => {
                let (object, interfaces): (OwnedObjectPath, Vec<String>) = body.deserialize().ok()?;
                if !interfaces.iter().any(|i| i == GUEST_INTERFACE) {
                    return None;
                }
                guest_name_from_path(&object).map(Event::GuestRemoved)
            }
            _ => None,
        }
    }

    /// One line for people (without the timestamp).
    pub fn human(&self) -> String {
        let pairs = |list: &[(String, Value)]| -> String {
            list.iter().map(|(k, v)| format!("{}={}", snake_case(k), v.human())).collect::<Vec<_>>().join(" ")
        };
        match self {
            Event::Watching { vmnetd_running: true } => "watching vmnetd (running); Ctrl-C stops".to_owned(),
            Event::Watching { vmnetd_running: false } => {
                "watching vmnetd (not running: it starts on the first call); Ctrl-C stops".to_owned()
            }
            Event::Started => "vmnetd started".to_owned(),
            Event::Stopped => "vmnetd stopped".to_owned(),
            Event::Rehomed { old_subnet, new_subnet } => {
                format!("rehomed from {} to {}", or_none(old_subnet), or_none(new_subnet))
            }
            Event::ManagerChanged(list) => format!("vmnetd changed: {}", pairs(list)),
            Event::GuestAdded(g) => format!(
                "guest {} added: tap={} mac={} address={} state={} owner={}",
                g.name,
                g.tap,
                g.mac,
                Value::Text(g.address.clone()).human(),
                g.state,
                g.owner
            ),
            Event::GuestRemoved(name) => format!("guest {name} removed"),
            Event::GuestChanged { name, changes } => format!("guest {name} changed: {}", pairs(changes)),
        }
    }

    /// One JSON object, `time` (RFC 3339, UTC) first.
    pub fn json(&self, time: &str) -> serde_json::Value {
        let mut object = Map::new();
        object.insert("time".into(), json!(time));
        let mut put = |key: &str, value: serde_json::Value| {
            object.insert(key.into(), value);
        };
        let changes_json = |list: &[(String, Value)]| -> serde_json::Value {
            list.iter().map(|(k, v)| (snake_case(k), v.json())).collect::<Map<_, _>>().into()
        };
        match self {
            Event::Watching { vmnetd_running } => {
                put("event", json!("watching"));
                put("vmnetd_running", json!(vmnetd_running));
            }
            Event::Started => put("event", json!("vmnetd-started")),
            Event::Stopped => put("event", json!("vmnetd-stopped")),
            Event::Rehomed { old_subnet, new_subnet } => {
                put("event", json!("rehomed"));
                put("old_subnet", json!(old_subnet));
                put("new_subnet", json!(new_subnet));
            }
            Event::ManagerChanged(list) => {
                put("event", json!("manager-changed"));
                put("changes", changes_json(list));
            }
            Event::GuestAdded(guest) => {
                put("event", json!("guest-added"));
                put("name", json!(guest.name));
                put("guest", guest_json(guest));
            }
            Event::GuestRemoved(name) => {
                put("event", json!("guest-removed"));
                put("name", json!(name));
            }
            Event::GuestChanged { name, changes } => {
                put("event", json!("guest-changed"));
                put("name", json!(name));
                put("changes", changes_json(changes));
            }
        }
        object.into()
    }
}

fn or_none(subnet: &str) -> &str {
    if subnet.is_empty() {
        "(none)"
    } else {
        subnet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmnet_dbus::guest_object_path;

    fn signal<B>(path: &str, interface: &str, member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        Message::signal(path, interface, member).build(body).unwrap()
    }

    fn text(s: &str) -> Variant<'static> {
        Variant::from(s.to_owned())
    }

    #[test]
    fn rehomed_and_manager_changes() {
        let msg = signal(MANAGER_PATH, MANAGER_INTERFACE, "Rehomed", &("198.51.100.0/24", "203.0.113.0/24"));
        let event = Event::from_signal(&msg).unwrap();
        assert_eq!(event.human(), "rehomed from 198.51.100.0/24 to 203.0.113.0/24");
        let changed: HashMap<&str, Variant<'_>> = HashMap::from([
            ("Subnet", text("203.0.113.0/24")),
            ("HostAddress", text("203.0.113.10")),
            ("Nameservers", Variant::from(vec!["203.0.113.1", "203.0.113.2"])),
        ]);
        let msg = signal(
            MANAGER_PATH,
            PROPERTIES,
            "PropertiesChanged",
            &(MANAGER_INTERFACE, changed, Vec::<&str>::new()),
        );
        let event = Event::from_signal(&msg).unwrap();
        assert_eq!(
            event.human(),
            "vmnetd changed: host_address=203.0.113.10 nameservers=203.0.113.1,203.0.113.2 subnet=203.0.113.0/24"
        );
        let json = event.json("2024-01-01T00:00:00Z");
        assert_eq!(json["event"], "manager-changed");
        assert_eq!(json["changes"]["nameservers"], json!(["203.0.113.1", "203.0.113.2"]));
    }

    #[test]
    fn guests_added_changed_and_removed() {
        let path = guest_object_path("web-1");
        let guest: HashMap<&str, Variant<'_>> = HashMap::from([
            ("Name", text("web-1")),
            ("Tap", text("vmt-web-1")),
            ("Mac", text("0a:76:6d:00:00:01")),
            ("Owner", Variant::U32(1000)),
            ("Address", text("")),
            ("State", text("offline")),
        ]);
        let interfaces =
            HashMap::from([(GUEST_INTERFACE, guest), ("org.freedesktop.DBus.Peer", HashMap::new())]);
        let msg = signal(MANAGER_PATH, OBJECT_MANAGER, "InterfacesAdded", &(&path, interfaces));
        let event = Event::from_signal(&msg).unwrap();
        assert_eq!(
            event.human(),
            "guest web-1 added: tap=vmt-web-1 mac=0a:76:6d:00:00:01 address=\"\" state=offline owner=1000"
        );
        assert_eq!(event.json("t")["guest"]["tap"], "vmt-web-1");

        let changed = HashMap::from([("Address", text("198.51.100.200")), ("StateReason", text(""))]);
        let msg = signal(
            path.as_str(),
            PROPERTIES,
            "PropertiesChanged",
            &(GUEST_INTERFACE, changed, Vec::<&str>::new()),
        );
        let event = Event::from_signal(&msg).unwrap();
        assert_eq!(event.human(), "guest web-1 changed: address=198.51.100.200 state_reason=\"\"");
        assert_eq!(event.json("t")["changes"]["state_reason"], "");

        let msg = signal(MANAGER_PATH, OBJECT_MANAGER, "InterfacesRemoved", &(&path, vec![GUEST_INTERFACE]));
        let event = Event::from_signal(&msg).unwrap();
        assert_eq!(event, Event::GuestRemoved("web-1".into()));
        assert_eq!(event.json("t"), json!({"time": "t", "event": "guest-removed", "name": "web-1"}));
    }

    #[test]
    fn other_signals_are_not_events() {
        let msg =
            signal(MANAGER_PATH, OBJECT_MANAGER, "InterfacesRemoved", &(guest_object_path("a"), vec!["x.Y"]));
        assert_eq!(Event::from_signal(&msg), None);
        let msg = signal(MANAGER_PATH, "org.example.Other", "Rehomed", &("a", "b"));
        assert_eq!(Event::from_signal(&msg), None);
        let msg = signal(MANAGER_PATH, MANAGER_INTERFACE, "Rehomed", &(1u32,));
        assert_eq!(Event::from_signal(&msg), None, "a wrong body is ignored");
    }

    #[test]
    fn snake_case_of_property_names() {
        assert_eq!(snake_case("HostAddress"), "host_address");
        assert_eq!(snake_case("StateReason"), "state_reason");
        assert_eq!(snake_case("Qmp"), "qmp");
    }
}

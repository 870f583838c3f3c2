//! `vmnetctl watch`: vmnetd's signals and its comings and goings, until interrupted.
//!
//! One stream of every message the connection receives keeps the bus's order; two match rules
//! select what reaches it: signals that the owner of `org.vmnet` sends below `/org/vmnet`
//! (the bus checks the sender's ownership, and so does the loop below), and
//! `NameOwnerChanged` for `org.vmnet`, which tells when vmnetd starts and stops.

use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use vmnet_dbus::{BUS_NAME, MANAGER_PATH};
use zbus::fdo::DBusProxy;
use zbus::message::Type;
use zbus::names::BusName;
use zbus::{MatchRule, Message, MessageStream};

use crate::bus::Bus;
use crate::events::Event;
use crate::exit::{CliError, Exit};
use crate::output::print;

const DBUS_NAME: &str = "org.freedesktop.DBus";

pub async fn watch(bus: &Bus, json: bool) -> Result<(), CliError> {
    let mut messages = MessageStream::from(&bus.connection);
    let dbus = DBusProxy::new(&bus.connection).await.map_err(|e| bus.zbus_error(e))?;
    for rule in rules().map_err(|e| bus.zbus_error(e))? {
        dbus.add_match_rule(rule).await.map_err(|e| bus.zbus_error(e.into()))?;
    }
    let name = BusName::try_from(BUS_NAME).map_err(|e| bus.zbus_error(e))?;
    let mut owner = match dbus.get_name_owner(name).await {
        Ok(owner) => Some(owner.to_string()),
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => None,
        Err(e) => return Err(bus.zbus_error(e.into())),
    };
    emit(&Event::Watching { vmnetd_running: owner.is_some() }, json)?;

    let mut interrupt = signal(SignalKind::interrupt()).map_err(stop_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(stop_error)?;
    loop {
        let message = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Err(CliError::new(Exit::Unavailable, "lost the connection to the system bus"));
        };
        // A message the connection could not decode is not an event.
        let Ok(message) = message else { continue };
        for event in events(&message, &mut owner) {
            emit(&event, json)?;
        }
    }
}

fn rules() -> zbus::Result<[MatchRule<'static>; 2]> {
    let vmnet =
        MatchRule::builder().msg_type(Type::Signal).sender(BUS_NAME).path_namespace(MANAGER_PATH).build()?;
    let owner = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(DBUS_NAME)
        .interface(DBUS_NAME)
        .member("NameOwnerChanged")
        .arg(0, BUS_NAME)
        .build()?;
    Ok([vmnet, owner])
}

/// The events in `message`; `owner` is the unique name that owns `org.vmnet`, kept current.
fn events(message: &Message, owner: &mut Option<String>) -> Vec<Event> {
    if message.message_type() != Type::Signal {
        return Vec::new();
    }
    let header = message.header();
    let sender = header.sender().map(|s| s.to_string());
    if sender.as_deref() == Some(DBUS_NAME) && header.member().is_some_and(|m| m == "NameOwnerChanged") {
        let Ok((name, old, new)) = message.body().deserialize::<(String, String, String)>() else {
            return Vec::new();
        };
        if name != BUS_NAME {
            return Vec::new();
        }
        *owner = (!new.is_empty()).then_some(new.clone());
        let mut events = Vec::new();
        if !old.is_empty() {
            events.push(Event::Stopped);
        }
        if !new.is_empty() {
            events.push(Event::Started);
        }
        return events;
    }
    if sender.is_none() || sender != *owner {
        return Vec::new();
    }
    Event::from_signal(message).into_iter().collect()
}

fn emit(event: &Event, json: bool) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    if json {
        let time = now.round(jiff::Unit::Millisecond).unwrap_or(now);
        print(&format!("{}\n", event.json(&time.to_string())))
    } else {
        let local = now.to_zoned_datetime(jiff::tz::TimeZone::system());
        print(&format!("{} {}\n", local.strftime("%Y-%m-%d %H:%M:%S%.3f"), event.human()))
    }
}

fn stop_error(error: std::io::Error) -> CliError {
    CliError::new(Exit::Refused, format!("cannot handle Ctrl-C: {error}"))
}

//! `vmnetctl list`, `add` and `remove`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;
use vmnet_dbus::{add_option, GuestInfo};
use zbus::Variant;

use crate::args::AddArgs;
use crate::bus::Bus;
use crate::exit::{CliError, Exit};
use crate::output::{key_values, or_dash, print, print_json, table, user_name};
use crate::polkit_agent::TtyAgent;

/// A guest as a JSON object; the keys are stable (empty strings stay empty strings).
pub fn guest_json(guest: &GuestInfo) -> serde_json::Value {
    json!({
        "name": guest.name,
        "tap": guest.tap,
        "mac": guest.mac,
        "address": guest.address,
        "state": guest.state,
        "state_reason": guest.state_reason,
        "owner": guest.owner,
        "qmp": guest.qmp,
        "running": guest.running,
        "addresses6": guest.addresses6,
    })
}

/// The table of `list`: an IPV6 column appears when some guest has IPv6 addresses, a REASON
/// column when some guest is not active.
pub fn guest_table(guests: &[GuestInfo], owner_name: impl Fn(u32) -> String) -> String {
    let with_reason = guests.iter().any(|g| !g.state_reason.is_empty());
    let with_ipv6 = guests.iter().any(|g| !g.addresses6.is_empty());
    let mut headers = vec!["NAME", "TAP", "MAC", "ADDRESS", "STATE", "RUNNING", "OWNER"];
    if with_ipv6 {
        headers.push("IPV6");
    }
    if with_reason {
        headers.push("REASON");
    }
    let rows: Vec<Vec<String>> = guests
        .iter()
        .map(|g| {
            let mut row = vec![
                g.name.clone(),
                g.tap.clone(),
                g.mac.clone(),
                or_dash(&g.address),
                g.state.clone(),
                if g.running { "yes" } else { "no" }.to_owned(),
                owner_name(g.owner),
            ];
            if with_ipv6 {
                row.push(or_dash(&g.addresses6.join(",")));
            }
            if with_reason {
                row.push(or_dash(&g.state_reason));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

pub async fn list(bus: &Bus, json: bool) -> Result<(), CliError> {
    let guests = bus.guests().await?;
    if json {
        print_json(&serde_json::Value::Array(guests.iter().map(guest_json).collect()))
    } else if guests.is_empty() {
        print("No guests. Add one with: vmnetctl add NAME\n")
    } else {
        print(&guest_table(&guests, user_name))
    }
}

pub async fn add(bus: &Bus, args: AddArgs, json: bool, ask_password: bool) -> Result<(), CliError> {
    let qmp = args.qmp.as_deref().map(absolute_qmp).transpose()?;
    let mut options: HashMap<&str, Variant<'_>> = HashMap::new();
    if let Some(owner) = args.owner {
        options.insert(add_option::OWNER, Variant::U32(owner));
    }
    if let Some(mac) = &args.mac {
        options.insert(add_option::MAC, Variant::from(mac.as_str()));
    }
    if let Some(address) = &args.address {
        options.insert(add_option::ADDRESS, Variant::from(address.as_str()));
    }
    if let Some(qmp) = &qmp {
        options.insert(add_option::QMP, Variant::from(qmp.as_str()));
    }
    let manager = bus.manager().await?;
    let agent = TtyAgent::start_if_wanted(ask_password);
    let added = manager.add_guest(&args.name, options).await;
    drop(agent);
    let guest = bus.guest_at_path(added.map_err(|e| bus.vmnet_error(e))?).await?;
    if json {
        return print_json(&guest_json(&guest));
    }
    let (subnet, host_address, nameservers) =
        futures::try_join!(manager.subnet(), manager.host_address(), manager.nameservers())
            .map_err(|e| bus.zbus_error(e))?;
    print(&added_text(&guest, &subnet, &host_address, &nameservers, &user_name(guest.owner)))
}

/// What `add` tells a person: where the guest is and how to start it.
pub fn added_text(guest: &GuestInfo, subnet: &str, gateway: &str, dns: &[String], owner: &str) -> String {
    let mut pairs = vec![("Tap", format!("{} (owned by {owner})", guest.tap)), ("MAC", guest.mac.clone())];
    if guest.address.is_empty() {
        let reason =
            if guest.state_reason.is_empty() { guest.state.clone() } else { guest.state_reason.clone() };
        pairs.push(("Address", format!("none yet ({reason})")));
    } else {
        let prefix = subnet.split_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default();
        pairs.push(("Address", format!("{}{prefix}", guest.address)));
        pairs.push(("Gateway", gateway.to_owned()));
        pairs.push(("DNS", or_dash(&dns.join(", "))));
    }
    if !guest.qmp.is_empty() {
        pairs.push(("QMP", guest.qmp.clone()));
    }
    let details: String = key_values(&pairs).lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "Added guest {name}.\n{details}Start its QEMU as {owner}, without root:\n  \
         qemu-system-x86_64 ... $(vmnetctl qemu-args {name})\n\
         Inside the guest, turn DHCP on: vmnetd answers it with this address.\n",
        name = guest.name
    )
}

/// Why vmnetd may not reach a QMP socket at `path`: vmnetd.service has a private /tmp.
fn unreachable_qmp_warning(path: &Path) -> Option<String> {
    let private = ["/tmp", "/var/tmp"].into_iter().find(|dir| path.starts_with(dir))?;
    Some(format!(
        "warning: vmnetd.service has a private {private}: it cannot reach {}; put QMP sockets in \
         $XDG_RUNTIME_DIR",
        path.display()
    ))
}

/// The QMP socket path as an absolute path; a relative one is taken from the current directory,
/// and the user is told.
fn absolute_qmp(path: &Path) -> Result<String, CliError> {
    let absolute = std::path::absolute(path).map_err(|e| {
        CliError::new(Exit::Usage, format!("cannot make --qmp {} absolute: {e}", path.display()))
    })?;
    // vmnetd takes normalized paths only: a `..` is resolved through the directory it names.
    let absolute = if absolute.components().any(|c| c == std::path::Component::ParentDir) {
        let resolved = absolute
            .parent()
            .zip(absolute.file_name())
            .and_then(|(dir, name)| std::fs::canonicalize(dir).ok().map(|dir| dir.join(name)));
        resolved.ok_or_else(|| {
            CliError::new(Exit::Usage, format!("cannot resolve the '..' in --qmp {}", path.display()))
        })?
    } else {
        absolute
    };
    let text = absolute
        .to_str()
        .ok_or_else(|| CliError::new(Exit::Usage, format!("--qmp {} is not valid UTF-8", path.display())))?
        .to_owned();
    if path.is_relative() {
        eprintln!("vmnetctl: QMP socket taken as {text}");
    }
    if let Some(warning) = unreachable_qmp_warning(&absolute) {
        eprintln!("vmnetctl: {warning}");
    }
    Ok(text)
}

pub async fn remove(bus: &Bus, name: &str, json: bool, ask_password: bool) -> Result<(), CliError> {
    let manager = bus.manager().await?;
    let agent = TtyAgent::start_if_wanted(ask_password);
    let removed = manager.remove_guest(name).await;
    drop(agent);
    removed.map_err(|e| bus.vmnet_error(e))?;
    if json {
        print_json(&json!({ "removed": name }))
    } else {
        print(&format!("Removed guest {name}.\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(name: &str, address: &str, state: &str, reason: &str) -> GuestInfo {
        GuestInfo {
            name: name.into(),
            tap: format!("vmt-{name}"),
            mac: "0a:76:6d:00:00:01".into(),
            owner: 1000,
            address: address.into(),
            state: state.into(),
            state_reason: reason.into(),
            qmp: String::new(),
            running: name == "web",
            addresses6: Vec::new(),
        }
    }

    #[test]
    fn list_table_shows_reasons_only_when_there_are_some() {
        let alice = |_| "alice".to_owned();
        let active = [guest("web", "198.51.100.200", "active", "")];
        let text = guest_table(&active, alice);
        assert_eq!(
            text,
            "NAME  TAP      MAC                ADDRESS         STATE   RUNNING  OWNER\n\
             web   vmt-web  0a:76:6d:00:00:01  198.51.100.200  active  yes      alice\n"
        );
        let mixed = [active[0].clone(), guest("db", "", "conflict", "no free address")];
        let text = guest_table(&mixed, alice);
        assert!(text.starts_with(
            "NAME  TAP      MAC                ADDRESS         STATE     RUNNING  OWNER  REASON\n"
        ));
        assert!(text.contains(
            "db    vmt-db   0a:76:6d:00:00:01  -               conflict  no       alice  no free address\n"
        ));
        assert!(text.contains("active    yes      alice  -\n"), "{text}");
        let dual = GuestInfo { addresses6: vec!["2001:db8:1::5".into()], ..active[0].clone() };
        let text = guest_table(&[dual], alice);
        assert!(text.lines().next().is_some_and(|h| h.ends_with("OWNER  IPV6")), "{text}");
        assert!(text.contains("alice  2001:db8:1::5\n"), "{text}");
    }

    #[test]
    fn json_keys_are_stable() {
        let value = guest_json(&guest("web", "", "offline", "the uplink is offline"));
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "address",
                "addresses6",
                "mac",
                "name",
                "owner",
                "qmp",
                "running",
                "state",
                "state_reason",
                "tap"
            ]
        );
        assert_eq!(value["owner"], 1000);
        assert_eq!(value["address"], "");
    }

    #[test]
    fn added_text_tells_the_address_with_prefix_or_why_there_is_none() {
        let dns = ["198.51.100.1".to_owned()];
        let text = added_text(
            &guest("web", "198.51.100.200", "active", ""),
            "198.51.100.0/24",
            "198.51.100.10",
            &dns,
            "alice",
        );
        assert!(text.contains("  Address: 198.51.100.200/24\n"), "{text}");
        assert!(text.contains("  Gateway: 198.51.100.10\n"), "{text}");
        assert!(text.contains("$(vmnetctl qemu-args web)"), "{text}");
        assert!(text.ends_with("turn DHCP on: vmnetd answers it with this address.\n"), "{text}");
        let offline = guest("web", "", "offline", "the uplink is offline");
        let text = added_text(&offline, "", "", &[], "alice");
        assert!(text.contains("Address: none yet (the uplink is offline)"), "{text}");
        assert!(!text.contains("Gateway"), "{text}");
    }

    #[test]
    fn qmp_sockets_in_a_private_tmp_are_warned_about() {
        assert!(
            unreachable_qmp_warning(Path::new("/tmp/web.qmp")).is_some_and(|w| w.contains("private /tmp"))
        );
        assert!(unreachable_qmp_warning(Path::new("/var/tmp/vm/web.qmp")).is_some());
        assert_eq!(unreachable_qmp_warning(Path::new("/run/user/1000/web.qmp")), None);
        assert_eq!(unreachable_qmp_warning(Path::new("/tmpfoo/web.qmp")), None);
    }
}

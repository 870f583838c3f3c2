//! `vmnetctl status`: the manager's properties and the guest counts.

use serde_json::json;
use vmnet_dbus::{guest_state, GuestRow};

use crate::bus::Bus;
use crate::exit::CliError;
use crate::output::{key_values, print, print_json};

pub async fn status(bus: &Bus, json: bool, verbose: bool) -> Result<(), CliError> {
    let manager = bus.manager().await?;
    // The first call activates vmnetd when it is not running.
    let guests = manager.list_guests().await.map_err(|e| bus.vmnet_error(e))?;
    let (state, uplink, host_address, subnet, gateway, nameservers, problems, version) = futures::try_join!(
        manager.state(),
        manager.uplink(),
        manager.host_address(),
        manager.subnet(),
        manager.gateway(),
        manager.nameservers(),
        manager.problems(),
        manager.version()
    )
    .map_err(|e| bus.zbus_error(e))?;
    let (prefix6, gateway6, nameservers6) =
        futures::try_join!(manager.prefix6(), manager.gateway6(), manager.nameservers6())
            .map_err(|e| bus.zbus_error(e))?;
    let counts = Counts::of(&guests);
    let dropped = match verbose {
        true => manager.dropped().await.map_err(|e| bus.zbus_error(e))?,
        false => Vec::new(),
    };
    if json {
        let mut value = json!({
            "state": state,
            "uplink": uplink,
            "host_address": host_address,
            "subnet": subnet,
            "gateway": gateway,
            "nameservers": nameservers,
            "prefix6": prefix6,
            "gateway6": gateway6,
            "nameservers6": nameservers6,
            "problems": problems,
            "version": version,
            "guests": {
                "total": counts.total,
                "active": counts.active,
                "offline": counts.offline,
                "conflict": counts.conflict,
            },
        });
        if verbose {
            value["dropped"] = dropped
                .iter()
                .map(|(name, what, packets, bytes)| json!({"name": name, "what": what, "packets": packets, "bytes": bytes}))
                .collect();
        }
        return print_json(&value);
    }
    let shown = |value: String| if value.is_empty() { "(none)".to_owned() } else { value };
    let host = if host_address.is_empty() {
        shown(host_address)
    } else {
        format!("{host_address} (the guests' gateway)")
    };
    let mut rows = vec![
        ("State", state),
        ("Uplink", shown(uplink)),
        ("Host address", host),
        ("Subnet", shown(subnet)),
        ("Gateway", shown(gateway)),
        ("Nameservers", shown(nameservers.join(", "))),
    ];
    // IPv6 rows only on an uplink with IPv6: most people's IPv4-only view stays as it was.
    if !prefix6.is_empty() {
        rows.push(("IPv6 prefix", prefix6));
        rows.push(("IPv6 gateway", shown(gateway6)));
        rows.push(("IPv6 nameservers", shown(nameservers6.join(", "))));
    }
    rows.extend([("Guests", counts.summary()), ("Version", version)]);
    // Shown only when there are any: what the kernel refused, retried by vmnetd.
    rows.extend(problems.into_iter().map(|problem| ("Problem", problem)));
    // --verbose: every counter of the packet filter, also those at 0.
    rows.extend(
        dropped.into_iter().map(|(name, what, packets, _)| ("Dropped", format!("{packets} {name}: {what}"))),
    );
    print(&key_values(&rows))
}

/// How many guests are in each state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub active: usize,
    pub offline: usize,
    pub conflict: usize,
}

impl Counts {
    pub fn of(guests: &[GuestRow]) -> Counts {
        let count = |state: &str| guests.iter().filter(|g| g.4 == state).count();
        Counts {
            total: guests.len(),
            active: count(guest_state::ACTIVE),
            offline: count(guest_state::OFFLINE),
            conflict: count(guest_state::CONFLICT),
        }
    }

    /// "0", "2 (2 active)", "3 (1 active, 1 offline, 1 in conflict)".
    pub fn summary(&self) -> String {
        if self.total == 0 {
            return "0".to_owned();
        }
        let parts: Vec<String> =
            [(self.active, "active"), (self.offline, "offline"), (self.conflict, "in conflict")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
        format!("{} ({})", self.total, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> GuestRow {
        ("g".into(), "vmt-g".into(), "0a:76:6d:00:00:01".into(), "".into(), state.into())
    }

    #[test]
    fn counts_per_state_and_their_summary() {
        assert_eq!(Counts::of(&[]).summary(), "0");
        let two = Counts::of(&[row("active"), row("active")]);
        assert_eq!(two, Counts { total: 2, active: 2, offline: 0, conflict: 0 });
        assert_eq!(two.summary(), "2 (2 active)");
        let mixed = Counts::of(&[row("active"), row("offline"), row("conflict")]);
        assert_eq!(mixed.summary(), "3 (1 active, 1 offline, 1 in conflict)");
    }
}

//! Every `org.vmnet.Guest1` property of a guest as one value, and all guests at once from the
//! ObjectManager at `/org/vmnet` (one round trip, one consistent snapshot).

use std::collections::HashMap;

use zbus::fdo::ObjectManagerProxy;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedVariant};

use crate::{Error, BUS_NAME, GUEST_INTERFACE, MANAGER_PATH};

/// The `org.vmnet.Guest1` properties of one guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestInfo {
    pub name: String,
    pub tap: String,
    pub mac: String,
    pub owner: u32,
    /// `""` while offline or in conflict.
    pub address: String,
    pub state: String,
    /// `""` while active.
    pub state_reason: String,
    /// `""` when no QMP socket was registered.
    pub qmp: String,
    /// Something (QEMU) holds the tap: its carrier is on.
    pub running: bool,
    /// Its routed IPv6 addresses (empty without IPv6).
    pub addresses6: Vec<String>,
}

impl GuestInfo {
    /// From a Guest1 property map, as in `GetManagedObjects`, `InterfacesAdded` or `GetAll`.
    /// `Name`, `Tap` and `Mac` must be present; a missing optional property stays empty.
    pub fn from_properties(properties: &HashMap<String, OwnedVariant>) -> Result<GuestInfo, Error> {
        let text = |key: &str| -> Result<Option<String>, Error> {
            properties.get(key).map(|v| <&str>::try_from(v).map(str::to_owned)).transpose().map_err(|e| {
                Error::ZBus(zbus::Error::Failure(format!("Guest1 property {key} is not a string: {e}")))
            })
        };
        let required = |key: &str| -> Result<String, Error> {
            text(key)?
                .ok_or_else(|| Error::ZBus(zbus::Error::Failure(format!("Guest1 property {key} missing"))))
        };
        let owner = properties.get("Owner").map(u32::try_from).transpose().map_err(|e| {
            Error::ZBus(zbus::Error::Failure(format!("Guest1 property Owner is not a uint32: {e}")))
        })?;
        let addresses6 = properties
            .get("Addresses6")
            .map(|v| Vec::<String>::try_from(v.try_clone()?))
            .transpose()
            .map_err(|e| {
                Error::ZBus(zbus::Error::Failure(format!(
                    "Guest1 property Addresses6 is not a string array: {e}"
                )))
            })?;
        let running = properties.get("Running").map(bool::try_from).transpose().map_err(|e| {
            Error::ZBus(zbus::Error::Failure(format!("Guest1 property Running is not a boolean: {e}")))
        })?;
        Ok(GuestInfo {
            name: required("Name")?,
            tap: required("Tap")?,
            mac: required("Mac")?,
            owner: owner.unwrap_or_default(),
            address: text("Address")?.unwrap_or_default(),
            state: text("State")?.unwrap_or_default(),
            state_reason: text("StateReason")?.unwrap_or_default(),
            qmp: text("Qmp")?.unwrap_or_default(),
            running: running.unwrap_or_default(),
            addresses6: addresses6.unwrap_or_default(),
        })
    }
}

/// Every guest with all its properties, sorted by name, from `GetManagedObjects` on
/// `/org/vmnet`. Like any call to `org.vmnet`, this D-Bus-activates vmnetd when needed.
pub async fn managed_guests(connection: &Connection) -> Result<Vec<GuestInfo>, Error> {
    let manager = ObjectManagerProxy::builder(connection)
        .destination(BUS_NAME)
        .path(MANAGER_PATH)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let objects = manager.get_managed_objects().await.map_err(zbus::Error::from)?;
    let mut guests = objects
        .values()
        .filter_map(|interfaces| interfaces.iter().find(|(name, _)| name.as_str() == GUEST_INTERFACE))
        .map(|(_, properties)| GuestInfo::from_properties(properties))
        .collect::<Result<Vec<_>, _>>()?;
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(entries: &[(&str, OwnedVariant)]) -> HashMap<String, OwnedVariant> {
        entries.iter().map(|(k, v)| (k.to_string(), v.try_clone().unwrap())).collect()
    }

    #[test]
    fn all_properties_are_read() {
        let map = props(&[
            ("Name", OwnedVariant::from(zbus::Str::from("web"))),
            ("Tap", OwnedVariant::from(zbus::Str::from("vmt-web"))),
            ("Mac", OwnedVariant::from(zbus::Str::from("0a:76:6d:00:00:01"))),
            ("Owner", OwnedVariant::from(1000u32)),
            ("Address", OwnedVariant::from(zbus::Str::from("198.51.100.200"))),
            ("State", OwnedVariant::from(zbus::Str::from("active"))),
            ("StateReason", OwnedVariant::from(zbus::Str::from(""))),
            ("Qmp", OwnedVariant::from(zbus::Str::from("/run/user/1000/web.qmp"))),
            ("Running", OwnedVariant::from(true)),
        ]);
        let info = GuestInfo::from_properties(&map).unwrap();
        assert_eq!(info.name, "web");
        assert!(info.running);
        assert_eq!(info.owner, 1000);
        assert_eq!(info.qmp, "/run/user/1000/web.qmp");
    }

    #[test]
    fn missing_identity_or_wrong_types_are_errors() {
        let no_mac = props(&[
            ("Name", OwnedVariant::from(zbus::Str::from("web"))),
            ("Tap", OwnedVariant::from(zbus::Str::from("vmt-web"))),
        ]);
        assert!(GuestInfo::from_properties(&no_mac).is_err());
        let bad_owner = props(&[
            ("Name", OwnedVariant::from(zbus::Str::from("web"))),
            ("Tap", OwnedVariant::from(zbus::Str::from("vmt-web"))),
            ("Mac", OwnedVariant::from(zbus::Str::from("0a:76:6d:00:00:01"))),
            ("Owner", OwnedVariant::from(zbus::Str::from("root"))),
        ]);
        assert!(GuestInfo::from_properties(&bad_owner).is_err());
    }
}

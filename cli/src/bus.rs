//! The system bus connection and vmnetd's objects through the `vmnet-dbus` proxies, with every
//! error mapped to a plain message and an exit status.

use std::time::Duration;

use vmnet_dbus::{guest_object_path, Guest1Proxy, GuestInfo, Manager1Proxy};
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath};

use crate::exit::{self, CliError};

pub struct Bus {
    pub connection: Connection,
    /// The method timeout in force (`--timeout`).
    pub timeout: Duration,
}

impl Bus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set). A missing bus fails at
    /// once; vmnetd itself is only needed by the first call, which may activate it.
    pub async fn connect(timeout: Duration) -> Result<Bus, CliError> {
        let connecting = zbus::connection::Builder::system().method_timeout(timeout).build();
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| CliError::no_bus(format!("no answer within {} s", timeout.as_secs())))?
            .map_err(|e| exit::from_zbus(&e, timeout))?;
        Ok(Bus { connection, timeout })
    }

    pub fn vmnet_error(&self, error: vmnet_dbus::Error) -> CliError {
        exit::from_vmnet(&error, self.timeout)
    }

    pub fn zbus_error(&self, error: zbus::Error) -> CliError {
        exit::from_zbus(&error, self.timeout)
    }

    pub async fn manager(&self) -> Result<Manager1Proxy<'static>, CliError> {
        Manager1Proxy::builder(&self.connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| self.zbus_error(e))
    }

    /// Every guest, sorted by name.
    pub async fn guests(&self) -> Result<Vec<GuestInfo>, CliError> {
        vmnet_dbus::managed_guests(&self.connection).await.map_err(|e| self.vmnet_error(e))
    }

    /// The guest `name`; [`CliError::no_guest`] when there is none.
    pub async fn guest(&self, name: &str) -> Result<GuestInfo, CliError> {
        self.guest_at(guest_object_path(name)).await.map_err(|e| match e {
            Lookup::NoObject => CliError::no_guest(name),
            Lookup::Failed(e) => e,
        })
    }

    /// The guest at `path` (as returned by `AddGuest`).
    pub async fn guest_at_path(&self, path: OwnedObjectPath) -> Result<GuestInfo, CliError> {
        let shown = path.to_string();
        self.guest_at(path).await.map_err(|e| match e {
            Lookup::NoObject => CliError::new(exit::Exit::Refused, format!("vmnetd has no guest at {shown}")),
            Lookup::Failed(e) => e,
        })
    }

    async fn guest_at(&self, path: OwnedObjectPath) -> Result<GuestInfo, Lookup> {
        let proxy = Guest1Proxy::builder(&self.connection)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| Lookup::Failed(self.zbus_error(e)))?;
        let read = async {
            let (name, tap, mac, owner) =
                futures::try_join!(proxy.name(), proxy.tap(), proxy.mac(), proxy.owner())?;
            let (address, state, state_reason, qmp, running, addresses6) = futures::try_join!(
                proxy.address(),
                proxy.state(),
                proxy.state_reason(),
                proxy.qmp(),
                proxy.running(),
                proxy.addresses6()
            )?;
            Ok::<_, zbus::Error>(GuestInfo {
                name,
                tap,
                mac,
                owner,
                address,
                state,
                state_reason,
                qmp,
                running,
                addresses6,
            })
        };
        read.await.map_err(|e| {
            if exit::is_unknown_object(&e) {
                Lookup::NoObject
            } else {
                Lookup::Failed(self.zbus_error(e))
            }
        })
    }
}

enum Lookup {
    NoObject,
    Failed(CliError),
}

//! A synchronous org.vmnet client for tests, over the World's private bus, through the
//! `vmnet-dbus` proxies (as root: the test process's own uid).

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::runtime::Runtime;
use vmnet_dbus::{guest_object_path, Error, Guest1Proxy, GuestRow, Manager1Proxy, RehomedStream};
use zbus::{Connection, OwnedObjectPath, Variant};

/// A service that does not answer in this time fails the test instead of hanging it.
const METHOD_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Client {
    runtime: Runtime,
    connection: Connection,
    manager: Manager1Proxy<'static>,
}

/// An option value for `AddGuest`.
pub enum Opt<'a> {
    U32(u32),
    Str(&'a str),
}

impl Client {
    pub fn connect(bus_address: &str) -> zbus::Result<Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let (connection, manager) = runtime.block_on(async {
            let connection = zbus::connection::Builder::address(bus_address)
                .method_timeout(METHOD_TIMEOUT)
                .build()
                .await?;
            let manager = Manager1Proxy::builder(&connection)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            Ok::<_, zbus::Error>((connection, manager))
        })?;
        Ok(Client { runtime, connection, manager })
    }

    pub fn add_guest(&self, name: &str, options: &[(&str, Opt<'_>)]) -> Result<OwnedObjectPath, Error> {
        let options: HashMap<&str, Variant<'_>> = options
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Opt::U32(n) => Variant::U32(*n),
                    Opt::Str(s) => Variant::from(*s),
                };
                (*key, value)
            })
            .collect();
        self.runtime.block_on(self.manager.add_guest(name, options))
    }

    pub fn remove_guest(&self, name: &str) -> Result<(), Error> {
        self.runtime.block_on(self.manager.remove_guest(name))
    }

    pub fn list_guests(&self) -> Result<Vec<GuestRow>, Error> {
        self.runtime.block_on(self.manager.list_guests())
    }

    pub fn resync(&self) -> Result<(), Error> {
        self.runtime.block_on(self.manager.resync())
    }

    /// A manager property, by its D-Bus name (e.g. "HostAddress").
    pub fn manager_property(&self, name: &str) -> zbus::Result<String> {
        self.runtime.block_on(async {
            Ok(match name {
                "State" => self.manager.state().await?,
                "Uplink" => self.manager.uplink().await?,
                "HostAddress" => self.manager.host_address().await?,
                "Subnet" => self.manager.subnet().await?,
                "Gateway" => self.manager.gateway().await?,
                "Version" => self.manager.version().await?,
                "Nameservers" => self.manager.nameservers().await?.join(","),
                "Prefix6" => self.manager.prefix6().await?,
                "Gateway6" => self.manager.gateway6().await?,
                "Nameservers6" => self.manager.nameservers6().await?.join(","),
                "Problems" => self.manager.problems().await?.join("\n"),
                other => return Err(zbus::Error::Failure(format!("no property {other}"))),
            })
        })
    }

    /// A guest property, by its D-Bus name (e.g. "Address"); Owner as decimal text.
    pub fn guest_property(&self, guest: &str, name: &str) -> zbus::Result<String> {
        self.runtime.block_on(async {
            let proxy = Guest1Proxy::builder(&self.connection)
                .path(guest_object_path(guest))
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            Ok(match name {
                "Name" => proxy.name().await?,
                "Tap" => proxy.tap().await?,
                "Mac" => proxy.mac().await?,
                "Owner" => proxy.owner().await?.to_string(),
                "Address" => proxy.address().await?,
                "State" => proxy.state().await?,
                "Running" => proxy.running().await?.to_string(),
                "Addresses6" => proxy.addresses6().await?.join(","),
                other => return Err(zbus::Error::Failure(format!("no property {other}"))),
            })
        })
    }

    /// Subscribes to `Rehomed`; call before causing the change.
    pub fn watch_rehomed(&self) -> zbus::Result<RehomedWatch<'_>> {
        let stream = self.runtime.block_on(self.manager.receive_rehomed())?;
        Ok(RehomedWatch { client: self, stream })
    }

    /// Subscribes to `Running` changes of a guest (PropertiesChanged); call before causing one.
    pub fn watch_running(&self, guest: &str) -> zbus::Result<RunningWatch<'_>> {
        let stream = self.runtime.block_on(async {
            let properties = zbus::fdo::PropertiesProxy::builder(&self.connection)
                .destination(vmnet_dbus::BUS_NAME)
                .path(guest_object_path(guest))
                .build()
                .await?;
            properties.receive_properties_changed().await
        })?;
        Ok(RunningWatch { client: self, stream })
    }

    /// Introspection XML of an object of the service.
    pub fn introspect(&self, path: &str) -> zbus::Result<String> {
        self.runtime.block_on(async {
            let proxy = zbus::fdo::IntrospectableProxy::builder(&self.connection)
                .destination(vmnet_dbus::BUS_NAME)
                .path(path.to_owned())
                .build()
                .await?;
            Ok(proxy.introspect().await?)
        })
    }
}

pub struct RehomedWatch<'c> {
    client: &'c Client,
    stream: RehomedStream,
}

impl RehomedWatch<'_> {
    /// The next `Rehomed(old, new)`, or None after `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<(String, String)> {
        self.client.runtime.block_on(async {
            let signal = tokio::time::timeout(timeout, self.stream.next()).await.ok()??;
            let args = signal.args().ok()?;
            Some((args.old_subnet().to_string(), args.new_subnet().to_string()))
        })
    }
}

pub struct RunningWatch<'c> {
    client: &'c Client,
    stream: zbus::fdo::PropertiesChangedStream,
}

impl RunningWatch<'_> {
    /// The value of the next PropertiesChanged that carries `Running`, or None after `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<bool> {
        self.client.runtime.block_on(async {
            tokio::time::timeout(timeout, async {
                while let Some(signal) = self.stream.next().await {
                    let Ok(args) = signal.args() else { continue };
                    if let Some(value) = args.changed_properties().get("Running") {
                        return bool::try_from(value).ok();
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
        })
    }
}

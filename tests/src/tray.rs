//! vmnet-tray under test: a private session bus (a dbus-daemon that lets the test and the
//! tray's user in), a StatusNotifierWatcher and a notification server on it served by the test,
//! and the tray run as a test user on the World's system bus. The test reads the item and its dbusmenu as a tray host does.

use crate::cmd::{command_as, error, tail, wait_until};
use crate::users::TestUsers;
use crate::world::World;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;
use zbus::message::Header;
use zbus::{interface, Connection, OwnedVariant};

const WATCHER: &str = "org.kde.StatusNotifierWatcher";
const ITEM_INTERFACE: &str = "org.kde.StatusNotifierItem";
const MENU_INTERFACE: &str = "com.canonical.dbusmenu";

/// Items registered so far, as (sender's unique name, object path).
type Registered = Arc<Mutex<Vec<(String, String)>>>;

struct Watcher {
    items: Registered,
}

#[interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    /// `service` is a bus name (then the path is /StatusNotifierItem) or an object path.
    fn register_status_notifier_item(&self, service: &str, #[zbus(header)] header: Header<'_>) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let (name, path) = if service.starts_with('/') {
            (sender, service.to_owned())
        } else {
            (service.to_owned(), "/StatusNotifierItem".to_owned())
        };
        self.items.lock().unwrap_or_else(|p| p.into_inner()).push((name, path));
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.iter().map(|(name, path)| format!("{name}{path}")).collect()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

/// Notifications posted so far, as (summary, body).
type Posted = Arc<Mutex<Vec<(String, String)>>>;

/// A notification server that records what it is asked to show.
struct Notifications {
    posted: Posted,
}

#[interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut posted = self.posted.lock().unwrap_or_else(|p| p.into_inner());
        posted.push((summary.to_owned(), body.to_owned()));
        posted.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("vmnet-tests".into(), "vmnet".into(), "0".into(), "1.2".into())
    }
}

/// One entry of a dbusmenu layout.
#[derive(Debug, Clone, PartialEq)]
pub struct MenuNode {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
    pub children: Vec<MenuNode>,
}

impl MenuNode {
    /// This entry and all below it, depth first.
    pub fn flatten(&self) -> Vec<&MenuNode> {
        let mut all = vec![self];
        for child in &self.children {
            all.extend(child.flatten());
        }
        all
    }
}

type RawLayout = (i32, HashMap<String, OwnedVariant>, Vec<OwnedVariant>);

fn node(raw: RawLayout) -> MenuNode {
    let (id, properties, children) = raw;
    let label =
        properties.get("label").and_then(|v| <&str>::try_from(v).ok()).unwrap_or("").replace("__", "_");
    let enabled = properties.get("enabled").and_then(|v| bool::try_from(v).ok()).unwrap_or(true);
    let children =
        children.into_iter().filter_map(|child| RawLayout::try_from(child).ok()).map(node).collect();
    MenuNode { id, label, enabled, children }
}

pub struct TrayTest<'w> {
    world: &'w World,
    runtime: Runtime,
    connection: Connection,
    items: Registered,
    posted: Posted,
    session_bus: String,
    tray: Option<u32>,
    uid: u32,
}

impl World {
    /// A session bus with a StatusNotifierWatcher served by the test; start the tray with
    /// [`TrayTest::start_tray`].
    pub fn tray_test(&self, uid: u32) -> io::Result<TrayTest<'_>> {
        let socket = self.dir().join(format!("session-{uid}.sock"));
        let config = self.dir().join(format!("session-{uid}.conf"));
        fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  \
                 <type>session</type>\n  <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n  \
                 <policy context=\"default\">\n    <allow user=\"*\"/>\n    <allow own=\"*\"/>\n    \
                 <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    <allow eavesdrop=\"true\"/>\n  \
                 </policy>\n</busconfig>\n",
                socket.display()
            ),
        )?;
        let users = TestUsers::of_world(self.dir(), self.tester_uid());
        let mut cmd = users.unshare("exec dbus-daemon --config-file=\"$3\" --nofork --nopidfile", &[&config]);
        let log = fs::File::create(self.dir().join(format!("session-bus-{uid}.log")))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        self.procs.spawn("session dbus-daemon", cmd)?;
        if !wait_until(Duration::from_secs(5), Duration::from_millis(10), || socket.exists()) {
            return Err(error("the session dbus-daemon did not listen within 5 s"));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let items = Registered::default();
        let address = format!("unix:path={}", socket.display());
        let watcher = Watcher { items: items.clone() };
        let posted = Posted::default();
        let notifications = Notifications { posted: posted.clone() };
        let connection = runtime
            .block_on(async {
                zbus::connection::Builder::address(address.as_str())
                    .name(WATCHER)
                    .name("org.freedesktop.Notifications")
                    .serve_at("/StatusNotifierWatcher", watcher)
                    .serve_at("/org/freedesktop/Notifications", notifications)
                    .build()
                    .await
            })
            .map_err(|e| error(format!("StatusNotifierWatcher: {e}")))?;
        Ok(TrayTest {
            world: self,
            runtime,
            connection,
            items,
            posted,
            session_bus: address,
            tray: None,
            uid,
        })
    }
}

impl TrayTest<'_> {
    /// Starts vmnet-tray as the test's user on both buses.
    pub fn start_tray(&mut self) -> io::Result<()> {
        let binary = crate::vmnetd::workspace_binary("vmnet-tray", "VMNET_TRAY_BIN")?;
        let mut cmd = command_as(Some(self.uid), &binary.to_string_lossy());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.session_bus)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.world.bus_address())
            .env("RUST_LOG", "info");
        let log = fs::File::create(self.log_path())?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let (pid, _) = self.world.procs.spawn("vmnet-tray", cmd)?;
        self.tray = Some(pid);
        Ok(())
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.world.dir().join(format!("vmnet-tray-{}.log", self.uid))
    }

    /// The tray's log so far.
    pub fn log(&self) -> String {
        tail(&fs::read_to_string(self.log_path()).unwrap_or_default(), 30)
    }

    /// Waits for the item to register; its (bus name, object path).
    pub fn wait_for_item(&self, timeout: Duration) -> io::Result<(String, String)> {
        let first = || self.items.lock().unwrap_or_else(|p| p.into_inner()).first().cloned();
        if !wait_until(timeout, Duration::from_millis(10), || first().is_some()) {
            return Err(error(format!(
                "no StatusNotifierItem registered within {timeout:?}; {}",
                self.log()
            )));
        }
        first().ok_or_else(|| error("registered item vanished"))
    }

    /// The notifications the tray posted so far, as (summary, body).
    pub fn notifications(&self) -> Vec<(String, String)> {
        self.posted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A string property of the item (e.g. "Title", "Status").
    pub fn item_property(&self, item: &(String, String), name: &str) -> io::Result<String> {
        self.runtime.block_on(async {
            let value = self.property(item, ITEM_INTERFACE, name).await?;
            if let Ok(text) = <&str>::try_from(&value) {
                return Ok(text.to_owned());
            }
            let path = zbus::OwnedObjectPath::try_from(value).map_err(|e| error(e.to_string()))?;
            Ok(path.to_string())
        })
    }

    async fn property(
        &self,
        item: &(String, String),
        interface: &str,
        name: &str,
    ) -> io::Result<OwnedVariant> {
        let proxy = zbus::fdo::PropertiesProxy::builder(&self.connection)
            .destination(item.0.as_str())
            .path(item.1.as_str())
            .build()
            .await
            .map_err(|e| error(e.to_string()))?;
        let interface = zbus::names::InterfaceName::try_from(interface).map_err(|e| error(e.to_string()))?;
        proxy.get(interface, name).await.map_err(|e| error(format!("{name}: {e}")))
    }

    /// The whole dbusmenu layout (`GetLayout(0, -1, [])`) of the item's `Menu`.
    pub fn layout(&self, item: &(String, String)) -> io::Result<MenuNode> {
        let menu = self.item_property(item, "Menu")?;
        self.runtime.block_on(async {
            let reply = self
                .connection
                .call_method(
                    Some(item.0.as_str()),
                    menu.as_str(),
                    Some(MENU_INTERFACE),
                    "GetLayout",
                    &(0i32, -1i32, Vec::<&str>::new()),
                )
                .await
                .map_err(|e| error(format!("GetLayout: {e}")))?;
            let (_revision, root): (u32, RawLayout) =
                reply.body().deserialize().map_err(|e| error(format!("GetLayout reply: {e}")))?;
            Ok(node(root))
        })
    }

    /// Sends a dbusmenu "clicked" event for entry `id`, as a tray host does on a click.
    pub fn click(&self, item: &(String, String), id: i32) -> io::Result<()> {
        let menu = self.item_property(item, "Menu")?;
        self.runtime.block_on(async {
            let data = zbus::Variant::from(0i32);
            self.connection
                .call_method(
                    Some(item.0.as_str()),
                    menu.as_str(),
                    Some(MENU_INTERFACE),
                    "Event",
                    &(id, "clicked", data, 0u32),
                )
                .await
                .map(drop)
                .map_err(|e| error(format!("Event: {e}")))
        })
    }

    /// Polls the layout until `wanted` holds; panics with the last layout after `timeout`.
    #[track_caller]
    pub fn wait_for_layout(
        &self,
        item: &(String, String),
        timeout: Duration,
        wanted: impl Fn(&MenuNode) -> bool,
    ) -> MenuNode {
        let mut last = None;
        let ok = wait_until(timeout, Duration::from_millis(20), || {
            let layout = self.layout(item).ok();
            let done = layout.as_ref().is_some_and(&wanted);
            last = layout;
            done
        });
        let last = last.unwrap_or_else(|| panic!("no layout; {}", self.log()));
        assert!(ok, "the tray's menu did not change as expected within {timeout:?}: {last:#?}");
        last
    }
}

impl Drop for TrayTest<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.tray {
            let _ = self.world.procs.stop(pid);
        }
    }
}

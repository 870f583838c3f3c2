//! The StatusNotifierItem: its icon, tooltip and dbusmenu, built from the latest [`Snapshot`].
//! Menu callbacks only queue a [`Command`]; the work happens in [`crate::actions`].

use ksni::menu::{StandardItem, SubMenu};
use ksni::{MenuItem, Status, ToolTip};
use tokio::sync::mpsc::UnboundedSender;
use vmnet_dbus::GuestInfo;

use crate::state::{Service, Snapshot};

/// What a menu item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Copy {
        what: &'static str,
        text: String,
    },
    Remove(String),
    /// Ask for a name, then add a guest.
    Add,
}

pub struct VmnetTray {
    pub snapshot: Snapshot,
    /// The last failure or refusal, shown until the next success.
    pub message: String,
    /// Whether a name can be asked for (zenity or kdialog is installed).
    pub can_prompt: bool,
    pub commands: UnboundedSender<Command>,
}

/// The status line at the top of the menu, also the tooltip.
pub fn status_line(service: &Service) -> String {
    match service {
        Service::NotRunning => "vmnetd is not running".to_owned(),
        Service::Offline => "Offline: the Wi-Fi has no IPv4 address".to_owned(),
        Service::Online { subnet, gateway } => format!("Online: {subnet}, gateway {gateway}"),
    }
}

/// A guest's row: name, address, state, and whether it runs (as the GNOME extension shows it).
pub fn guest_summary(guest: &GuestInfo) -> String {
    let address = if guest.address.is_empty() { "no address" } else { &guest.address };
    let mut parts = vec![guest.name.as_str(), address, guest.state.as_str()];
    if guest.running {
        parts.push("running");
    }
    parts.join(" · ")
}

/// dbusmenu treats `_` as an access-key marker: a label shows as it is written.
fn literal(text: &str) -> String {
    text.replace('_', "__")
}

fn info(text: &str) -> MenuItem<VmnetTray> {
    StandardItem { label: literal(text), enabled: false, ..Default::default() }.into()
}

fn action(label: &str, enabled: bool, command: Command) -> MenuItem<VmnetTray> {
    StandardItem {
        label: literal(label),
        enabled,
        activate: Box::new(move |tray: &mut VmnetTray| {
            let _ = tray.commands.send(command.clone());
        }),
        ..Default::default()
    }
    .into()
}

fn guest_menu(guest: &GuestInfo, can_manage: bool) -> MenuItem<VmnetTray> {
    let mut submenu = Vec::new();
    if !guest.state_reason.is_empty() {
        submenu.push(info(&guest.state_reason));
    }
    let address = Command::Copy { what: "address", text: guest.address.clone() };
    submenu.push(action("Copy address", !guest.address.is_empty(), address));
    let (args, _) = vmnet_dbus::shell_line(&vmnet_dbus::qemu_args(guest));
    submenu.push(action("Copy QEMU arguments", true, Command::Copy { what: "QEMU arguments", text: args }));
    submenu.push(action("Remove", can_manage, Command::Remove(guest.name.clone())));
    SubMenu { label: literal(&guest_summary(guest)), submenu, ..Default::default() }.into()
}

impl VmnetTray {
    fn items(&self) -> Vec<MenuItem<Self>> {
        let snapshot = &self.snapshot;
        let running = snapshot.service != Service::NotRunning;
        let mut items = vec![info(&status_line(&snapshot.service))];
        if !snapshot.can_manage {
            items.push(info("You are not allowed to manage virtual machines"));
        }
        if !self.message.is_empty() {
            items.push(info(&self.message));
        }
        items.push(MenuItem::Separator);
        items.extend(snapshot.guests.iter().map(|g| guest_menu(g, snapshot.can_manage)));
        if running && snapshot.guests.is_empty() {
            items.push(info("No virtual machines"));
        }
        items.push(MenuItem::Separator);
        let add = if self.can_prompt { "Add guest…" } else { "Add guest… (needs zenity or kdialog)" };
        items.push(action(add, running && snapshot.can_manage && self.can_prompt, Command::Add));
        items
    }
}

impl ksni::Tray for VmnetTray {
    const MENU_ON_ACTIVATE: bool = true;

    fn id(&self) -> String {
        "vmnet-tray".into()
    }

    fn title(&self) -> String {
        "Virtual machines".into()
    }

    fn icon_name(&self) -> String {
        "computer".into()
    }

    /// Passive (hidden in some trays' overflow) while vmnetd does not run.
    fn status(&self) -> Status {
        if self.snapshot.service == Service::NotRunning {
            Status::Passive
        } else {
            Status::Active
        }
    }

    fn tool_tip(&self) -> ToolTip {
        let running = self.snapshot.guests.iter().filter(|g| g.running).count();
        ToolTip {
            icon_name: "computer".into(),
            title: "Virtual machines".into(),
            description: format!(
                "{}\n{} guests, {running} running",
                status_line(&self.snapshot.service),
                self.snapshot.guests.len()
            ),
            ..Default::default()
        }
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        self.items()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[MenuItem<VmnetTray>]) -> Vec<(String, bool)> {
        items
            .iter()
            .filter_map(|item| match item {
                MenuItem::Standard(s) => Some((s.label.clone(), s.enabled)),
                MenuItem::SubMenu(s) => Some((s.label.clone(), s.enabled)),
                _ => None,
            })
            .collect()
    }

    fn tray(snapshot: Snapshot) -> VmnetTray {
        let (commands, _) = tokio::sync::mpsc::unbounded_channel();
        VmnetTray { snapshot, message: String::new(), can_prompt: true, commands }
    }

    #[test]
    fn guests_are_listed_with_their_state_and_actions_follow_polkit() {
        let web = GuestInfo {
            name: "web_1".into(),
            tap: "vmt-web_1".into(),
            address: "198.51.100.200".into(),
            state: "active".into(),
            running: true,
            ..GuestInfo::default()
        };
        let online = Service::Online { subnet: "198.51.100.0/24".into(), gateway: "198.51.100.10".into() };
        let shown = tray(Snapshot { service: online, guests: vec![web], can_manage: true }).items();
        assert_eq!(
            labels(&shown),
            [
                ("Online: 198.51.100.0/24, gateway 198.51.100.10".to_owned(), false),
                ("web__1 · 198.51.100.200 · active · running".to_owned(), true),
                ("Add guest…".to_owned(), true),
            ]
        );
        let MenuItem::SubMenu(guest) = &shown[2] else { panic!("a guest sub-menu") };
        assert_eq!(
            labels(&guest.submenu),
            [("Copy address".into(), true), ("Copy QEMU arguments".into(), true), ("Remove".into(), true)]
        );
        let refused = tray(Snapshot { can_manage: false, ..tray_snapshot_offline() }).items();
        assert!(labels(&refused).contains(&("You are not allowed to manage virtual machines".into(), false)));
        assert!(labels(&refused).contains(&("Add guest…".into(), false)));
    }

    fn tray_snapshot_offline() -> Snapshot {
        Snapshot { service: Service::Offline, guests: Vec::new(), can_manage: true }
    }

    #[test]
    fn nothing_can_be_added_while_vmnetd_is_not_running() {
        let shown = tray(Snapshot { can_manage: true, ..Snapshot::default() }).items();
        assert_eq!(labels(&shown), [("vmnetd is not running".into(), false), ("Add guest…".into(), false)]);
    }
}

//! vmnet-tray's command line, as clap sees it: parsed by vmnet-tray, and rendered into
//! vmnet-tray(1) by `packaging/generate`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "vmnet-tray",
    version,
    about = "vmnet's tray icon: virtual machines on the Wi-Fi LAN, live from vmnetd",
    long_about = "vmnet's tray icon: virtual machines on the Wi-Fi LAN, live from vmnetd.\n\n\
        A StatusNotifierItem for KDE Plasma, XFCE, Cinnamon and GNOME with the AppIndicator \
        extension (GNOME has its own quick-settings extension, vmnet@example.org). Its menu shows \
        whether vmnetd runs and is online, with the Wi-Fi subnet and the guests' gateway, and every \
        guest with its address, state (active, offline or conflict with the reason) and whether \
        something holds its tap. Per guest it copies the address or the QEMU arguments (as \
        vmnetctl qemu-args prints them) and removes it; \"Add guest…\" asks for a name (with \
        kdialog or zenity). A re-home is told by a notification.\n\n\
        Adding and removing are authorized by polkit (org.vmnet.manage-guests) and sent with \
        interactive authorization, so the desktop's polkit agent may ask for a password; members \
        of group vmnet are not asked. Those controls are insensitive when polkit says no. The \
        menu follows vmnetd's D-Bus signals; vmnet-tray never starts vmnetd by itself.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Exit at once unless the user is a member of group vmnet (the XDG autostart entry runs
    /// vmnet-tray so).
    #[arg(long)]
    pub autostart: bool,
}

/// The end of `--help`, and the FILES, EXIT STATUS, ENVIRONMENT and SEE ALSO sections of the
/// man page.
pub const AFTER_HELP: &str = "\
Files:
  /etc/xdg/autostart/vmnet-tray.desktop  starts vmnet-tray --autostart at login (not in GNOME,
                                         which has the quick-settings extension)

Exit status:
  0  stopped, or --autostart for a user outside group vmnet
  1  the system or session bus, or a StatusNotifierWatcher, could not be reached

Environment:
  DBUS_SYSTEM_BUS_ADDRESS   the system bus, where vmnetd is
  DBUS_SESSION_BUS_ADDRESS  the session bus, with the tray host and the notification server
  RUST_LOG                  log filter (default info), e.g. debug

See also:
  vmnetctl(1), vmnetd(8)";

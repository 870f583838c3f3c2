//! vmnet-dispatcher's command line, as clap sees it: parsed by the plugin, and rendered into
//! vmnet-dispatcher(8) by `packaging/generate`.

use std::time::Duration;

use clap::Parser;

/// NM dispatcher actions after which the uplink may have changed.
pub const RESYNC_ACTIONS: [&str; 5] = ["up", "down", "dhcp4-change", "reapply", "connectivity-change"];
/// The longest the call may hold up NM's dispatcher.
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser, Debug)]
#[command(
    name = "vmnet-dispatcher",
    version,
    about = "NetworkManager dispatcher plugin that tells vmnetd to resync",
    long_about = "NetworkManager dispatcher plugin that tells vmnetd to resync.\n\n\
        NetworkManager's dispatcher runs it as /usr/lib/NetworkManager/dispatcher.d/90-vmnet \
        INTERFACE ACTION for every network event. On up, down, dhcp4-change, reapply and \
        connectivity-change it calls org.vmnet.Manager1.Resync() on the system bus, which also \
        starts vmnetd through D-Bus activation when it is not running; other actions are ignored \
        without a word. vmnetd follows NetworkManager over D-Bus on its own: this is a nudge.\n\n\
        It waits at most 2 seconds for vmnetd and logs one line to standard error (the \
        dispatcher's journal) for every action it handles, saying whether vmnetd resynced.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The interface of the event (empty or "none" for events without one).
    #[arg(default_value = "", allow_hyphen_values = true)]
    pub interface: String,
    /// The dispatcher action, e.g. up, down or dhcp4-change.
    #[arg(default_value = "", allow_hyphen_values = true)]
    pub action: String,
}

/// The end of `--help`, and the FILES, EXIT STATUS, ENVIRONMENT and SEE ALSO sections of the
/// man page.
pub const AFTER_HELP: &str = "\
Files:
  /usr/lib/NetworkManager/dispatcher.d/90-vmnet  this program, where NetworkManager runs it

Exit status:
  0  for every event, whether or not vmnetd answered (NetworkManager needs no more)
  2  a command line NetworkManager does not use (more than two arguments, an unknown option)

Environment:
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to use (default: the usual system bus socket)

See also:
  vmnetd(8), vmnetctl(1), NetworkManager-dispatcher(8)";

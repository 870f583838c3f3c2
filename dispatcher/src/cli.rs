//! vmnet-dispatcher's command line, as clap sees it: parsed by the plugin, and rendered into
//! vmnet-dispatcher(8) by `packaging/generate`.

use std::ffi::OsString;
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
    pub interface: OsString,
    /// The dispatcher action, e.g. up, down or dhcp4-change.
    #[arg(default_value = "", allow_hyphen_values = true)]
    pub action: OsString,
}

/// The longest interface name shown in the log line (Linux allows 15 bytes).
const SHOWN_INTERFACE: usize = 15;

impl Args {
    /// The action, when it is one after which vmnetd should resync. Arguments are any bytes
    /// (an interface name need not be UTF-8): nothing here fails on them.
    pub fn resync_action(&self) -> Option<&'static str> {
        RESYNC_ACTIONS.iter().copied().find(|action| self.action == *action)
    }

    /// The interface for the log line: "-" for none; escaped (no control characters reach the
    /// journal) and cut after 15 characters.
    pub fn shown_interface(&self) -> String {
        if self.interface.is_empty() {
            return "-".into();
        }
        let name = self.interface.to_string_lossy();
        let mut shown: String = name.chars().take(SHOWN_INTERFACE).flat_map(char::escape_debug).collect();
        if name.chars().nth(SHOWN_INTERFACE).is_some() {
            shown.push('…');
        }
        shown
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn args(argv: &[&[u8]]) -> Result<Args, clap::Error> {
        let argv = std::iter::once(OsString::from("90-vmnet"))
            .chain(argv.iter().map(|a| OsString::from_vec(a.to_vec())));
        Args::try_parse_from(argv)
    }

    #[test]
    fn any_bytes_are_handled_and_shown_escaped() {
        let up = args(&[b"wl\xffan0\n", b"up"]).unwrap();
        assert_eq!(up.resync_action(), Some("up"));
        assert_eq!(up.shown_interface(), "wl\u{fffd}an0\\n");
        let odd = args(&[b"-x", b"\xff"]).unwrap();
        assert_eq!(odd.resync_action(), None);
        let long = args(&[&[b'a'; 300], b"down"]).unwrap();
        assert_eq!(long.shown_interface(), format!("{}…", "a".repeat(15)));
        assert_eq!(args(&[]).unwrap().shown_interface(), "-");
        assert!(args(&[b"a", b"b", b"c"]).is_err());
    }
}

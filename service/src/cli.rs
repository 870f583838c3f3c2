//! vmnetd's command line, as clap sees it: parsed by vmnetd, and rendered into vmnetd(8) by
//! `packaging/generate`.

use std::path::PathBuf;

use clap::Parser;

/// The configuration file vmnetd reads when `--config` is not given (missing: all defaults).
pub const DEFAULT_CONFIG: &str = "/etc/vmnet/vmnetd.toml";
/// Where vmnetd keeps its state when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vmnet";

#[derive(Parser, Debug)]
#[command(
    name = "vmnetd",
    version,
    about = "Routes virtual machines onto the Wi-Fi LAN and re-homes them on roams",
    long_about = "Routes virtual machines onto the laptop's Wi-Fi LAN and re-homes them when it roams.\n\n\
        A Wi-Fi link cannot be bridged, so vmnetd routes instead: a tap per guest, owned by the \
        guest's user, proxy ARP on the tap, a proxy neighbour entry on the uplink for the guest's \
        address only, IPv4 forwarding and a /32 host route per guest. It answers DHCP on every tap with the guest's address, the host as router and the \
        uplink's DNS servers. It follows the uplink (NetworkManager's active Wi-Fi connection by \
        default) and, when the subnet changes, gives every guest an address in the new subnet, moves \
        the routes and flaps the guests' links over QMP so that they ask for a new lease at once.\n\n\
        vmnetd is the D-Bus system service org.vmnet (object /org/vmnet, interface \
        org.vmnet.Manager1); it is started by systemd (vmnetd.service) or by D-Bus activation. \
        Changes are authorized by polkit (actions org.vmnet.manage-guests, \
        org.vmnet.manage-all-guests, org.vmnet.resync). Use vmnetctl(1) to manage guests.\n\n\
        vmnetd owns the taps named vmt-* and the routes and proxy neighbour entries with protocol \
        118 (\"vmnet\"): it removes those it no longer wants. On a clean stop guests' taps and \
        routes stay in place; the host sysctls it changed (ip_forward, the uplink's proxy_delay) \
        are restored when the last guest is removed.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Configuration file (TOML; every key is optional).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Where guests and the sysctl values to restore are kept.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// The end of `--help`, and the FILES, SIGNALS, EXIT STATUS, ENVIRONMENT and SEE ALSO sections
/// of the man page.
pub const AFTER_HELP: &str = "\
Files:
  /etc/vmnet/vmnetd.toml  the configuration: uplink source (networkmanager or kernel), the
                          NetworkManager connection types to follow, the guests' address pool,
                          DHCP and ARP probing settings
  /var/lib/vmnet/state.json  the guests and the host sysctl values to restore (a snapshot)
  /var/lib/vmnet/journal.jsonl  the changes since the snapshot, one line each
  /usr/share/dbus-1/system.d/org.vmnet.conf  who may own and call org.vmnet
  /usr/share/polkit-1/actions/org.vmnet.policy  the polkit actions
  /usr/share/polkit-1/rules.d/50-vmnet.rules  members of group vmnet manage guests without a password

Signals:
  SIGTERM, SIGINT  stop; the guests' taps and routes stay in place

Exit status:
  0  stopped by a signal
  1  failed while running (the log says why)
  2  the configuration file cannot be read or is invalid (the message names the key)

Environment:
  RUST_LOG  what to log (default: info), e.g. RUST_LOG=debug
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to use (default: the usual system bus socket)

See also:
  vmnetctl(1), vmnet-dispatcher(8), NetworkManager(8), polkit(8), systemd.exec(5)";

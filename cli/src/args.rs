//! The command line, as clap sees it (also the source of the man page and completions).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

use crate::exit::EXIT_STATUS_HELP;

#[derive(Parser, Debug)]
#[command(
    name = "vmnetctl",
    version,
    about = "Manage the guests of vmnetd, which routes virtual machines onto the laptop's LAN",
    long_about = "Manage the guests of vmnetd, which routes virtual machines onto the laptop's LAN.\n\n\
                  vmnetctl talks to vmnetd (org.vmnet) on the D-Bus system bus; calling it starts \
                  vmnetd when it is D-Bus activatable. Reading is open to everyone; adding and \
                  removing guests is authorized by polkit, which may ask for a password.",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for vmnetd to answer a call, including a polkit password prompt.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// Never ask for a password on the terminal (polkit then decides without asking).
    #[arg(long, global = true)]
    pub no_ask_password: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the uplink, the guests' gateway and DNS, and how many guests there are.
    ///
    /// Also starts vmnetd through D-Bus activation when it is not running.
    Status {
        /// Also show what vmnetd's packet filter dropped (spoofed sources, foreign MACs, …).
        #[arg(short, long)]
        verbose: bool,
    },

    /// List the guests: name, tap, MAC, address, state and owner.
    #[command(visible_alias = "ls")]
    List,

    /// Add a guest: a tap owned by its user, a MAC and an address on the LAN.
    Add(AddArgs),

    /// Remove a guest, its route and its tap.
    #[command(visible_alias = "rm")]
    Remove {
        /// The guest's name.
        name: String,
    },

    /// Print events as they happen (re-homes, guests added, removed or changed, vmnetd
    /// starting and stopping) until interrupted.
    ///
    /// One line per event with a local timestamp, or one JSON object per line with --json.
    /// Watching does not start vmnetd; it reports when vmnetd starts or stops.
    Watch,

    /// Print the QEMU arguments that put a guest on its tap, on one line.
    ///
    /// For example: qemu-system-x86_64 -m 1G -drive file=disk.qcow2 $(vmnetctl qemu-args web).
    /// The netdev id is "vmnet"; a registered QMP socket is added as -qmp. Arguments that need
    /// shell quoting are quoted (use eval then); --json prints them as an array.
    QemuArgs {
        /// The guest's name.
        name: String,
    },

    /// Print a libvirt <interface type='ethernet'> element for a guest.
    ///
    /// Paste it into the domain's <devices> (virsh edit). libvirt keeps its own QMP monitor,
    /// so a QMP socket registered with vmnetd is not used by libvirt guests.
    LibvirtXml {
        /// The guest's name.
        name: String,
    },

    /// Print a shell completion script to stdout.
    ///
    /// For example: vmnetctl completions bash > /etc/bash_completion.d/vmnetctl
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The guest's name: 1 to 32 letters, digits, '-', '_' or '.', starting with a letter or
    /// digit.
    pub name: String,

    /// MAC address of the guest's NIC [default: a stable one derived from the name].
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,

    /// IPv4 address in the current subnet [default: the first free one of the pool].
    #[arg(long, value_name = "IPV4")]
    pub address: Option<String>,

    /// The user who runs the guest's QEMU and owns its tap, by name or uid [default: you].
    #[arg(long, value_name = "USER", value_parser = parse_owner, value_hint = ValueHint::Username)]
    pub owner: Option<u32>,

    /// The guest's QMP socket, for vmnetd to tell the guest about link changes; a relative
    /// path is taken from the current directory. Not under /tmp: vmnetd.service has a private
    /// /tmp (use $XDG_RUNTIME_DIR).
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub qmp: Option<PathBuf>,
}

/// A uid, given as a number or as a user name.
fn parse_owner(text: &str) -> Result<u32, String> {
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(text) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(format!("no user named '{text}'")),
        Err(e) => Err(format!("cannot look up user '{text}': {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn owners_are_uids_or_user_names() {
        assert_eq!(parse_owner("1000"), Ok(1000));
        assert_eq!(parse_owner("root"), Ok(0));
        assert_eq!(parse_owner("no-such-user-vmnet"), Err("no user named 'no-such-user-vmnet'".into()));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from(["vmnetctl", "list", "--json", "--timeout", "5"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.timeout, 5);
        assert!(Cli::try_parse_from(["vmnetctl", "--timeout", "0", "status"]).is_err());
    }
}

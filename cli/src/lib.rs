//! vmnetctl, the command-line client of vmnetd (`org.vmnet` on the D-Bus system bus).
//!
//! [`command`] is the clap command (for the man page and completions); [`main`] runs it.

pub mod args;
mod bus;
mod events;
pub mod exit;
mod guests;
mod output;
mod polkit_agent;
mod snippets;
mod status;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use bus::Bus;
use exit::{CliError, Exit};

/// vmnetctl's command line, as clap describes it (for clap_mangen and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs vmnetctl with the process's arguments and returns its exit status (see [`exit::Exit`]).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.exit == Exit::Success => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmnetctl: {e}");
            e.exit.into()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command(), "vmnetctl", &mut script);
        return output::print(&String::from_utf8_lossy(&script));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Exit::Refused, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let bus = Bus::connect(Duration::from_secs(cli.timeout)).await?;
    let (json, ask_password) = (cli.json, !cli.no_ask_password);
    match cli.command {
        Command::Status { verbose } => status::status(&bus, json, verbose).await,
        Command::List => guests::list(&bus, json).await,
        Command::Add(args) => guests::add(&bus, args, json, ask_password).await,
        Command::Remove { name } => guests::remove(&bus, &name, json, ask_password).await,
        Command::Watch => watch::watch(&bus, json).await,
        Command::QemuArgs { name } => snippets::print_qemu_args(&bus, &name, json).await,
        Command::LibvirtXml { name } => snippets::print_libvirt_xml(&bus, &name, json).await,
        Command::Completions { .. } => Ok(()),
    }
}

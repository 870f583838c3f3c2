//! vmnet-generate: writes the man pages and shell completions that the package installs into
//! `packaging/generated/`, from the programs' own clap command lines.
//!
//! ```text
//! cargo run -p vmnet-generate               # rewrite packaging/generated/
//! cargo run -p vmnet-generate -- --check    # exit 1 naming every file that is out of date
//! ```
//! The files are committed so that `cargo deb` and `make install` need no generation step; a
//! test fails when they no longer match the programs.

mod man;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Every generated file: its path below `packaging/generated/` and its text.
fn files() -> io::Result<Vec<(&'static str, String)>> {
    let completion = |shell: Shell| {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut vmnetctl::command(), "vmnetctl", &mut script);
        String::from_utf8_lossy(&script).into_owned()
    };
    Ok(vec![
        ("man/vmnetd.8", man::render(vmnetd::cli::Args::command(), "8")?),
        ("man/vmnet-dispatcher.8", man::render(vmnet_dispatcher_cli::Args::command(), "8")?),
        ("man/vmnetctl.1", man::render(vmnetctl::command(), "1")?),
        ("man/vmnet-tray.1", man::render(vmnet_tray::cli::Args::command(), "1")?),
        ("completions/vmnetctl.bash", completion(Shell::Bash)),
        ("completions/_vmnetctl", completion(Shell::Zsh)),
        ("completions/vmnetctl.fish", completion(Shell::Fish)),
    ])
}

/// `packaging/generated/` of this checkout.
fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../generated")
}

/// The generated files whose copy in `dir` differs or is missing.
fn out_of_date(dir: &Path) -> io::Result<Vec<&'static str>> {
    let stale = files()?.into_iter().filter(|(name, text)| {
        std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text.as_str())
    });
    Ok(stale.map(|(name, _)| name).collect())
}

/// Writes every generated file into `dir`.
fn write_all(dir: &Path) -> io::Result<()> {
    for (name, text) in files()? {
        let path = dir.join(name);
        let written =
            path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, text));
        written.map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(_) => {
            eprintln!("usage: vmnet-generate [--check]");
            return ExitCode::from(2);
        }
    };
    let dir = generated_dir();
    let done = if check {
        out_of_date(&dir).map(|stale| {
            for name in &stale {
                eprintln!("vmnet-generate: packaging/generated/{name} is out of date");
            }
            stale.is_empty()
        })
    } else {
        write_all(&dir).map(|()| true)
    };
    match done {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vmnet-generate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_files_match_the_programs() {
        let stale = out_of_date(&generated_dir()).expect("render");
        assert!(stale.is_empty(), "out of date: {stale:?}; run `cargo run -p vmnet-generate`");
    }

    #[test]
    fn man_pages_have_the_sections_people_look_for() {
        let files = files().expect("render");
        let page = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, t)| t.as_str()).unwrap_or("");
        for (name, sections) in [
            (
                "man/vmnetd.8",
                &["NAME", "SYNOPSIS", "OPTIONS", "FILES", "SIGNALS", "EXIT STATUS", "SEE ALSO"][..],
            ),
            ("man/vmnet-dispatcher.8", &["NAME", "SYNOPSIS", "FILES", "EXIT STATUS", "ENVIRONMENT"][..]),
            (
                "man/vmnetctl.1",
                &["NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"][..],
            ),
        ] {
            for section in sections {
                let heading =
                    if section.contains(' ') { format!("\"{section}\"") } else { section.to_string() };
                assert!(page(name).contains(&format!(".SH {heading}\n")), "{name} lacks {section}");
            }
        }
        // Each subcommand's own options are on vmnetctl's page, the global ones are not repeated.
        let ctl = page("man/vmnetctl.1");
        assert!(ctl.contains("\\fBvmnetctl add\\fR \\fINAME\\fR [\\fB\\-\\-mac\\fR \\fIMAC\\fR]"), "{ctl}");
        assert_eq!(ctl.matches("\\fB\\-\\-json\\fR").count(), 2, "--json: synopsis and options only");
    }
}

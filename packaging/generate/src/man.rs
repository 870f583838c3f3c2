//! A man page from a clap command: clap_mangen's title, NAME, SYNOPSIS, DESCRIPTION and
//! OPTIONS, then COMMANDS with each subcommand's own arguments, then one section for each block
//! of the command's `after_help` ("Heading:" followed by "  TERM  description" lines).

use std::io;

use clap::{Arg, Command};
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

/// The page's date: that of the release in `packaging/debian/changelog`, so that the pages
/// change only with their content.
const CHANGELOG: &str = include_str!("../../debian/changelog");

/// The whole page for `command` in manual `section` ("1" user commands, "8" daemons).
pub fn render(mut command: Command, section: &str) -> io::Result<String> {
    command.build();
    let man = Man::new(command.clone())
        .section(section)
        .date(release_date(CHANGELOG))
        .source(format!("vmnet {}", env!("CARGO_PKG_VERSION")))
        .manual("vmnet");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    if command.has_subcommands() {
        commands_section(&mut roff, &command);
    }
    if let Some(after) = command.get_after_help() {
        help_sections(&mut roff, &after.to_string());
    }
    out.extend_from_slice(roff.to_roff().as_bytes());
    Ok(without_repeated_preamble(&String::from_utf8_lossy(&out)))
}

/// "YYYY-MM-DD" of the first entry's trailer line (" -- NAME <MAIL>  Tue, 24 Nov 2026 ...").
fn release_date(changelog: &str) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let date = changelog.lines().find_map(|l| l.strip_prefix(" -- ")?.split_once(">  ")).map(|(_, d)| d);
    let fields: Vec<&str> = date.unwrap_or_default().split_whitespace().collect();
    match fields[..] {
        [_, day, month, year, ..] => match MONTHS.iter().position(|m| *m == month) {
            Some(m) => format!("{year}-{:02}-{day:0>2}", m + 1),
            None => String::from("unknown"),
        },
        _ => String::from("unknown"),
    }
}

/// Each rendered piece starts with the same two-line apostrophe definition: keep the first.
fn without_repeated_preamble(page: &str) -> String {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    match page.split_once(PREAMBLE) {
        Some((before, rest)) => format!("{before}{PREAMBLE}{}", rest.replace(PREAMBLE, "")),
        None => page.to_owned(),
    }
}

/// COMMANDS: per subcommand its usage, its description and its own options.
fn commands_section(roff: &mut Roff, command: &Command) {
    roff.control("SH", ["COMMANDS"]);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let args: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
            .collect();
        let mut usage = vec![bold(format!("{} {}", command.get_name(), sub.get_name()))];
        for arg in &args {
            usage.push(roman(" "));
            usage.extend(arg_usage(arg, true));
        }
        roff.control("TP", []).text(usage);
        let about = sub.get_long_about().or(sub.get_about()).map(|s| s.to_string()).unwrap_or_default();
        for (i, paragraph) in about.split("\n\n").enumerate() {
            if i > 0 {
                roff.control("IP", []);
            }
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
        let aliases: Vec<&str> = sub.get_visible_aliases().collect();
        if !aliases.is_empty() {
            roff.control("IP", []).text([roman(format!("Alias: {}.", aliases.join(", ")))]);
        }
        if !args.is_empty() {
            roff.control("RS", []);
            for arg in &args {
                roff.control("TP", []).text(arg_usage(arg, false));
                roff.text([roman(arg_help(arg))]);
            }
            roff.control("RE", []);
        }
    }
}

/// `NAME`, `--flag` or `--option VALUE`; in a synopsis bracketed when optional.
fn arg_usage(arg: &Arg, synopsis: bool) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |name| name.to_string());
    let mut parts = Vec::new();
    if let Some(long) = arg.get_long() {
        parts.push(bold(format!("--{long}")));
        if arg.get_action().takes_values() {
            parts.push(roman(" "));
            parts.push(italic(value));
        }
    } else {
        parts.push(italic(value));
    }
    if synopsis && !arg.is_required_set() {
        parts.insert(0, roman("["));
        parts.push(roman("]"));
    }
    parts
}

/// The argument's help, with its possible values and its default.
fn arg_help(arg: &Arg) -> String {
    let mut help = arg.get_long_help().or(arg.get_help()).map(|s| s.to_string()).unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !values.is_empty() {
        help.push_str(&format!(" [possible values: {}]", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        help.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    help.replace('\n', " ")
}

/// One entry of an `after_help` block: a term with its description, or a line of text.
struct Entry {
    term: Option<String>,
    text: String,
}

/// Blocks separated by blank lines; a block is "Heading:" then lines indented by two spaces:
/// "TERM  description" (two spaces apart), plain text, or a deeper-indented continuation.
fn help_sections(roff: &mut Roff, after_help: &str) {
    for block in after_help.split("\n\n") {
        let mut lines = block.lines();
        let Some(heading) = lines.next() else { continue };
        let mut entries: Vec<Entry> = Vec::new();
        for line in lines {
            let body = line.trim_start();
            let continues = line.len() - body.len() > 2;
            match entries.last_mut() {
                Some(last) if continues => {
                    last.text.push(' ');
                    last.text.push_str(body);
                }
                _ => entries.push(match body.split_once("  ") {
                    Some((term, text)) => Entry { term: Some(term.into()), text: text.trim().into() },
                    None => Entry { term: None, text: body.into() },
                }),
            }
        }
        roff.control("SH", [heading.trim_end_matches(':').to_uppercase().as_str()]);
        for entry in entries {
            if let Some(term) = entry.term {
                roff.control("TP", []).text([bold(term)]);
            }
            roff.text([roman(entry.text)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_the_changelog_entry_s() {
        let entry = "vmnet (0.1.0-1) unstable; urgency=medium\n\n  * x\n\n -- A B <a@b.c>  Mon, 2 Feb 2026 10:00:00 +0000\n";
        assert_eq!(release_date(entry), "2026-02-02");
        assert_eq!(release_date("nonsense"), "unknown");
        assert_ne!(release_date(CHANGELOG), "unknown");
    }
}

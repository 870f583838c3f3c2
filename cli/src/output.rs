//! Text for people (aligned tables, key/value blocks) and JSON for scripts, written to stdout.

use std::io::{self, Write};

use crate::exit::CliError;

/// Writes `text` to stdout. A reader that went away (`vmnetctl list | head -1`) is not an
/// error: it becomes a quiet stop with status 0 (see [`CliError::quiet`]).
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(write_error)
}

/// Writes `value` as pretty JSON and a newline.
pub fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    print(&format!("{value:#}\n"))
}

fn write_error(error: io::Error) -> CliError {
    if error.kind() == io::ErrorKind::BrokenPipe {
        CliError::quiet()
    } else {
        CliError::output(error)
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; the last column is not
/// padded, so lines carry no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push('\n');
    }
    out
}

/// `Key:   value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count() + 1).max().unwrap_or(0);
    pairs.iter().map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:"))).collect()
}

/// `value`, or "-" when it is empty (for table cells).
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

/// The user name of `uid`, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell_without_trailing_blanks() {
        let rows = vec![
            vec!["web".to_owned(), "vmt-web".to_owned(), "active".to_owned()],
            vec!["database".to_owned(), "vmt-database".to_owned(), "-".to_owned()],
        ];
        let text = table(&["NAME", "TAP", "STATE"], &rows);
        assert_eq!(
            text,
            "NAME      TAP           STATE\n\
             web       vmt-web       active\n\
             database  vmt-database  -\n"
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(table(&["NAME", "TAP"], &[]), "NAME  TAP\n");
    }

    #[test]
    fn key_values_align_values() {
        let text = key_values(&[("State", "online".into()), ("Host address", "198.51.100.10".into())]);
        assert_eq!(text, "State:        online\nHost address: 198.51.100.10\n");
    }

    #[test]
    fn users_and_dashes() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "4000000000");
        assert_eq!(or_dash(""), "-");
        assert_eq!(or_dash("x"), "x");
    }
}

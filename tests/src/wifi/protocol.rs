//! How results leave the laptop VM: one line per event, written by the in-VM runner to
//! `results` on the writable 9p share (and echoed on the console), parsed by the host test:
//!
//! ```text
//! VMNET-WIFI begin roam
//! VMNET-WIFI pass roam rehomed-once exactly one Rehomed: 198.51.100.0/24 -> 203.0.113.0/24
//! VMNET-WIFI fail roam office-pings-guest 0 of 5 pings answered
//! VMNET-WIFI time roam nm-address 9.41
//! VMNET-WIFI end roam
//! VMNET-WIFI done
//! ```
//!
//! A scenario passes when it ended, made at least one check and none failed. Lines without the
//! prefix (kernel messages, other output on the console) are ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The prefix of every protocol line.
pub const PREFIX: &str = "VMNET-WIFI";

/// One check a scenario made.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// What one scenario reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub checks: Vec<Check>,
    /// Timings in seconds, in the order reported.
    pub times: Vec<(String, f64)>,
    pub ended: bool,
}

impl Scenario {
    /// Ended, at least one check, none failed.
    pub fn passed(&self) -> bool {
        self.ended && !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// Every check, one a line, failures marked.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(text, "  {mark} {}: {}", check.name, check.detail);
        }
        if !self.ended {
            text.push_str("  FAIL the scenario did not end (the runner stopped or the VM died)\n");
        }
        text
    }
}

/// Every scenario's results, in the order they began.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub order: Vec<String>,
    pub scenarios: BTreeMap<String, Scenario>,
    /// The runner got to its end (`done`).
    pub done: bool,
    /// Protocol lines that could not be parsed.
    pub malformed: Vec<String>,
}

/// A line for [`Report::parse`]: `VMNET-WIFI WORDS...`.
pub fn line(words: &[&str]) -> String {
    let mut text = String::from(PREFIX);
    for word in words {
        text.push(' ');
        // One line per event: a detail must not break the protocol.
        text.push_str(&word.replace(['\n', '\r'], " | "));
    }
    text
}

impl Report {
    /// Parses every protocol line of `text`.
    pub fn parse(text: &str) -> Report {
        let mut report = Report::default();
        for raw in text.lines() {
            let Some(at) = raw.find(PREFIX) else { continue };
            let rest = raw[at + PREFIX.len()..].trim();
            if !report.apply(rest) {
                report.malformed.push(raw.to_string());
            }
        }
        report
    }

    fn scenario(&mut self, name: &str) -> &mut Scenario {
        if !self.scenarios.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.scenarios.entry(name.to_string()).or_default()
    }

    /// Applies one line (without the prefix); false if it is not a protocol line.
    fn apply(&mut self, rest: &str) -> bool {
        let mut words = rest.splitn(4, ' ');
        let kind = words.next().unwrap_or("");
        let scenario = words.next().unwrap_or("");
        let (name, detail) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match kind {
            "done" if scenario.is_empty() => self.done = true,
            "begin" if !scenario.is_empty() => drop(self.scenario(scenario)),
            "end" if !scenario.is_empty() => self.scenario(scenario).ended = true,
            "pass" | "fail" if !scenario.is_empty() && !name.is_empty() => {
                let check = Check { name: name.into(), passed: kind == "pass", detail: detail.into() };
                self.scenario(scenario).checks.push(check);
            }
            "time" if !name.is_empty() => match detail.trim().parse::<f64>() {
                Ok(seconds) => self.scenario(scenario).times.push((name.into(), seconds)),
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }

    /// Every timing, `scenario label seconds`, one a line.
    pub fn timings(&self) -> String {
        let mut text = String::new();
        for name in &self.order {
            for (label, seconds) in &self.scenarios[name].times {
                let _ = writeln!(text, "  {name:<10} {label:<34} {seconds:8.2} s");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_checks_and_times_are_parsed_amid_other_console_output() {
        let text = format!(
            "[   12.3] random kernel line\n{}\n[vmnet-wifi] {}\n{}\n{}\n{}\nmangled {} line\n{}\n",
            line(&["begin", "home"]),
            line(&["pass", "home", "lease", "198.51.100.200/24 via 198.51.100.120"]),
            line(&["time", "home", "nm-connected", "21.50"]),
            line(&["end", "home"]),
            line(&["fail", "roam", "rehomed-once", "2 Rehomed:\nA\nB"]),
            PREFIX,
            line(&["done"]),
        );
        let report = Report::parse(&text);
        assert_eq!(report.order, ["home", "roam"]);
        let home = &report.scenarios["home"];
        assert!(home.passed());
        assert_eq!(home.checks[0].detail, "198.51.100.200/24 via 198.51.100.120");
        assert_eq!(home.times, [("nm-connected".to_string(), 21.5)]);
        let roam = &report.scenarios["roam"];
        assert!(!roam.passed(), "a failed check and no end");
        assert_eq!(roam.checks[0].detail, "2 Rehomed: | A | B", "one line per event");
        assert!(roam.summary().contains("FAIL rehomed-once"));
        assert!(roam.summary().contains("did not end"));
        assert!(report.done);
        assert_eq!(report.malformed, ["mangled VMNET-WIFI line"]);
    }

    #[test]
    fn a_scenario_without_checks_does_not_pass() {
        let report = Report::parse(&format!("{}\n{}\n", line(&["begin", "x"]), line(&["end", "x"])));
        assert!(!report.scenarios["x"].passed());
        assert!(!report.done);
        let bad_time = Report::parse(&line(&["time", "x", "boot", "soon"]));
        assert_eq!(bad_time.malformed.len(), 1);
    }
}

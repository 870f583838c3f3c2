//! The runner's side of the result protocol (see `protocol.rs`): every line goes to `results`
//! on the share, flushed at once (the VM may die at any moment), and to the console.

use crate::wifi::protocol::line;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

pub struct Reporter {
    file: File,
    scenario: String,
    /// Failed checks in the current scenario.
    failures: usize,
}

/// A scenario stops at its first failed `require`: the rest would only fail after it.
pub type Step = Result<(), String>;

impl Reporter {
    pub fn create(path: &Path) -> io::Result<Reporter> {
        Ok(Reporter { file: File::create(path)?, scenario: String::new(), failures: 0 })
    }

    fn emit(&mut self, words: &[&str]) {
        let text = line(words);
        println!("{text}");
        if let Err(e) = writeln!(self.file, "{text}").and_then(|()| self.file.sync_data()) {
            println!("vmnet-wifi: cannot write the results file: {e}");
        }
    }

    pub fn begin(&mut self, scenario: &str) {
        self.scenario = scenario.to_string();
        self.failures = 0;
        println!("vmnet-wifi: ---- scenario {scenario} ----");
        self.emit(&["begin", scenario]);
    }

    /// Records a check and returns whether it passed.
    pub fn check(&mut self, name: &str, passed: bool, detail: &str) -> bool {
        let scenario = self.scenario.clone();
        self.emit(&[if passed { "pass" } else { "fail" }, &scenario, name, detail]);
        if !passed {
            self.failures += 1;
        }
        passed
    }

    /// A check the scenario cannot go on without: Err when it failed.
    pub fn require(&mut self, name: &str, passed: bool, detail: &str) -> Step {
        if self.check(name, passed, detail) {
            Ok(())
        } else {
            Err(format!("{name}: {detail}"))
        }
    }

    /// Records a timing (seconds).
    pub fn time(&mut self, label: &str, seconds: f64) {
        let scenario = self.scenario.clone();
        self.emit(&["time", &scenario, label, &format!("{seconds:.2}")]);
    }

    /// Records the seconds from `from` to `to` (negative if `to` came first).
    pub fn time_between(&mut self, label: &str, from: Instant, to: Instant) {
        let seconds = match to.checked_duration_since(from) {
            Some(d) => d.as_secs_f64(),
            None => -from.duration_since(to).as_secs_f64(),
        };
        self.time(label, seconds);
    }

    /// Ends the current scenario; an error that stopped it is recorded as a failed check.
    /// Returns whether the scenario passed.
    pub fn end(&mut self, outcome: Step) -> bool {
        if let Err(e) = outcome {
            if self.failures == 0 {
                self.check("aborted", false, &e);
            } else {
                println!("vmnet-wifi: scenario {} stopped: {e}", self.scenario);
            }
        }
        let scenario = self.scenario.clone();
        self.emit(&["end", &scenario]);
        self.failures == 0
    }

    /// Reports a scenario that is not run because `reason`.
    pub fn not_run(&mut self, scenario: &str, reason: &str) {
        self.begin(scenario);
        self.check("not-run", false, reason);
        self.end(Ok(()));
    }

    pub fn done(&mut self) {
        self.emit(&["done"]);
    }
}

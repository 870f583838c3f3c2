//! Lines of a child's stdout as they arrive, each with the moment it was read (for timings),
//! also appended to a log file on the share.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::ChildStdout;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub struct Lines {
    receiver: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Lines {
    pub fn read(stdout: ChildStdout, mut log: Option<File>) -> Lines {
        let (sender, receiver) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines { receiver, seen: Vec::new() }
    }

    /// Takes in what has arrived so far.
    fn drain(&mut self) {
        while let Ok(item) = self.receiver.try_recv() {
            self.seen.push(item);
        }
    }

    /// The first line after `since` that satisfies `wanted`, waiting up to `timeout` for it.
    pub fn wait_for(
        &mut self,
        since: Instant,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let end = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(found) = self.seen.iter().find(|(at, line)| *at >= since && wanted(line)) {
                return Some(found.clone());
            }
            let left = end.checked_duration_since(Instant::now())?;
            match self.receiver.recv_timeout(left) {
                Ok(item) => self.seen.push(item),
                Err(_) => return None,
            }
        }
    }

    /// Every line read after `since` (what has arrived by now).
    pub fn since(&mut self, since: Instant) -> Vec<(Instant, String)> {
        self.drain();
        self.seen.iter().filter(|(at, _)| *at >= since).cloned().collect()
    }
}

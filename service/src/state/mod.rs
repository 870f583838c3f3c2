//! What vmnetd remembers across restarts: a snapshot (`state.json`) and a journal of the changes
//! made since (`journal.jsonl`, one line per change). A change appends one line, so it costs
//! what it touches; the journal is folded into a new snapshot once it outgrows it.
//!
//! Crash safety: the snapshot is replaced atomically (temp file, fsync, rename, fsync of the
//! directory); a journal line is one write followed by fdatasync, and a last line cut short by
//! a crash is ignored. The journal starts with the snapshot's generation: a journal left from
//! before the last snapshot (a crash between the two renames) is ignored, as the snapshot holds
//! all of it.

mod journal;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::executor::SavedSysctls;
use crate::model::{Guest, Subnet};
use crate::planner::Learned6;

const SNAPSHOT: &str = "state.json";
const JOURNAL: &str = "journal.jsonl";
/// The format this vmnetd writes. It reads this and version 1 (a snapshot without journal).
pub const FORMAT_VERSION: u32 = 2;
const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// Everything vmnetd must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// Which journal continues this snapshot (absent in version 1).
    #[serde(default)]
    pub generation: u64,
    pub guests: Vec<StoredGuest>,
    /// Host sysctls vmnetd changed, with the values to restore.
    #[serde(default)]
    pub saved_sysctls: SavedSysctls,
    /// The subnet guests were last homed in, to tell a re-home after a restart or an outage.
    #[serde(default)]
    pub last_subnet: Option<Subnet>,
}

/// A [`State`] made of borrowed parts, to save without copying every guest.
#[derive(Serialize)]
pub struct StateRef<'a> {
    pub guests: Vec<StoredGuestRef<'a>>,
    pub host: HostRef<'a>,
}

/// The host-wide part of the state.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HostRef<'a> {
    pub saved_sysctls: &'a SavedSysctls,
    pub last_subnet: Option<Subnet>,
}

#[derive(Serialize)]
pub struct StoredGuestRef<'a> {
    #[serde(flatten)]
    pub guest: &'a Guest,
    pub host_number: Option<u32>,
    #[serde(skip_serializing_if = "Learned6::is_empty")]
    pub addresses6: &'a Learned6,
}

/// A guest and the place of its address in the uplink's subnet (kept across re-homes when it
/// fits; `None` when it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGuest {
    #[serde(flatten)]
    pub guest: Guest,
    pub host_number: Option<u32>,
    /// The IPv6 addresses it was found using (and that were routed), in the uplink's prefix.
    #[serde(default, skip_serializing_if = "Learned6::is_empty")]
    pub addresses6: Learned6,
}

/// What changed since the last write: guests added or changed (whole), guests removed, and
/// the host part when it changed.
pub struct ChangeRef<'a> {
    pub guests: Vec<StoredGuestRef<'a>>,
    pub removed: Vec<&'a str>,
    pub host: Option<HostRef<'a>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a vmnet state file: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("{path} line {line} is not a vmnet journal entry: {source}")]
    CorruptJournal { path: PathBuf, line: usize, source: serde_json::Error },
    #[error("{path} has format version {found}; this vmnetd reads versions 1 and {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// The state files in a directory.
pub struct StateFile {
    snapshot: PathBuf,
    journal: PathBuf,
    /// The journal this process appends to, once it has written a snapshot (it never appends
    /// to a journal it did not start).
    open: Option<journal::Open>,
    /// The snapshot's size when written: the journal is folded in once it is larger.
    snapshot_len: u64,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        Self { snapshot: dir.join(SNAPSHOT), journal: dir.join(JOURNAL), open: None, snapshot_len: 0 }
    }

    /// Reads the snapshot and replays its journal; no files is an empty state.
    pub fn load(&self) -> Result<State, StateError> {
        let text = match fs::read(&self.snapshot) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State { version: FORMAT_VERSION, ..State::default() })
            }
            Err(source) => return Err(StateError::Io { path: self.snapshot.clone(), source }),
        };
        let mut state: State = serde_json::from_slice(&text)
            .map_err(|source| StateError::Corrupt { path: self.snapshot.clone(), source })?;
        if !READABLE_VERSIONS.contains(&state.version) {
            return Err(StateError::Version { path: self.snapshot.clone(), found: state.version });
        }
        if state.version == FORMAT_VERSION {
            let entries = journal::read(&self.journal, state.generation)?;
            if !entries.is_empty() {
                replay(&mut state, entries);
            }
        }
        Ok(state)
    }

    /// Records `change`: one journal line, or a new snapshot of `whole` when the journal has
    /// outgrown the last one (or this process has not written one yet).
    pub fn save<'a>(
        &mut self,
        change: impl FnOnce() -> ChangeRef<'a>,
        whole: impl FnOnce() -> StateRef<'a>,
    ) -> Result<(), StateError> {
        let fold_at = self.snapshot_len.max(journal::MIN_FOLD);
        if let Some(open) = self.open.as_mut().filter(|o| o.is_intact() && o.len() <= fold_at) {
            match open.append(&change()) {
                Ok(()) => return Ok(()),
                Err(e) if open.is_intact() => return Err(e),
                // Bytes it could not cut off again: only a new snapshot is safe now.
                Err(e) => tracing::warn!("{e}; writing a new snapshot instead"),
            }
        }
        self.write_snapshot(&whole())
    }

    /// Writes a new snapshot of `state` and starts its journal.
    fn write_snapshot(&mut self, state: &StateRef) -> Result<(), StateError> {
        let generation = self.open.as_ref().map_or_else(|| self.next_generation(), |o| o.generation() + 1);
        let body = journal::snapshot_body(state, generation)
            .map_err(|e| StateError::Io { path: self.snapshot.clone(), source: io::Error::other(e) })?;
        journal::replace(&self.snapshot, &body)?;
        self.snapshot_len = body.len() as u64;
        self.open = None;
        self.open = Some(journal::Open::start(&self.journal, generation)?);
        Ok(())
    }

    /// A generation the files on disk have not used.
    fn next_generation(&self) -> u64 {
        #[derive(Deserialize)]
        struct Generation {
            #[serde(default)]
            generation: u64,
        }
        let on_disk = fs::read(&self.snapshot)
            .ok()
            .and_then(|text| serde_json::from_slice::<Generation>(&text).ok())
            .map_or(0, |g| g.generation);
        on_disk.max(journal::generation_of(&self.journal).unwrap_or(0)) + 1
    }
}

/// Applies journal entries to a snapshot, in order.
fn replay(state: &mut State, entries: Vec<journal::Entry>) {
    let mut guests: BTreeMap<String, StoredGuest> =
        std::mem::take(&mut state.guests).into_iter().map(|g| (g.guest.name.clone(), g)).collect();
    for entry in entries {
        for guest in entry.guests {
            guests.insert(guest.guest.name.clone(), guest);
        }
        for name in entry.removed {
            guests.remove(&name);
        }
        if let Some(host) = entry.host {
            state.saved_sysctls = host.saved_sysctls;
            state.last_subnet = host.last_subnet;
        }
    }
    state.guests = guests.into_values().collect();
}

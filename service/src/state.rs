//! The state file: guests and saved sysctl values, written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::executor::SavedSysctls;
use crate::model::{Guest, Subnet};

const FILE_NAME: &str = "state.json";
/// The state file format this vmnetd reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything vmnetd must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
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
    pub version: u32,
    pub guests: Vec<StoredGuestRef<'a>>,
    pub saved_sysctls: &'a SavedSysctls,
    pub last_subnet: Option<Subnet>,
}

#[derive(Serialize)]
pub struct StoredGuestRef<'a> {
    #[serde(flatten)]
    pub guest: &'a Guest,
    pub host_number: Option<u32>,
}

/// A guest and the place of its address in the uplink's subnet (kept across re-homes when it
/// fits; `None` when it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGuest {
    #[serde(flatten)]
    pub guest: Guest,
    pub host_number: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a vmnet state file: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("{path} has format version {found}; this vmnetd reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// The state file in a directory.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join(FILE_NAME) }
    }

    /// Reads the state; a missing file is an empty state.
    pub fn load(&self) -> Result<State, StateError> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State { version: FORMAT_VERSION, ..State::default() })
            }
            Err(source) => return Err(StateError::Io { path: self.path.clone(), source }),
        };
        let state: State = serde_json::from_slice(&text)
            .map_err(|source| StateError::Corrupt { path: self.path.clone(), source })?;
        if state.version != FORMAT_VERSION {
            return Err(StateError::Version { path: self.path.clone(), found: state.version });
        }
        Ok(state)
    }

    /// Replaces the file atomically: temp file, fsync, rename, fsync of the directory. `state`
    /// serializes like a [`State`] (or borrows one: [`StateRef`]).
    pub fn save(&self, state: &impl Serialize) -> Result<(), StateError> {
        let io_err = |source| StateError::Io { path: self.path.clone(), source };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err)?;
        let temp = self.path.with_extension("json.tmp");
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| io_err(io::Error::other(e)))?;
        body.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_err)?;
        file.write_all(&body).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&temp, &self.path).map_err(io_err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mac;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmnet-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn missing_file_is_empty_state_and_round_trip() {
        let dir = temp_dir("rt");
        let file = StateFile::new(&dir);
        let empty = file.load().unwrap();
        assert!(empty.guests.is_empty());
        let mut state = empty;
        let guest = Guest {
            name: "web".into(),
            tap: "vmt-web".into(),
            mac: Mac([0x0a, 0x76, 0x6d, 1, 2, 3]),
            owner: 1000,
            qmp: Some("/run/user/1000/web.qmp".into()),
        };
        state.guests.push(StoredGuest { guest, host_number: Some(200) });
        state.saved_sysctls.insert("net/ipv4/ip_forward".into(), "0".into());
        state.last_subnet = Some(String::from("198.51.100.0/24").try_into().unwrap());
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        assert!(!dir.join("state.json.tmp").exists());
        let text = fs::read_to_string(dir.join("state.json")).unwrap();
        assert!(text.contains("\"mac\": \"0a:76:6d:01:02:03\""), "{text}");
        assert!(text.contains("\"host_number\": 200"), "the format stays flat: {text}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_or_future_files_are_refused() {
        let dir = temp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(&dir);
        fs::write(dir.join("state.json"), "{not json").unwrap();
        assert!(matches!(file.load(), Err(StateError::Corrupt { .. })));
        fs::write(dir.join("state.json"), r#"{"version": 9, "guests": []}"#).unwrap();
        assert!(matches!(file.load(), Err(StateError::Version { found: 9, .. })));
        fs::remove_dir_all(dir).unwrap();
    }
}

//! The files themselves: the snapshot replaced atomically, the journal appended a line at a
//! time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ChangeRef, HostRef, StateError, StateRef, StoredGuest, StoredGuestRef, FORMAT_VERSION};
use crate::executor::SavedSysctls;
use crate::model::Subnet;

/// A journal shorter than this is never folded into a snapshot (however small the snapshot).
pub const MIN_FOLD: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    generation: u64,
}

/// One journal line, as read back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(default)]
    pub guests: Vec<StoredGuest>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub host: Option<Host>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub saved_sysctls: SavedSysctls,
    pub last_subnet: Option<Subnet>,
}

impl Serialize for ChangeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Line<'b> {
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            guests: &'b [StoredGuestRef<'b>],
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            removed: &'b [&'b str],
            #[serde(skip_serializing_if = "Option::is_none")]
            host: Option<HostRef<'b>>,
        }
        Line { guests: &self.guests, removed: &self.removed, host: self.host }.serialize(serializer)
    }
}

/// The snapshot's text: `state` with the format version and `generation`.
pub fn snapshot_body(state: &StateRef, generation: u64) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Snapshot<'b> {
        version: u32,
        generation: u64,
        guests: &'b [StoredGuestRef<'b>],
        #[serde(flatten)]
        host: HostRef<'b>,
    }
    let snapshot = Snapshot { version: FORMAT_VERSION, generation, guests: &state.guests, host: state.host };
    let mut body = serde_json::to_vec_pretty(&snapshot)?;
    body.push(b'\n');
    Ok(body)
}

/// The entries of the journal at `path` that continue snapshot `generation`: none when the
/// journal is missing or belongs to another snapshot. A last line cut short is ignored.
pub fn read(path: &Path, generation: u64) -> Result<Vec<Entry>, StateError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::Io { path: path.to_owned(), source }),
    };
    let complete = complete_lines(&text);
    if complete.len() < text.len() {
        tracing::warn!(
            "{}: ignoring a last line cut short ({} bytes)",
            path.display(),
            text.len() - complete.len()
        );
    }
    let mut lines = complete.split(|b| *b == b'\n').filter(|line| !line.is_empty());
    let corrupt =
        |line: usize| move |source| StateError::CorruptJournal { path: path.to_owned(), line, source };
    let Some(first) = lines.next() else { return Ok(Vec::new()) };
    let header: Header = serde_json::from_slice(first).map_err(corrupt(1))?;
    if header.generation != generation {
        return Ok(Vec::new());
    }
    lines.enumerate().map(|(i, line)| serde_json::from_slice(line).map_err(corrupt(i + 2))).collect()
}

/// The generation in the journal's first line, if it has one.
pub fn generation_of(path: &Path) -> Option<u64> {
    let text = fs::read(path).ok()?;
    let first = text.split(|b| *b == b'\n').next()?;
    serde_json::from_slice::<Header>(first).ok().map(|h| h.generation)
}

/// `text` up to and including its last newline.
fn complete_lines(text: &[u8]) -> &[u8] {
    text.iter().rposition(|b| *b == b'\n').map_or(&[][..], |end| &text[..=end])
}

/// Replaces `path` with `body` atomically: temp file, fsync, rename, fsync of the directory.
pub fn replace(path: &Path, body: &[u8]) -> Result<(), StateError> {
    let io_err = |source| StateError::Io { path: path.to_owned(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = private_file().truncate(true).open(&temp).map_err(io_err)?;
    file.write_all(body).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&temp, path).map_err(io_err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).mode(0o600);
    options
}

/// A journal this process started, open for appending.
pub struct Open {
    path: PathBuf,
    file: File,
    generation: u64,
    len: u64,
    /// False once a failed append left bytes that could not be cut off again.
    intact: bool,
}

impl Open {
    /// Starts the journal of snapshot `generation` (replacing any other).
    pub fn start(path: &Path, generation: u64) -> Result<Self, StateError> {
        let mut header = serde_json::to_vec(&Header { generation })
            .map_err(|e| StateError::Io { path: path.to_owned(), source: io::Error::other(e) })?;
        header.push(b'\n');
        replace(path, &header)?;
        let file = private_file()
            .append(true)
            .open(path)
            .map_err(|source| StateError::Io { path: path.to_owned(), source })?;
        Ok(Self { path: path.to_owned(), file, generation, len: header.len() as u64, intact: true })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_intact(&self) -> bool {
        self.intact
    }

    /// Appends `change` as one line and waits until it is on disk. On failure the journal is
    /// cut back to where it was (or, if that fails too, marked as not intact).
    pub fn append(&mut self, change: &ChangeRef) -> Result<(), StateError> {
        let io_err = |source| StateError::Io { path: self.path.clone(), source };
        // Removed from under vmnetd (with its directory, say): lines written to it are lost.
        let nlink = self.file.metadata().map_err(io_err)?.nlink();
        if nlink == 0 {
            self.intact = false;
            return Err(io_err(io::Error::new(io::ErrorKind::NotFound, "the journal was removed")));
        }
        let mut line = serde_json::to_vec(change).map_err(|e| io_err(io::Error::other(e)))?;
        line.push(b'\n');
        let written = self.file.write_all(&line).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.intact = self.file.set_len(self.len).and_then(|()| self.file.sync_data()).is_ok();
            return Err(io_err(e));
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

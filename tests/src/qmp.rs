//! A small QMP client for tests, for QEMU and for tapguest's mini QMP alike: connect (the
//! greeting, then `qmp_capabilities`), execute commands, get their `return` values. Events
//! that arrive in between (`{"event": ...}`) are kept aside, as QEMU may send them any time.

use serde_json::{json, Value};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum QmpError {
    Io(io::Error),
    /// QMP's `{"error": {"class": ..., "desc": ...}}`.
    Command {
        class: String,
        desc: String,
    },
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Io(e) => write!(f, "QMP: {e}"),
            QmpError::Command { class, desc } => write!(f, "QMP error {class}: {desc}"),
        }
    }
}

impl std::error::Error for QmpError {}

impl From<io::Error> for QmpError {
    fn from(e: io::Error) -> Self {
        QmpError::Io(e)
    }
}

impl QmpError {
    /// The error class (`CommandNotFound`, `DeviceNotFound`, `GenericError`...), if QMP sent one.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            QmpError::Io(_) => None,
        }
    }
}

pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    greeting: Value,
    events: Vec<Value>,
}

impl Qmp {
    /// Connects to the QMP socket at `path` and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let mut qmp = Qmp::connect_raw(path)?;
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Connects and reads the greeting, without negotiating (commands then fail).
    pub fn connect_raw(path: &Path) -> io::Result<Qmp> {
        let stream = UnixStream::connect(path)
            .map_err(|e| io::Error::new(e.kind(), format!("QMP {}: {e}", path.display())))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut qmp = Qmp { stream, reader, greeting: Value::Null, events: Vec::new() };
        qmp.greeting = qmp.read_message()?;
        if qmp.greeting.get("QMP").is_none() {
            return Err(io::Error::other(format!("not a QMP greeting: {}", qmp.greeting)));
        }
        Ok(qmp)
    }

    /// The server's greeting (`{"QMP": {"version": ..., "capabilities": [...]}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Events received so far.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    fn read_message(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QMP connection closed"));
        }
        serde_json::from_str(&line).map_err(|e| io::Error::other(format!("QMP sent {line:?}: {e}")))
    }

    /// Sends `text` as is and returns the next reply (events are set aside): the whole
    /// `{"return": ...}` or `{"error": ...}` object. For tests of malformed input.
    pub fn send_raw(&mut self, text: &str) -> io::Result<Value> {
        self.stream.write_all(text.as_bytes())?;
        loop {
            let message = self.read_message()?;
            if message.get("event").is_some() {
                self.events.push(message);
            } else {
                return Ok(message);
            }
        }
    }

    /// Executes `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut reply = self.send_raw(&format!("{request}\n"))?;
        if let Some(value) = reply.get_mut("return") {
            return Ok(value.take());
        }
        let field = |name: &str| reply["error"][name].as_str().unwrap_or_default().to_string();
        match reply.get("error") {
            Some(_) => Err(QmpError::Command { class: field("class"), desc: field("desc") }),
            None => Err(QmpError::Io(io::Error::other(format!("not a QMP reply: {reply}")))),
        }
    }

    /// `set_link`: `name` is a NIC's name or a netdev id.
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<(), QmpError> {
        self.execute("set_link", Some(json!({ "name": name, "up": up }))).map(drop)
    }

    /// `query-rx-filter` for all NICs.
    pub fn rx_filters(&mut self) -> Result<Vec<Value>, QmpError> {
        match self.execute("query-rx-filter", None)? {
            Value::Array(filters) => Ok(filters),
            other => Err(QmpError::Io(io::Error::other(format!("query-rx-filter returned {other}")))),
        }
    }

    /// The name of the NIC whose `main-mac` is `mac` (case-insensitive), as vmnetd finds it.
    pub fn nic_with_mac(&mut self, mac: &str) -> Result<Option<String>, QmpError> {
        let filters = self.rx_filters()?;
        let matches = |f: &&Value| f["main-mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(mac));
        Ok(filters.iter().find(matches).and_then(|f| f["name"].as_str()).map(String::from))
    }
}

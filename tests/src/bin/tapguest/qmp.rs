//! A minimal QMP server that answers as QEMU 7.2 does (checked against the real one, replies and
//! error texts): qmp_capabilities, set_link, query-rx-filter, query-status and quit.

use serde_json::{json, Map, Value};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "tapguest"}, "capabilities": []}}"#;

/// A QMP error reply's class and description.
pub struct QmpError {
    pub class: &'static str,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError { class: "GenericError", desc: desc.into() }
    }
}

/// What the QMP commands act on: the guest's NIC.
pub trait Machine {
    /// `set_link`: `name` is the NIC's name or its netdev id.
    fn set_link(&mut self, name: &str, up: bool) -> Result<(), QmpError>;
    /// `query-rx-filter`: all NICs, or the one named.
    fn rx_filter(&self, name: Option<&str>) -> Result<Value, QmpError>;
}

enum Arg {
    Str,
    Bool,
}

/// Checks `args` against `spec` (name, type, required) in order, as QEMU's visitor does.
fn check_args(args: &Map<String, Value>, spec: &[(&str, Arg, bool)]) -> Result<(), QmpError> {
    for (name, kind, required) in spec {
        let (ok, expected) = match (args.get(*name), kind) {
            (None, _) if *required => {
                return Err(QmpError::generic(format!("Parameter '{name}' is missing")))
            }
            (None, _) => continue,
            (Some(v), Arg::Str) => (v.is_string(), "string"),
            (Some(v), Arg::Bool) => (v.is_boolean(), "boolean"),
        };
        if !ok {
            return Err(QmpError::generic(format!(
                "Invalid parameter type for '{name}', expected: {expected}"
            )));
        }
    }
    match args.keys().find(|k| !spec.iter().any(|(name, _, _)| name == k)) {
        Some(extra) => Err(QmpError::generic(format!("Parameter '{extra}' is unexpected"))),
        None => Ok(()),
    }
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    negotiated: bool,
}

pub struct QmpServer {
    path: PathBuf,
    listener: UnixListener,
    clients: Vec<Client>,
    pub quit: bool,
}

impl QmpServer {
    /// Listens on `path`; with `owner`, as that user: clients see it as the socket's peer.
    pub fn bind(path: &Path, owner: Option<u32>) -> io::Result<QmpServer> {
        let _ = std::fs::remove_file(path);
        let listener = match owner {
            None => UnixListener::bind(path)?,
            Some(uid) => listen_as(path, uid)?,
        };
        Ok(QmpServer { path: path.to_path_buf(), listener, clients: Vec::new(), quit: false })
    }

    /// The descriptors to poll: the listener, then each client.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd()).chain(self.clients.iter().map(|c| c.stream.as_fd())).collect()
    }

    /// Serves what `ready` (one flag per descriptor of [`QmpServer::fds`]) says can be read.
    pub fn serve(&mut self, ready: &[bool], machine: &mut impl Machine) {
        for i in (0..self.clients.len()).rev() {
            if ready.get(i + 1) == Some(&true) && !self.client_input(i, machine) {
                self.clients.remove(i);
            }
        }
        if ready.first() == Some(&true) {
            if let Ok((mut stream, _)) = self.listener.accept() {
                if stream.write_all(format!("{GREETING}\r\n").as_bytes()).is_ok() {
                    self.clients.push(Client { stream, buf: Vec::new(), negotiated: false });
                }
            }
        }
    }

    /// Reads from client `i` and answers every complete JSON value. False when it has gone.
    fn client_input(&mut self, i: usize, machine: &mut impl Machine) -> bool {
        let mut chunk = [0u8; 4096];
        match self.clients[i].stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => self.clients[i].buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            let buf = std::mem::take(&mut self.clients[i].buf);
            let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let (reply, rest) = match values.next() {
                None => break,
                Some(Err(e)) if e.is_eof() => {
                    self.clients[i].buf = buf;
                    break;
                }
                Some(Err(e)) => {
                    // Skip the bad line, report it and go on, as QEMU does.
                    let end = buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |p| p + 1);
                    (error_reply(&QmpError::generic(format!("JSON parse error, {e}"))), end)
                }
                Some(Ok(msg)) => {
                    let end = values.byte_offset();
                    let mut reply = match self.request(i, &msg, machine) {
                        Ok(value) => json!({ "return": value }),
                        Err(e) => error_reply(&e),
                    };
                    if let Some(id) = msg.get("id") {
                        reply["id"] = id.clone();
                    }
                    (reply, end)
                }
            };
            self.clients[i].buf = buf[rest..].to_vec();
            if self.clients[i].stream.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                return false;
            }
        }
        true
    }

    fn request(&mut self, i: usize, msg: &Value, machine: &mut impl Machine) -> Result<Value, QmpError> {
        let msg = msg.as_object().ok_or_else(|| QmpError::generic("QMP input must be a JSON object"))?;
        if let Some(key) = msg.keys().find(|k| !["execute", "arguments", "id"].contains(&k.as_str())) {
            return Err(QmpError::generic(format!("QMP input member '{key}' is unexpected")));
        }
        let command = match msg.get("execute") {
            None => return Err(QmpError::generic("QMP input lacks member 'execute'")),
            Some(Value::String(c)) => c.as_str(),
            Some(_) => return Err(QmpError::generic("QMP input member 'execute' must be a string")),
        };
        let empty = Map::new();
        let args = match msg.get("arguments") {
            None => &empty,
            Some(Value::Object(args)) => args,
            Some(_) => return Err(QmpError::generic("QMP input member 'arguments' must be an object")),
        };
        let not_found = |desc: String| QmpError { class: "CommandNotFound", desc };
        match (command, self.clients[i].negotiated) {
            ("qmp_capabilities", false) => {
                self.clients[i].negotiated = true;
                return Ok(json!({}));
            }
            ("qmp_capabilities", true) => {
                return Err(not_found("Capabilities negotiation is already complete, command ignored".into()))
            }
            (_, false) => {
                return Err(not_found("Expecting capabilities negotiation with 'qmp_capabilities'".into()))
            }
            _ => {}
        }
        match command {
            "set_link" => {
                check_args(args, &[("name", Arg::Str, true), ("up", Arg::Bool, true)])?;
                let up = args["up"].as_bool().unwrap_or_default();
                machine.set_link(args["name"].as_str().unwrap_or_default(), up)?;
                Ok(json!({}))
            }
            "query-rx-filter" => {
                check_args(args, &[("name", Arg::Str, false)])?;
                machine.rx_filter(args.get("name").and_then(Value::as_str))
            }
            "query-status" => {
                check_args(args, &[])?;
                Ok(json!({"status": "running", "singlestep": false, "running": true}))
            }
            "quit" => {
                check_args(args, &[])?;
                self.quit = true;
                self.broadcast_event("SHUTDOWN", json!({"guest": false, "reason": "host-qmp-quit"}));
                Ok(json!({}))
            }
            _ => Err(not_found(format!("The command {command} has not been found"))),
        }
    }

    /// Sends an event to every negotiated client, as QEMU does.
    fn broadcast_event(&mut self, event: &str, data: Value) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let timestamp = json!({"seconds": now.as_secs(), "microseconds": now.subsec_micros()});
        let line = format!("{}\r\n", json!({"timestamp": timestamp, "event": event, "data": data}));
        for client in self.clients.iter_mut().filter(|c| c.negotiated) {
            let _ = client.stream.write_all(line.as_bytes());
        }
    }
}

fn error_reply(e: &QmpError) -> Value {
    json!({"error": {"class": e.class, "desc": e.desc}})
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A listening socket whose peer credentials are `uid`'s: the kernel takes them when the
/// socket starts listening, so only `listen` runs with that effective uid.
fn listen_as(path: &Path, uid: u32) -> io::Result<UnixListener> {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use nix::unistd::{seteuid, Uid};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    std::os::unix::fs::chown(path, Some(uid), None)?;
    seteuid(Uid::from_raw(uid))?;
    let listening = listen(&fd, Backlog::new(8)?);
    seteuid(Uid::from_raw(0))?;
    listening?;
    Ok(UnixListener::from(fd))
}

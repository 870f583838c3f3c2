//! tapguest: a "guest" behind a persistent tap, without a VM: a relay attaches to tap TAP in the
//! current netns (as QEMU's `-netdev tap,ifname=TAP` does), enters netns GUEST (`ip netns add`),
//! creates a tap `eth0` there and copies Ethernet frames both ways until SIGTERM/SIGINT. eth0
//! vanishes when it exits. Events on stdout: "relay ready", "link down", "link up".
//!
//! usage: tapguest TAP GUEST [--mac MAC] [--qmp SOCKET] [--netdev-id ID]
//!
//! `--qmp` serves a minimal QMP on a unix socket, as QEMU 7.2 answers it: qmp_capabilities,
//! set_link (name = the netdev id, default n0; eth0's carrier goes off/on, frames are dropped
//! while down), query-status and quit.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{exit, Command};

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x400454d0;
const TUNSETCARRIER: libc::c_ulong = 0x400454e2;
const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "tapguest"}, "capabilities": []}}"#;

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Attaches to (or creates) tap `name` in the current netns, without offloads: a tap that QEMU
/// used keeps QEMU's offloads, and without a vnet header we would read unfinished checksums.
fn open_tap(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::other(format!("interface name too long: {name}")));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(os_err(&format!("TUNSETIFF {name}")));
    }
    // SAFETY: TUNSETOFFLOAD takes an integer argument.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETOFFLOAD as _, 0 as libc::c_ulong) } < 0 {
        return Err(os_err(&format!("TUNSETOFFLOAD {name}")));
    }
    Ok(tun)
}

fn enter_netns(name: &str) -> io::Result<()> {
    let ns = File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("setns {name}: {e}")))
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    ready: bool,
}

struct Relay {
    host: File,
    guest: File,
    link_up: bool,
    netdev_id: String,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    quitting: bool,
}

impl Relay {
    fn set_link(&mut self, up: bool) -> io::Result<()> {
        if up == self.link_up {
            return Ok(()); // no change, no event: as QEMU does
        }
        let on: libc::c_int = up.into();
        // SAFETY: TUNSETCARRIER reads an int through the pointer.
        if unsafe { libc::ioctl(self.guest.as_raw_fd(), TUNSETCARRIER as _, &on) } < 0 {
            return Err(os_err("TUNSETCARRIER"));
        }
        self.link_up = up;
        println!("link {}", if up { "up" } else { "down" });
        Ok(())
    }

    fn command(&mut self, client: usize, msg: &Value) -> Value {
        let cmd = msg.get("execute").and_then(Value::as_str).unwrap_or("");
        let error = |class: &str, desc: String| json!({"error": {"class": class, "desc": desc}});
        if !self.clients[client].ready && cmd != "qmp_capabilities" {
            let desc = "Expecting capabilities negotiation with 'qmp_capabilities'";
            return error("CommandNotFound", desc.into());
        }
        let args = msg.get("arguments").cloned().unwrap_or(json!({}));
        match cmd {
            "qmp_capabilities" => self.clients[client].ready = true,
            "set_link" => {
                let name = args.get("name").and_then(Value::as_str).unwrap_or("");
                if name != self.netdev_id {
                    return error("DeviceNotFound", format!("Device '{name}' not found"));
                }
                let up = args.get("up").and_then(Value::as_bool).unwrap_or(false);
                if let Err(e) = self.set_link(up) {
                    return error("GenericError", e.to_string());
                }
            }
            "query-status" => {
                return json!({"return": {"status": "running", "singlestep": false, "running": true}})
            }
            "quit" => self.quitting = true,
            _ => return error("CommandNotFound", format!("The command {cmd} has not been found")),
        }
        json!({"return": {}})
    }

    /// Reads from QMP client `i`; answers every complete JSON value. False when it has gone.
    fn client_input(&mut self, i: usize) -> bool {
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
                Some(Err(_)) => {
                    // Skip the garbage line, report it and go on, as QEMU does.
                    let end = buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |p| p + 1);
                    let desc = "JSON parse error";
                    (json!({"error": {"class": "GenericError", "desc": desc}}), end)
                }
                Some(Ok(msg)) => {
                    let end = values.byte_offset();
                    let mut reply = if msg.is_object() {
                        self.command(i, &msg)
                    } else {
                        let desc = "QMP input must be a JSON object";
                        json!({"error": {"class": "GenericError", "desc": desc}})
                    };
                    if let Some(id) = msg.get("id") {
                        reply["id"] = id.clone();
                    }
                    (reply, end)
                }
            };
            self.clients[i].buf = buf[rest..].to_vec();
            let line = format!("{reply}\r\n");
            if self.clients[i].stream.write_all(line.as_bytes()).is_err() {
                return false;
            }
        }
        true
    }

    fn forward(&mut self, from_host: bool) -> io::Result<()> {
        let mut frame = [0u8; 65536];
        let (src, dst) = if from_host { (&self.host, &self.guest) } else { (&self.guest, &self.host) };
        let n = (&*src).read(&mut frame)?;
        if self.link_up {
            let _ = (&*dst).write(&frame[..n]); // the other side is down: drop, as a cable would
        }
        Ok(())
    }

    fn run(&mut self, signals: &SignalFd) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        println!("relay ready");
        while !self.quitting {
            let (host, guest) = (self.host.as_fd(), self.guest.as_fd());
            let mut fds: Vec<BorrowedFd> = vec![host, guest, signals.as_fd()];
            fds.extend(self.listener.as_ref().map(|l| l.as_fd()));
            fds.extend(self.clients.iter().map(|c| c.stream.as_fd()));
            let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
            match poll(&mut pfds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let ready: Vec<bool> = pfds.iter().map(|p| p.any().unwrap_or(false)).collect();
            drop(pfds);
            if ready[0] {
                self.forward(true)?;
            }
            if ready[1] {
                self.forward(false)?;
            }
            if ready[2] {
                return Ok(()); // SIGTERM or SIGINT
            }
            let first_client = 3 + usize::from(self.listener.is_some());
            if self.listener.is_some() && ready[3] {
                if let Some(Ok((mut stream, _))) = self.listener.as_ref().map(|l| l.accept()) {
                    if stream.write_all(format!("{GREETING}\r\n").as_bytes()).is_ok() {
                        self.clients.push(Client { stream, buf: Vec::new(), ready: false });
                    }
                }
            }
            let n = self.clients.len().min(ready.len().saturating_sub(first_client));
            for i in (0..n).rev() {
                if ready[first_client + i] && !self.client_input(i) {
                    self.clients.remove(i);
                }
            }
        }
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!("usage: tapguest TAP GUEST_NETNS [--mac MAC] [--qmp SOCKET] [--netdev-id ID]");
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut positional, mut mac, mut qmp, mut netdev_id) = (Vec::new(), None, None, "n0".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mac" => mac = Some(args.next().unwrap_or_else(|| usage())),
            "--qmp" => qmp = Some(args.next().unwrap_or_else(|| usage())),
            "--netdev-id" => netdev_id = args.next().unwrap_or_else(|| usage()),
            a if a.starts_with('-') => usage(),
            _ => positional.push(arg),
        }
    }
    let [tap, guest] = <[String; 2]>::try_from(positional).unwrap_or_else(|_| usage());
    if let Err(e) = relay(&tap, &guest, mac.as_deref(), qmp.as_deref(), netdev_id) {
        eprintln!("tapguest: {e}");
        exit(1);
    }
}

fn relay(tap: &str, guest: &str, mac: Option<&str>, qmp: Option<&str>, netdev_id: String) -> io::Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let signals = SignalFd::new(&mask)?;
    let host = open_tap(tap)?;
    enter_netns(guest)?; // from here on, this process and its children live in GUEST
    let guest_tap = open_tap("eth0")?;
    if let Some(mac) = mac {
        let status = Command::new("ip").args(["link", "set", "eth0", "address", mac]).status()?;
        if !status.success() {
            return Err(io::Error::other(format!("cannot set MAC {mac}")));
        }
    }
    let listener = match qmp {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            Some(UnixListener::bind(path)?)
        }
        None => None,
    };
    let mut relay = Relay {
        host,
        guest: guest_tap,
        link_up: true,
        netdev_id,
        listener,
        clients: Vec::new(),
        quitting: false,
    };
    let result = relay.run(&signals);
    if let Some(path) = qmp {
        let _ = std::fs::remove_file(path);
    }
    result
}

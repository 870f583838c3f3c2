//! tapguest: a "guest" behind a persistent tap, without a VM: a relay attaches to tap TAP in the
//! current netns (as QEMU's `-netdev tap,ifname=TAP` does), enters netns GUEST (`ip netns add`),
//! creates a tap `eth0` there and copies Ethernet frames both ways until SIGTERM/SIGINT. eth0
//! vanishes when it exits.
//!
//! usage: tapguest TAP GUEST [--mac MAC] [--qmp SOCKET [--qmp-owner UID]] [--netdev-id ID]
//!                           [--nic-id ID] [--dhcp [--hostname NAME]]
//! `--qmp-owner` serves the QMP socket as that user (its peer credentials), as the QEMU of
//! that user's guest would.
//!
//! `--qmp` serves a minimal QMP on a unix socket, as QEMU 7.2 answers it for a NIC
//! `-device virtio-net-pci,netdev=n0` (see `qmp.rs`): set_link takes the NIC's name
//! (`--nic-id`, default `virtio-net-pci.0`, QEMU's name for a NIC without an id) or the netdev
//! id (`--netdev-id`, default `n0`); while the link is down eth0 has no carrier and frames are
//! dropped. `--dhcp` brings eth0 up and runs a DHCP client on it (see `dhcp.rs`), restarted
//! whenever set_link brings the link back up.
//!
//! Events on stdout, one line each: `relay ready`, `link down`, `link up`, and with `--dhcp`
//! `dhcp bound ...`, `dhcp deconfig`... (see `dhcp.rs`).

mod dhcp;
mod netdev;
mod qmp;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use qmp::{Machine, QmpError, QmpServer};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::process::{exit, Command, ExitCode};

/// The guest's NIC: eth0 in the guest netns, seen from QMP.
struct Nic {
    tap: File,
    link_up: bool,
    netdev_id: String,
    name: String,
    dhcp: Option<dhcp::DhcpClient>,
}

impl Machine for Nic {
    fn set_link(&mut self, name: &str, up: bool) -> Result<(), QmpError> {
        if name != self.name && name != self.netdev_id {
            return Err(QmpError { class: "DeviceNotFound", desc: format!("Device '{name}' not found") });
        }
        if up == self.link_up {
            return Ok(()); // no change, no event: as QEMU does
        }
        netdev::set_carrier(&self.tap, up).map_err(|e| QmpError::generic(e.to_string()))?;
        self.link_up = up;
        println!("link {}", if up { "up" } else { "down" });
        if let (true, Some(dhcp)) = (up, self.dhcp.as_mut()) {
            if let Err(e) = dhcp.start() {
                println!("dhcp error restart: {e}");
            }
        }
        Ok(())
    }

    fn rx_filter(&self, name: Option<&str>) -> Result<Value, QmpError> {
        match name {
            Some(n) if n == self.netdev_id => {
                return Err(QmpError::generic(format!("net client({n}) isn't a NIC")))
            }
            Some(n) if n != self.name => {
                return Err(QmpError::generic(format!("invalid net client name: {n}")))
            }
            _ => {}
        }
        let flags = netdev::flags("eth0").map_err(|e| QmpError::generic(e.to_string()))?;
        let mac = netdev::mac_address("eth0").map_err(|e| QmpError::generic(e.to_string()))?;
        // What QEMU 7.2 reports for a Linux guest's virtio-net once its driver is up
        // ("broadcast-allowed" really reports QEMU's nobcast flag, hence false).
        Ok(json!([{
            "name": self.name,
            "main-mac": mac,
            "promiscuous": flags & libc::IFF_PROMISC != 0,
            "multicast": if flags & libc::IFF_ALLMULTI != 0 { "all" } else { "normal" },
            "multicast-overflow": false,
            "multicast-table": netdev::multicast_macs("eth0"),
            "unicast": "normal",
            "unicast-overflow": false,
            "unicast-table": [],
            "vlan": "none",
            "vlan-table": [],
            "broadcast-allowed": false,
        }]))
    }
}

struct Relay {
    host: File,
    nic: Nic,
    qmp: Option<QmpServer>,
}

impl Relay {
    fn forward(&mut self, from_host: bool) -> io::Result<()> {
        let mut frame = [0u8; 65536];
        let (src, dst) = if from_host { (&self.host, &self.nic.tap) } else { (&self.nic.tap, &self.host) };
        let n = (&*src).read(&mut frame)?;
        if self.nic.link_up {
            let _ = (&*dst).write(&frame[..n]); // the other side is down: drop, as a cable would
        }
        Ok(())
    }

    fn run(&mut self, signals: &mut SignalFd) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds: Vec<BorrowedFd> = vec![self.host.as_fd(), self.nic.tap.as_fd(), signals.as_fd()];
            fds.extend(self.qmp.as_ref().map(QmpServer::fds).unwrap_or_default());
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
                if let Ok(Some(info)) = signals.read_signal() {
                    if info.ssi_signo != Signal::SIGCHLD as u32 {
                        return Ok(()); // SIGTERM or SIGINT
                    }
                    if let Some(dhcp) = self.nic.dhcp.as_mut() {
                        dhcp.reap();
                    }
                }
            }
            if let Some(qmp) = self.qmp.as_mut() {
                qmp.serve(&ready[3..], &mut self.nic);
                if qmp.quit {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Default)]
struct Options {
    mac: Option<String>,
    qmp: Option<String>,
    qmp_owner: Option<u32>,
    netdev_id: Option<String>,
    nic_id: Option<String>,
    dhcp: bool,
    hostname: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: tapguest TAP GUEST_NETNS [--mac MAC] [--qmp SOCKET [--qmp-owner UID]] [--netdev-id ID] \
         [--nic-id ID] [--dhcp [--hostname NAME]]"
    );
    exit(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if std::env::var_os(dhcp::HOOK_ENV).is_some() {
        return dhcp::hook(&args.next().unwrap_or_default());
    }
    let (mut positional, mut opts) = (Vec::new(), Options::default());
    while let Some(arg) = args.next() {
        let mut value = || Some(args.next().unwrap_or_else(|| usage()));
        match arg.as_str() {
            "--mac" => opts.mac = value(),
            "--qmp" => opts.qmp = value(),
            "--qmp-owner" => {
                opts.qmp_owner = Some(value().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()))
            }
            "--netdev-id" => opts.netdev_id = value(),
            "--nic-id" => opts.nic_id = value(),
            "--hostname" => opts.hostname = value(),
            "--dhcp" => opts.dhcp = true,
            a if a.starts_with('-') => usage(),
            _ => positional.push(arg),
        }
    }
    let [tap, guest] = <[String; 2]>::try_from(positional).unwrap_or_else(|_| usage());
    match relay(&tap, &guest, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapguest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let status = Command::new("ip").args(args).status()?;
    if !status.success() {
        return Err(io::Error::other(format!("ip {} failed", args.join(" "))));
    }
    Ok(())
}

fn relay(tap: &str, guest: &str, opts: Options) -> io::Result<()> {
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(signal);
    }
    mask.thread_block()?; // inherited by children: udhcpc gets an empty mask again
    let mut signals = SignalFd::new(&mask)?;
    let host = netdev::open_tap(tap)?;
    netdev::enter_netns(guest)?; // from here on, this process and its children live in GUEST
    let guest_tap = netdev::open_tap("eth0")?;
    if let Some(mac) = &opts.mac {
        ip(&["link", "set", "eth0", "address", mac])?;
    }
    let qmp = opts.qmp.as_deref().map(|path| QmpServer::bind(Path::new(path), opts.qmp_owner)).transpose()?;
    println!("relay ready"); // frames queue in the taps until the relay runs
    let mut dhcp = None;
    if opts.dhcp {
        ip(&["link", "set", "lo", "up"])?;
        ip(&["link", "set", "eth0", "up"])?;
        let mut client = dhcp::DhcpClient::new(opts.hostname);
        client.start()?;
        dhcp = Some(client);
    }
    let nic = Nic {
        tap: guest_tap,
        link_up: true,
        netdev_id: opts.netdev_id.unwrap_or_else(|| "n0".into()),
        name: opts.nic_id.unwrap_or_else(|| "virtio-net-pci.0".into()),
        dhcp,
    };
    Relay { host, nic, qmp }.run(&mut signals)
}

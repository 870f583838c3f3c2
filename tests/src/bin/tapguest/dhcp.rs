//! The guest's DHCP client: `busybox udhcpc` on eth0, with tapguest itself as its hook script
//! (run with [`HOOK_ENV`] set). The hook applies the lease as a distribution's script does and
//! prints one event line on stdout, which udhcpc shares with tapguest:
//!
//! ```text
//! dhcp bound 198.51.100.200/24 via 198.51.100.10 dns 198.51.100.1 domain example.test mtu 1500 lease 90 server 198.51.100.10
//! dhcp renew ...        (same fields)
//! dhcp deconfig | dhcp leasefail | dhcp nak
//! dhcp error EVENT: WHAT    (the lease could not be applied)
//! ```
//!
//! `-` stands for an option the server did not send; DNS servers are comma-separated.

use nix::sys::signal::SigSet;
use std::env;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};

/// Set in udhcpc's environment: a tapguest started with it is the hook.
pub const HOOK_ENV: &str = "TAPGUEST_UDHCPC_HOOK";

/// udhcpc as a guest's DHCP client that never gives up: 3 DISCOVERs 1 s apart, then after a
/// 1 s pause the next round, for as long as it runs (no -n, -q or -b).
pub struct DhcpClient {
    hostname: Option<String>,
    child: Option<Child>,
}

impl DhcpClient {
    pub fn new(hostname: Option<String>) -> DhcpClient {
        DhcpClient { hostname, child: None }
    }

    /// Starts udhcpc, or restarts it (a fresh DISCOVER, as a guest does when its link returns).
    pub fn start(&mut self) -> io::Result<()> {
        self.stop();
        let exe = env::current_exe()?;
        let mut cmd = Command::new("busybox");
        cmd.args(["udhcpc", "-f", "-i", "eth0", "-t", "3", "-T", "1", "-A", "1", "-s"]).arg(exe);
        if let Some(name) = &self.hostname {
            cmd.args(["-x", &format!("hostname:{name}")]);
        }
        cmd.env(HOOK_ENV, "1").stdin(Stdio::null());
        // SAFETY: only sigprocmask(2), which is async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // tapguest blocks the signals it reads from a signalfd; children inherit that.
                let empty = SigSet::empty();
                empty.thread_set_mask().map_err(io::Error::from)
            })
        };
        self.child = Some(cmd.spawn().map_err(|e| io::Error::other(format!("busybox udhcpc: {e}")))?);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// After a SIGCHLD: reports udhcpc's exit (it should run until stopped).
    pub fn reap(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            println!("dhcp exited {status}");
            self.child = None;
        }
    }
}

impl Drop for DhcpClient {
    fn drop(&mut self) {
        self.stop();
    }
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("ip {}: {}", args.join(" "), err.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// udhcpc's hook: `event` is argv[1], the lease is in the environment (ip, mask as a prefix
/// length, router, dns, domain, mtu, lease, serverid; interface).
pub fn hook(event: &str) -> ExitCode {
    match apply(event) {
        Ok(line) => {
            println!("dhcp {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("dhcp error {event}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn apply(event: &str) -> io::Result<String> {
    let dev = var("interface").unwrap_or_else(|| "eth0".into());
    match event {
        "deconfig" => {
            ip(&["-4", "addr", "flush", "dev", &dev])?;
            Ok(event.into())
        }
        "bound" | "renew" => {
            let address = var("ip").ok_or_else(|| io::Error::other("no address in the lease"))?;
            let cidr = format!("{address}/{}", var("mask").unwrap_or_else(|| "32".into()));
            let current = ip(&["-4", "-o", "addr", "show", "dev", &dev])?;
            if !current.contains(&format!(" {cidr} ")) {
                ip(&["-4", "addr", "flush", "dev", &dev])?;
                ip(&["addr", "add", &cidr, "dev", &dev])?;
            }
            if let Some(mtu) = var("mtu") {
                ip(&["link", "set", "dev", &dev, "mtu", &mtu])?;
            }
            let router = var("router").and_then(|r| r.split_whitespace().next().map(String::from));
            if let Some(gw) = &router {
                ip(&["route", "replace", "default", "via", gw, "dev", &dev, "onlink"])?;
            }
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let dns = var("dns").map(|d| d.split_whitespace().collect::<Vec<_>>().join(","));
            Ok(format!(
                "{event} {cidr} via {} dns {} domain {} mtu {} lease {} server {}",
                or_dash(router),
                or_dash(dns),
                or_dash(var("domain")),
                or_dash(var("mtu")),
                or_dash(var("lease")),
                or_dash(var("serverid"))
            ))
        }
        _ => Ok(event.into()),
    }
}

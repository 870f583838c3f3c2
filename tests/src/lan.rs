//! What the LAN side sees and does: pings and TCP from the LAN client, and moving the uplink
//! to another subnet (a roam, for the "kernel" uplink source).

use crate::cmd::{error, in_netns, wait_until};
use crate::world::{World, LAN_DEV, UPLINK};
use std::io;
use std::process::Stdio;
use std::time::Duration;

impl World {
    /// Re-addresses the uplink by hand, as a roam to another subnet would (for the "kernel"
    /// uplink source): the LAN side gets `.2` and the gateway in the new /24 (if missing), the
    /// uplink loses its old addresses and gets `new_cidr`, the default route goes via `new_gw`.
    /// Calling it with the original values moves it back.
    pub fn move_uplink(&self, new_cidr: &str, new_gw: &str) -> io::Result<()> {
        let (addr, prefix) =
            new_cidr.split_once('/').ok_or_else(|| error(format!("not a CIDR: {new_cidr}")))?;
        let net = addr.rsplit_once('.').ok_or_else(|| error(format!("not an IPv4 address: {addr}")))?.0;
        let present = self.ip(self.lan_ns(), &["-4", "-o", "addr", "show", "dev", LAN_DEV])?;
        for lan_addr in [format!("{net}.2"), new_gw.to_string()] {
            if !present.contains(&format!(" {lan_addr}/")) {
                let cidr = format!("{lan_addr}/{prefix}");
                self.ip(self.lan_ns(), &["addr", "add", &cidr, "dev", LAN_DEV])?;
            }
        }
        self.ip(self.host_ns(), &["-4", "addr", "flush", "dev", UPLINK])?;
        self.ip(self.host_ns(), &["addr", "add", new_cidr, "dev", UPLINK])?;
        self.ip(self.host_ns(), &["route", "replace", "default", "via", new_gw])?;
        Ok(())
    }

    /// Pings `addr` from the LAN client, once a try, for up to about 3 s.
    pub fn ping_from_lan(&self, addr: &str) -> bool {
        ping(self.lan_ns(), addr)
    }

    /// Connects from the LAN client to `addr:port` and returns what the server sent (trimmed),
    /// or None if the connection failed or nothing came back within 3 s.
    pub fn tcp_from_lan(&self, addr: &str, port: u16) -> Option<String> {
        let target = format!("TCP:{addr}:{port},connect-timeout=3");
        let out = self.exec_in(self.lan_ns(), &["socat", "-T3", "-", &target]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }
}

/// `busybox ping` (iputils is not installed here) once a try, for up to about 3 s.
pub(crate) fn ping(ns: &str, addr: &str) -> bool {
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || ping_once(ns, addr))
}

/// One `busybox ping` from netns `ns` to `addr`, waiting up to 1 s for the answer.
pub(crate) fn ping_once(ns: &str, addr: &str) -> bool {
    in_netns(ns, &["busybox", "ping", "-c1", "-W1", "-q", addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

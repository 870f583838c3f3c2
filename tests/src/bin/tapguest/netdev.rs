//! Taps, the guest netns, and what eth0 looks like (for QMP's query-rx-filter).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x400454d0;
const TUNSETCARRIER: libc::c_ulong = 0x400454e2;

pub fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An ifreq for interface `name`.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::other(format!("interface name too long: {name}")));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Attaches to (or creates) tap `name` in the current netns, without offloads: a tap that QEMU
/// used keeps QEMU's offloads, and without a vnet header we would read unfinished checksums.
pub fn open_tap(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let mut req = ifreq(name)?;
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

/// Turns the carrier of the tap behind `tap` on or off.
pub fn set_carrier(tap: &File, on: bool) -> io::Result<()> {
    let on: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads an int through the pointer.
    if unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETCARRIER as _, &on) } < 0 {
        return Err(os_err("TUNSETCARRIER"));
    }
    Ok(())
}

pub fn enter_netns(name: &str) -> io::Result<()> {
    let ns = File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("setns {name}: {e}")))
}

/// An interface request ioctl on `name` (in this thread's netns).
fn query(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: fd is a new, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIF* requests read and write a struct ifreq, which `req` is.
    if unsafe { libc::ioctl(socket.as_raw_fd(), request as _, &mut req) } < 0 {
        return Err(os_err(&format!("ioctl {request:#x} {name}")));
    }
    Ok(req)
}

/// The interface's MAC address, as `52:54:00:12:34:56`.
pub fn mac_address(name: &str) -> io::Result<String> {
    let req = query(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled in the ifru_hwaddr member.
    let bytes = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(bytes[..6].iter().map(|b| format!("{:02x}", *b as u8)).collect::<Vec<_>>().join(":"))
}

/// The interface's flags (IFF_*).
pub fn flags(name: &str) -> io::Result<i32> {
    let req = query(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled in the ifru_flags member.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// The multicast MACs the interface listens to (from /proc/net/dev_mcast of this netns).
pub fn multicast_macs(name: &str) -> Vec<String> {
    let table = fs::read_to_string("/proc/self/net/dev_mcast").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&name)).then(|| fields.get(4).copied()).flatten()
        })
        .map(|hex| {
            let pairs: Vec<String> =
                hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into()).collect();
            pairs.join(":")
        })
        .collect()
}

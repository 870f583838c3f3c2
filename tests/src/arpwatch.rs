//! What is said in ARP on a link: a thread inside a namespace of the World reads every ARP
//! frame that arrives on one device (an `AF_PACKET` socket), and sorts out RFC 5227 probes
//! (sender 0.0.0.0) and announcements (sender = target), until the watch is dropped.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cmd::error;

const ETH_P_ARP: u16 = 0x0806;
/// Ethernet header and an Ethernet/IPv4 ARP packet.
const FRAME_LEN: usize = 14 + 28;
/// How often the thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// One ARP packet seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpSeen {
    /// "Who has `0`?" with a zero sender address.
    Probe(Ipv4Addr),
    /// Gratuitous ARP: sender and target are both `0`.
    Announcement(Ipv4Addr),
    /// Anything else (ordinary requests and replies).
    Other { request: bool, sender: Ipv4Addr, target: Ipv4Addr },
}

/// A running capture; stops on Drop.
pub struct ArpWatch {
    seen: Arc<Mutex<Vec<ArpSeen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl crate::World {
    /// Starts reading the ARP packets that arrive on `dev` in netns `ns` (not those it sends).
    pub fn watch_arp(&self, ns: &str, dev: &str) -> io::Result<ArpWatch> {
        let (path, dev) = (format!("/run/netns/{ns}"), dev.to_owned());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, opened) = mpsc::channel();
        let (into, until) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || match open(&path, &dev) {
            Ok(socket) => {
                let _ = ready.send(Ok(()));
                read(&socket, &into, &until);
            }
            Err(e) => drop(ready.send(Err(e))),
        });
        let watch = ArpWatch { seen, stop, thread: Some(thread) };
        opened.recv().map_err(|_| error("the ARP watch thread ended"))??;
        Ok(watch)
    }
}

impl ArpWatch {
    /// Everything seen so far.
    pub fn seen(&self) -> Vec<ArpSeen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` until `wanted` was seen.
    pub fn wait_for(&self, wanted: ArpSeen, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.seen().contains(&wanted) {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Forgets what was seen.
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An ARP socket on `dev`, from inside the netns at `path` (this thread stays there).
fn open(path: &str, dev: &str) -> io::Result<OwnedFd> {
    let ns = std::fs::File::open(path)?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| error(format!("setns {path}: {e}")))?;
    let index = nix::net::if_::if_nametoindex(dev).map_err(io::Error::from)?;
    let protocol = i32::from(ETH_P_ARP.to_be());
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = ETH_P_ARP.to_be();
    at.sll_ifindex = i32::try_from(index).map_err(io::Error::other)?;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `at` is a valid sockaddr_ll of `len` bytes.
    if unsafe { libc::bind(socket.as_raw_fd(), std::ptr::from_ref(&at).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let timeout = libc::timeval { tv_sec: 0, tv_usec: POLL.as_micros() as libc::suseconds_t };
    let size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    let option = std::ptr::from_ref(&timeout).cast();
    // SAFETY: SO_RCVTIMEO takes a timeval, which `option` points to.
    if unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, option, size) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn read(socket: &OwnedFd, seen: &Mutex<Vec<ArpSeen>>, stop: &AtomicBool) {
    let mut frame = [0u8; 128];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `frame` and `from` are valid for the lengths given.
        let got = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_mut(&mut from).cast(),
                &mut len,
            )
        };
        let Ok(got) = usize::try_from(got) else { continue }; // timed out (or interrupted)
        if from.sll_pkttype != libc::PACKET_OUTGOING {
            if let Some(arp) = parse(&frame[..got]) {
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(arp);
            }
        }
    }
}

/// An Ethernet frame carrying an Ethernet/IPv4 ARP packet.
fn parse(frame: &[u8]) -> Option<ArpSeen> {
    if frame.len() < FRAME_LEN
        || frame[12..14] != ETH_P_ARP.to_be_bytes()
        || frame[14..20] != [0, 1, 8, 0, 6, 4]
    {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    let (request, sender, target) = (frame[20..22] == [0, 1], ip(28), ip(38));
    Some(match (request, sender) {
        (true, Ipv4Addr::UNSPECIFIED) => ArpSeen::Probe(target),
        (true, sender) if sender == target => ArpSeen::Announcement(target),
        _ => ArpSeen::Other { request, sender, target },
    })
}

//! Watching IPv6 on a link: an `AF_PACKET` capture on a device of a namespace (both directions:
//! what the device receives and what its netns sends), and a Router Advertisement parser of
//! the test crate's own (RFC 4861, RFC 8106), bounds-checked: malformed RAs are errors.
//!
//! ```no_run
//! # fn demo(world: &vmnet_tests::World) -> std::io::Result<()> {
//! use vmnet_tests::ndp::Capture;
//! let capture = Capture::open(world.host_ns(), "vmt-web")?; // queues frames from now on
//! let ra = capture.next_router_advert(std::time::Duration::from_secs(5))?;
//! # Ok(()) }
//! ```

use crate::cmd::error;
use crate::hostile::{internet_checksum, ETH_P_IPV6};
use crate::ip6::Prefix6;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

mod parse;
pub use parse::{parse_router_advert, Dnssl, PrefixInfo, Rdnss, RouterAdvert};

/// A captured Ethernet frame carrying IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Sent by the capturing netns (PACKET_OUTGOING), not received.
    pub outgoing: bool,
}

/// IPv6 frames on one device of one netns, queued by the kernel from [`Capture::open`] on
/// (8 MiB of them; open it shortly before what it should see).
pub struct Capture {
    socket: OwnedFd,
    what: String,
}

impl Capture {
    /// Opens the capture on `dev` in netns `ns` (the socket stays in that netns).
    pub fn open(ns: &str, dev: &str) -> io::Result<Capture> {
        let name = dev.to_owned();
        let socket = crate::hostile::in_netns(ns, move || {
            let index = nix::net::if_::if_nametoindex(name.as_str()).map_err(io::Error::from)?;
            // Protocol 0 until bound: no frames of other devices get queued.
            // SAFETY: plain socket(2); the result is checked and owned right away.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a new descriptor that nothing else owns.
            let socket = unsafe { OwnedFd::from_raw_fd(raw) };
            // Room for a while of traffic (frames that do not fit are dropped): 8 MiB.
            let size: libc::c_int = 8 << 20;
            // SAFETY: SO_RCVBUFFORCE reads an int of the size given.
            let set = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    std::ptr::from_ref(&size).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if set < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
            let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            at.sll_family = libc::AF_PACKET as u16;
            // All protocols: only ETH_P_ALL sockets see what the netns sends (the kernel's
            // ptype_all); IPv6 is picked in `receive`.
            at.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            at.sll_ifindex = i32::try_from(index).map_err(|_| error("interface index out of range"))?;
            // SAFETY: `at` is a valid sockaddr_ll of the size given.
            let bound = unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    std::ptr::from_ref(&at).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if bound < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(socket)
        })
        .map_err(|e| error(format!("capture on {dev} in {ns}: {e}")))?;
        Ok(Capture { socket, what: format!("{dev} in {ns}") })
    }

    /// The next frame for which `wanted` holds, waiting up to `timeout`; None if none came.
    pub fn next_frame_where(
        &self,
        timeout: Duration,
        mut wanted: impl FnMut(&Frame) -> bool,
    ) -> io::Result<Option<Frame>> {
        self.next_picked(timeout, |frame| Ok(wanted(&frame).then_some(frame)))
    }

    /// The next Router Advertisement (either direction), waiting up to `timeout`. A malformed
    /// one is an error.
    pub fn next_router_advert(&self, timeout: Duration) -> io::Result<Option<RouterAdvert>> {
        self.next_router_advert_where(timeout, |_| true)
    }

    /// The next Router Advertisement for which `wanted` holds.
    pub fn next_router_advert_where(
        &self,
        timeout: Duration,
        mut wanted: impl FnMut(&RouterAdvert) -> bool,
    ) -> io::Result<Option<RouterAdvert>> {
        self.next_picked(timeout, |frame| {
            let parsed = parse_router_advert(&frame.bytes)
                .map_err(|e| error(format!("malformed RA on {}: {e}", self.what)))?;
            let ra = parsed.map(|ra| RouterAdvert { outgoing: frame.outgoing, ..ra });
            Ok(ra.filter(|ra| wanted(ra)))
        })
    }

    /// The first `Some` that `pick` makes of the IPv6 frames of the next `timeout`.
    fn next_picked<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(Frame) -> io::Result<Option<T>>,
    ) -> io::Result<Option<T>> {
        let end = Instant::now() + timeout;
        loop {
            let Some(frame) = self.receive(end.saturating_duration_since(Instant::now()))? else {
                return Ok(None);
            };
            if frame.bytes.get(12..14) != Some(&ETH_P_IPV6.to_be_bytes()[..]) {
                continue;
            }
            if let Some(picked) = pick(frame)? {
                return Ok(Some(picked));
            }
        }
    }

    /// The Router Advertisements of the next `timeout`, up to `max` of them.
    pub fn router_adverts(&self, timeout: Duration, max: usize) -> io::Result<Vec<RouterAdvert>> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < max {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_router_advert(left)? {
                Some(ra) => out.push(ra),
                None => break,
            }
        }
        Ok(out)
    }

    /// The next frame (of any protocol) within `timeout`.
    fn receive(&self, timeout: Duration) -> io::Result<Option<Frame>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut buf = vec![0u8; 65_536];
        // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                std::ptr::from_mut(&mut from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
        }
        buf.truncate(usize::try_from(n).unwrap_or(0));
        Ok(Some(Frame { bytes: buf, outgoing: from.sll_pkttype == libc::PACKET_OUTGOING }))
    }
}

impl RouterAdvert {
    /// The prefix information option for `prefix`, if any.
    pub fn prefix(&self, prefix: Prefix6) -> Option<&PrefixInfo> {
        self.prefixes.iter().find(|p| p.prefix == prefix.network && p.len == prefix.len)
    }

    /// Every RDNSS server, in order.
    pub fn dns_servers(&self) -> Vec<Ipv6Addr> {
        self.rdnss.iter().flat_map(|r| r.servers.iter().copied()).collect()
    }

    /// Every DNSSL domain, in order.
    pub fn search_domains(&self) -> Vec<String> {
        self.dnssl.iter().flat_map(|d| d.domains.iter().cloned()).collect()
    }
}

/// Whether the ICMPv6 checksum of `icmp` (from `source` to `destination`) is right.
pub(crate) fn icmpv6_checksum_ok(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> bool {
    let length = u32::try_from(icmp.len()).unwrap_or(u32::MAX);
    let pseudo =
        [&source.octets()[..], &destination.octets(), &length.to_be_bytes(), &[0, 0, 0, 58]].concat();
    internet_checksum(&[&pseudo[..], icmp].concat()) == 0
}

//! Persistent taps through /dev/net/tun ioctls.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

const TUN_DEVICE: &str = "/dev/net/tun";

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
nix::ioctl_write_int_bad!(tun_set_persist, libc::TUNSETPERSIST);
nix::ioctl_write_int_bad!(tun_set_owner, libc::TUNSETOWNER);

/// A failed tap operation, naming the tap.
#[derive(Debug, thiserror::Error)]
#[error("tap {tap}: {operation}: {source}")]
pub struct TapError {
    pub tap: String,
    pub operation: &'static str,
    #[source]
    pub source: io::Error,
}

/// Creates the persistent tap `name` owned by `owner` (IFF_TAP|IFF_NO_PI, TUNSETOWNER,
/// TUNSETPERSIST), or takes over an existing unattached one and sets its owner. Fails with
/// EBUSY while a process (QEMU) holds the tap.
pub fn ensure_persistent_tap(name: &str, owner: u32) -> Result<(), TapError> {
    let fail = |operation| move |source| TapError { tap: name.into(), operation, source };
    let request = ifreq(name).map_err(fail("name"))?;
    let device =
        OpenOptions::new().read(true).write(true).open(TUN_DEVICE).map_err(fail("open /dev/net/tun"))?;
    let fd = device.as_raw_fd();
    // SAFETY: `fd` is an open tun descriptor and `request` a valid ifreq that outlives the calls.
    unsafe {
        tun_set_iff(fd, &request).map_err(io::Error::from).map_err(fail("TUNSETIFF"))?;
        tun_set_owner(fd, owner as libc::c_ulong as _)
            .map_err(io::Error::from)
            .map_err(fail("TUNSETOWNER"))?;
        tun_set_persist(fd, 1).map_err(io::Error::from).map_err(fail("TUNSETPERSIST"))?;
    }
    Ok(())
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name length"));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    Ok(request)
}

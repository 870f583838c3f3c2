//! QEMU guests (TCG, no KVM needed): the installed Debian kernel with a busybox initramfs
//! (see `guest_image.rs`) on a virtio-net NIC attached to an existing tap in the World's host
//! netns, as a user's VM would be. The guest runs DHCP on eth0 and restarts it when its carrier
//! comes back, answers ping and HTTP on :80, and prints markers on its serial console
//! (`<dir>/q<n>-console.log`): `GUEST-READY`, `GUEST-DHCP ...` (see [`crate::lease`]),
//! `GUEST-LINK down|up`. Boot to a lease takes about 5-10 s: keep such tests few, and name them
//! `slow_*`.

use crate::cmd::{error, in_netns, tail};
use crate::lease::Lease;
use crate::world::World;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub struct QemuGuest<'w> {
    world: &'w World,
    name: String,
    pid: u32,
    tap: String,
    mac: String,
    qmp: PathBuf,
    console_log: PathBuf,
    console_socket: PathBuf,
    console: Mutex<Option<UnixStream>>,
    /// How far the console log has been consumed by waits.
    read_pos: Mutex<usize>,
    checks: AtomicUsize,
}

impl World {
    /// Boots a QEMU guest on the existing tap `tap` (in the host netns) with NIC MAC `mac`
    /// and its QMP socket at `qmp`. Panics if QEMU cannot be started.
    #[track_caller]
    pub fn qemu_guest(&self, tap: &str, mac: &str, qmp: &Path) -> QemuGuest<'_> {
        match self.try_qemu_guest(tap, mac, qmp) {
            Ok(guest) => guest,
            Err(e) => panic!("cannot start a QEMU guest on {tap}: {e}"),
        }
    }

    /// Builds the initramfs and starts QEMU; does not wait for the guest to boot.
    /// The NIC is `-device virtio-net-pci,netdev=n0,mac=MAC` without an id, so QEMU names it
    /// `virtio-net-pci.0`; the netdev id is `n0`.
    pub fn try_qemu_guest(&self, tap: &str, mac: &str, qmp: &Path) -> io::Result<QemuGuest<'_>> {
        let n = self.guests.fetch_add(1, Ordering::Relaxed);
        let name = format!("q{n}");
        let t0 = Instant::now();
        let kernel = crate::guest_image::find_kernel()?;
        let initrd = self.dir().join(format!("{name}.initrd"));
        crate::guest_image::build(&kernel, &initrd)?;
        let console_log = self.dir().join(format!("{name}-console.log"));
        let console_socket = self.dir().join(format!("{name}.console"));
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let kernel_image =
            path(&crate::guest_image::boot_image(&kernel, &self.dir().join(format!("{name}.vmlinux")))?);
        let initrd = path(&initrd);
        let append = format!("console=ttyS0 panic=-1 quiet mitigations=off ghostname={name}");
        let chardev = format!(
            "socket,id=con,path={},server=on,wait=off,logfile={}",
            path(&console_socket),
            path(&console_log)
        );
        let qmp_arg = format!("unix:{},server=on,wait=off", path(qmp));
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
        let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
        #[rustfmt::skip]
        let argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-nodefaults",
            "-no-user-config", "-no-reboot",
            "-kernel", &kernel_image, "-initrd", &initrd, "-append", &append,
            "-chardev", &chardev, "-serial", "chardev:con",
            "-qmp", &qmp_arg,
            "-netdev", &netdev, "-device", &device,
        ];
        let log = File::create(self.dir().join(format!("{name}.log")))?;
        let mut cmd = in_netns(self.host_ns(), &argv);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let (pid, _) = self.procs.spawn(&format!("qemu {name}"), cmd)?;
        let prepared = t0.elapsed().as_secs_f64();
        eprintln!(
            "[{}] {name}: QEMU on {tap}, kernel {} (boot files in {prepared:.3}s)",
            self.id(),
            kernel.version
        );
        Ok(QemuGuest {
            world: self,
            name,
            pid,
            tap: tap.to_string(),
            mac: mac.to_string(),
            qmp: qmp.to_path_buf(),
            console_log,
            console_socket,
            console: Mutex::new(None),
            read_pos: Mutex::new(0),
            checks: AtomicUsize::new(0),
        })
    }
}

impl QemuGuest<'_> {
    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn tap(&self) -> &str {
        &self.tap
    }

    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// QEMU's QMP socket.
    pub fn qmp_socket(&self) -> &Path {
        &self.qmp
    }

    /// The serial console's log file.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// Waits for a console line containing `text` after those consumed by earlier waits, and
    /// returns it. Fails at once if QEMU exits.
    pub fn wait_for_console(&self, text: &str, timeout: Duration) -> io::Result<String> {
        let mut pos = self.read_pos.lock().unwrap_or_else(|p| p.into_inner());
        let end = Instant::now() + timeout;
        loop {
            let log = fs::read(&self.console_log).unwrap_or_default();
            let mut start = (*pos).min(log.len());
            while let Some(newline) = log[start..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&log[start..start + newline]).trim_end().to_string();
                start += newline + 1;
                if line.contains(text) {
                    *pos = start;
                    return Ok(line);
                }
            }
            if let Some(status) = self.world.procs.try_wait(self.pid)? {
                return Err(self.failure(&format!("QEMU exited ({status}) before `{text}`")));
            }
            if Instant::now() >= end {
                return Err(self.failure(&format!("no `{text}` on the console within {timeout:?}")));
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn failure(&self, what: &str) -> io::Error {
        let console = String::from_utf8_lossy(&fs::read(&self.console_log).unwrap_or_default()).into_owned();
        let qemu =
            fs::read_to_string(self.world.dir().join(format!("{}.log", self.name))).unwrap_or_default();
        error(format!("{}: {what}\nconsole:\n{}\nqemu: {}", self.name, tail(&console, 20), qemu.trim()))
    }

    /// Waits for the next `GUEST-DHCP bound` marker and returns the lease.
    pub fn wait_for_lease(&self, timeout: Duration) -> io::Result<Lease> {
        let line = self.wait_for_console("GUEST-DHCP bound ", timeout)?;
        let at = line.find("GUEST-DHCP ").map_or(0, |i| i + "GUEST-DHCP ".len());
        Lease::parse(&line[at..])
    }

    /// Types `line` into the guest's console shell.
    pub fn console_send(&self, line: &str) -> io::Result<()> {
        let mut console = self.console.lock().unwrap_or_else(|p| p.into_inner());
        if console.is_none() {
            let stream = UnixStream::connect(&self.console_socket)?;
            // QEMU also writes the console to the socket: drain it, or the guest's output stalls.
            let mut drain = stream.try_clone()?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
            });
            *console = Some(stream);
        }
        let stream = console.as_mut().ok_or_else(|| error("console not connected"))?;
        stream.write_all(format!("{line}\n").as_bytes())
    }

    /// Runs shell `command` on the console and tells whether it succeeded (within `timeout`).
    pub fn console_check(&self, command: &str, timeout: Duration) -> io::Result<bool> {
        let n = 1000 + self.checks.fetch_add(1, Ordering::Relaxed);
        // The console echoes what is typed: the marker is computed, so only the result matches.
        let marker = format!("CHECK-{n}-");
        let script = format!(
            "if {command} >/dev/null 2>&1; then echo CHECK-$(({n}))-ok; else echo CHECK-$(({n}))-failed; fi"
        );
        self.console_send(&script)?;
        let line = self.wait_for_console(&marker, timeout)?;
        Ok(line.contains(&format!("{marker}ok")))
    }

    /// Stops QEMU (also done on Drop).
    pub fn stop(&self) -> io::Result<()> {
        self.world.procs.stop(self.pid).map(drop)
    }
}

impl Drop for QemuGuest<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("vmnet-tests: cannot stop QEMU {}: {e}", self.name);
        }
    }
}

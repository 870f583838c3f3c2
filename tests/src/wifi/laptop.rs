//! Boots the Wi-Fi laptop VM once (QEMU under TCG, this machine's root read-only over 9p with a
//! tmpfs overlay, systemd inside), lets the in-VM runner play every scenario in sequence, and
//! returns what it reported. QEMU is killed by its pid and the temporary directory removed
//! whatever happens (`VMNET_WIFI_KEEP=1` keeps the directory, for debugging).

use super::image::{self, Binaries};
use super::protocol::{Report, Scenario};
use crate::cmd::{error, tail};
use crate::procs::Procs;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the whole VM run may take before QEMU is killed (env `VMNET_WIFI_TIMEOUT`, seconds).
const TIMEOUT: Duration = Duration::from_secs(480);
/// Programs the VM needs from this machine's root, and the Debian package of each.
const TOOLS: [(&str, &str); 11] = [
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/sbin/hostapd", "hostapd"),
    ("/usr/sbin/wpa_supplicant", "wpasupplicant"),
    ("/usr/sbin/iw", "iw"),
    ("/usr/sbin/NetworkManager", "network-manager"),
    ("/usr/sbin/dnsmasq", "dnsmasq-base"),
    ("/usr/lib/polkit-1/polkitd", "polkitd"),
    ("/usr/bin/socat", "socat"),
    ("/usr/sbin/modprobe", "kmod"),
    ("/lib/systemd/systemd", "systemd"),
    ("/usr/bin/dbus-daemon", "dbus-daemon"),
];

/// The outcome of one VM run.
pub struct Outcome {
    /// Why the VM could not run at all (not root, a tool or kernel missing, QEMU failed).
    pub cannot_run: Option<String>,
    pub report: Report,
    /// Host-clock marks (seconds since QEMU started): initramfs, systemd, runner, end.
    pub host_times: Vec<(String, f64)>,
    /// The end of the serial console, for failure messages.
    pub console_tail: String,
    /// The end of vmnetd's log in the VM.
    pub vmnetd_tail: String,
}

impl Outcome {
    fn failed(reason: String) -> Outcome {
        Outcome {
            cannot_run: Some(reason),
            report: Report::default(),
            host_times: Vec::new(),
            console_tail: String::new(),
            vmnetd_tail: String::new(),
        }
    }

    /// Boots the laptop VM, runs every scenario and powers it off.
    pub fn run(bins: io::Result<Binaries>) -> Outcome {
        if !crate::is_root() {
            return Outcome::failed("the Wi-Fi laptop VM needs root (run tests/run.sh)".into());
        }
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(path, _)| !Path::new(path).exists())
            .map(|(path, package)| format!("{path} (package {package})"))
            .collect();
        if !missing.is_empty() {
            return Outcome::failed(format!("missing: {} — see tests/apt-packages", missing.join(", ")));
        }
        let bins = match bins {
            Ok(bins) => bins,
            Err(e) => return Outcome::failed(format!("binaries: {e}")),
        };
        sweep_stale_dirs();
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("vmnet-wifi-{}-{stamp}", std::process::id()));
        let outcome = match fs::create_dir_all(&dir) {
            Ok(()) => boot(&dir, &bins).unwrap_or_else(|e| Outcome::failed(e.to_string())),
            Err(e) => Outcome::failed(format!("cannot create {}: {e}", dir.display())),
        };
        if std::env::var_os("VMNET_WIFI_KEEP").is_some() {
            eprintln!("vmnet-wifi: kept {}", dir.display());
        } else if let Err(e) = fs::remove_dir_all(&dir) {
            eprintln!("vmnet-wifi: cannot remove {}: {e}", dir.display());
        }
        outcome
    }

    /// Ok if `scenario` ran and passed, else a message that says why (with the logs' ends).
    pub fn scenario(&self, name: &str) -> Result<&Scenario, String> {
        if let Some(reason) = &self.cannot_run {
            return Err(format!("the Wi-Fi laptop VM could not run: {reason}"));
        }
        let logs = format!(
            "\n--- console (end) ---\n{}\n--- vmnetd log (end) ---\n{}",
            self.console_tail, self.vmnetd_tail
        );
        match self.report.scenarios.get(name) {
            Some(s) if s.passed() => Ok(s),
            Some(s) => Err(format!("scenario {name} failed:\n{}{logs}", s.summary())),
            None => Err(format!(
                "scenario {name} did not run (scenarios that ran: {:?}; runner finished: {}){logs}",
                self.report.order, self.report.done
            )),
        }
    }

    /// Every timing, host and VM, as a table.
    pub fn timings(&self) -> String {
        let mut text = String::from("Wi-Fi laptop VM, host clock (s since QEMU started):\n");
        for (label, seconds) in &self.host_times {
            text.push_str(&format!("  {label:<45} {seconds:8.2} s\n"));
        }
        text.push_str("measured in the VM:\n");
        text.push_str(&self.report.timings());
        text
    }
}

/// Removes the directories of earlier runs whose test process is gone (killed before it could
/// clean up; its QEMU died with it).
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid =
            name.strip_prefix("vmnet-wifi-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            eprintln!("vmnet-wifi: removing {name}, left by a test process that is gone");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Console lines that mark a stage, for the host-clock timings.
const MARKS: [(&str, &str); 4] = [
    ("vmnet-wifi-init: initramfs up", "initramfs"),
    ("vmnet-wifi-init: switching to systemd", "systemd (switch_root)"),
    ("vmnet-wifi: runner started", "runner started (systemd, D-Bus and NM up)"),
    ("VMNET-WIFI done", "runner done"),
];

fn boot(dir: &Path, bins: &Binaries) -> io::Result<Outcome> {
    let share = dir.join("share");
    fs::create_dir_all(&share)?;
    image::stage_share(&share, bins)?;
    let kernel = image::find_kernel()?;
    let initrd = dir.join("initramfs.cpio");
    image::build_initramfs(&kernel, &initrd)?;
    let vmlinux = crate::guest_image::boot_image(&kernel, &dir.join("vmlinux"))?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let append = "console=ttyS0 panic=-1 loglevel=4 mitigations=off systemd.unit=vmnet-wifi.target \
                  systemd.show_status=false";
    let root_fs = "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap".to_string();
    let share_fs = format!("local,id=share,path={},security_model=none,multidevs=remap", path(&share));
    let (kernel_arg, initrd_arg) = (path(&vmlinux), path(&initrd));
    #[rustfmt::skip]
    let argv = [
        "-accel", "tcg,thread=multi", "-M", "pc", "-smp", "2", "-m", "1536",
        "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot", "-serial", "stdio",
        "-kernel", &kernel_arg, "-initrd", &initrd_arg, "-append", append,
        "-fsdev", &root_fs, "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
        "-fsdev", &share_fs, "-device", "virtio-9p-pci,fsdev=share,mount_tag=vmnetwifi",
    ];
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(dir.join("qemu.log"))?);
    // QEMU dies with the thread that waits for it (a killed test leaves no VM behind).
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let procs = Procs::new(dir.join("pids"));
    let t0 = Instant::now();
    let (pid, stdout) = procs.spawn("qemu (Wi-Fi laptop)", cmd)?;
    eprintln!("vmnet-wifi: QEMU {pid} booting kernel {} (log {})", kernel.version, dir.display());
    let stdout = stdout.ok_or_else(|| error("QEMU's stdout is not piped"))?;
    let console_path = dir.join("console.log");
    let reader = {
        let mut log = fs::File::create(&console_path)?;
        std::thread::spawn(move || {
            let mut marks: Vec<(String, f64)> = Vec::new();
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                let at = t0.elapsed().as_secs_f64();
                let _ = writeln!(log, "[{at:8.3}] {line}");
                for (text, label) in MARKS {
                    if line.contains(text) && !marks.iter().any(|(l, _)| l == label) {
                        marks.push((label.to_string(), at));
                    }
                }
                if line.contains("vmnet-wifi") || line.contains("VMNET-WIFI") {
                    eprintln!("[{at:8.3}] {line}");
                }
            }
            marks
        })
    };
    let timeout = std::env::var("VMNET_WIFI_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TIMEOUT, Duration::from_secs);
    let status = procs.wait_exit(pid, timeout)?;
    let timed_out = status.is_none();
    procs.stop_all();
    let mut host_times = reader.join().unwrap_or_default();
    host_times.push(("QEMU exited".into(), t0.elapsed().as_secs_f64()));
    let console = fs::read_to_string(&console_path).unwrap_or_default();
    let results = fs::read_to_string(share.join("results")).unwrap_or_default();
    let vmnetd_log = fs::read_to_string(share.join("vmnetd.log")).unwrap_or_default();
    let mut outcome = Outcome {
        cannot_run: None,
        report: Report::parse(&results),
        host_times,
        console_tail: tail(&console, 60),
        vmnetd_tail: tail(&vmnetd_log, 40),
    };
    if timed_out {
        outcome.console_tail.push_str(&format!("\n(QEMU killed after {timeout:?})"));
    }
    if outcome.report.order.is_empty() {
        let qemu = fs::read_to_string(dir.join("qemu.log")).unwrap_or_default();
        outcome.cannot_run = Some(format!(
            "the VM reported nothing (QEMU {}); qemu: {}\nconsole:\n{}",
            status.map_or("killed on timeout".to_string(), |s| s.to_string()),
            qemu.trim(),
            outcome.console_tail
        ));
    }
    Ok(outcome)
}

/// The binaries, found as the other tests find them; `runner` and `tapguest` come from
/// cargo (`env!("CARGO_BIN_EXE_...")` in the test).
impl Binaries {
    pub fn find(runner: &str, tapguest: &str) -> io::Result<Binaries> {
        Ok(Binaries {
            runner: PathBuf::from(runner),
            tapguest: PathBuf::from(tapguest),
            vmnetd: crate::vmnetd::vmnetd_binary()?,
            vmnetctl: crate::vmnetd::vmnetctl_binary()?,
            dispatcher: crate::vmnetd::dispatcher_binary()?,
        })
    }
}

//! The QEMU test guest's boot files, from what Debian packages installed on this machine:
//! the kernel `/boot/vmlinuz-<version>` (package `linux-image-*-cloud-amd64` is preferred, else
//! any `linux-image-*`), its virtio-net modules from `/lib/modules/<version>`, and busybox from
//! `busybox-static`. The initramfs is an uncompressed newc cpio, which the kernel accepts as is;
//! its scripts are in `tests/initramfs/`.

use crate::cmd::error;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Modules the guest loads; their dependencies (from `modules.dep`) come first.
const MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];
/// Overrides the kernel version (a `/boot/vmlinuz-<version>` with modules).
pub const KERNEL_ENV: &str = "VMNET_GUEST_KERNEL";
const BUSYBOX: &str = "/bin/busybox";

const SCRIPTS: [(&str, &str); 4] = [
    ("init", include_str!("../initramfs/init")),
    ("bin/dhcp-start", include_str!("../initramfs/dhcp-start")),
    ("bin/linkwatch", include_str!("../initramfs/linkwatch")),
    ("etc/udhcpc.script", include_str!("../initramfs/udhcpc.script")),
];

/// A kernel to boot and the directory of its modules.
pub struct Kernel {
    pub version: String,
    pub image: PathBuf,
    pub modules: PathBuf,
}

/// The newest installed kernel that has its modules, a cloud one if there is one (they boot
/// faster: fewer drivers), or the version named by env `VMNET_GUEST_KERNEL`.
pub fn find_kernel() -> io::Result<Kernel> {
    let kernel = |version: &str| Kernel {
        version: version.to_string(),
        image: PathBuf::from(format!("/boot/vmlinuz-{version}")),
        modules: PathBuf::from(format!("/lib/modules/{version}")),
    };
    let complete = |k: &Kernel| k.image.is_file() && k.modules.join("modules.dep").is_file();
    if let Ok(version) = std::env::var(KERNEL_ENV) {
        let k = kernel(&version);
        return if complete(&k) {
            Ok(k)
        } else {
            Err(error(format!("{KERNEL_ENV}={version}: no {} with modules.dep", k.image.display())))
        };
    }
    let mut found: Vec<Kernel> = fs::read_dir("/boot")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(kernel))
        .filter(complete)
        .collect();
    found.sort_by_key(|k| (k.version.contains("-cloud-"), version_key(&k.version)));
    found.pop().ok_or_else(|| {
        error("no kernel with modules in /boot and /lib/modules: install linux-image-amd64 (tests/apt-packages)")
    })
}

/// What QEMU's `-kernel` should load: when the kernel can boot through PVH (`CONFIG_PVH=y`),
/// its bzImage's payload uncompressed to `out` (an ELF that QEMU loads itself; under TCG this
/// saves the 4-8 s the kernel takes to decompress itself), else the bzImage as installed.
pub fn boot_image(kernel: &Kernel, out: &Path) -> io::Result<PathBuf> {
    let config = fs::read_to_string(format!("/boot/config-{}", kernel.version)).unwrap_or_default();
    if !config.lines().any(|l| l == "CONFIG_PVH=y") {
        return Ok(kernel.image.clone());
    }
    let bzimage = fs::read(&kernel.image)?;
    let Some(payload) = bzimage_payload(&bzimage) else {
        return Ok(kernel.image.clone());
    };
    let tool: &[&str] = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => &["xz", "-dc", "--single-stream"],
        [0x28, 0xb5, 0x2f, 0xfd, ..] => &["zstd", "-dcq"],
        [0x1f, 0x8b, ..] => &["gzip", "-dc"],
        _ => return Ok(kernel.image.clone()),
    };
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()
        .map_err(|e| error(format!("cannot run {} for the guest kernel: {e}", tool[0])))?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(payload));
    let status = child.wait()?;
    if !status.success() || !matches!(written, Some(Ok(()))) {
        return Err(error(format!("{} could not unpack {}", tool[0], kernel.image.display())));
    }
    let mut magic = [0u8; 4];
    io::Read::read_exact(&mut fs::File::open(out)?, &mut magic)?;
    if &magic != b"\x7fELF" {
        return Err(error(format!("the payload of {} is not an ELF", kernel.image.display())));
    }
    Ok(out.to_path_buf())
}

/// The compressed kernel inside an x86 bzImage (boot protocol 2.08+: `payload_offset` and
/// `payload_length` of the setup header), without the 4-byte size the build appends to it.
fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    let u16_at = |o: usize| image.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at =
        |o: usize| image.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if image.get(0x202..0x206) != Some(b"HdrS") || u16_at(0x206)? < 0x208 {
        return None;
    }
    let setup_sectors = match image.get(0x1f1)? {
        0 => 4,
        n => usize::from(*n),
    };
    let start = (setup_sectors + 1) * 512 + u32_at(0x248)?;
    image.get(start..start + u32_at(0x24c)?.checked_sub(4)?)
}

/// "6.1.0-56-amd64" -> [6, 1, 0, 56]: numeric parts, for ordering versions.
pub(crate) fn version_key(version: &str) -> Vec<u64> {
    version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// The module files (relative to the modules dir) to load, in load order.
fn module_load_order(modules_dep: &str, wanted: &[&str]) -> io::Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    for name in wanted {
        let line = modules_dep
            .lines()
            .find(|l| l.split_once(':').is_some_and(|(path, _)| module_name(path) == *name))
            .ok_or_else(|| error(format!("no module {name} in modules.dep")))?;
        let (path, deps) = line.split_once(':').unwrap_or((line, ""));
        // modules.dep lists all dependencies, each after those that need it: load them reversed.
        for p in deps.split_whitespace().rev().chain([path]) {
            if !order.iter().any(|o| o == p) {
                order.push(p.to_string());
            }
        }
    }
    Ok(order)
}

/// "kernel/drivers/net/virtio_net.ko.xz" -> "virtio_net".
pub(crate) fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split_once(".ko").map_or(file, |(name, _)| name)
}

/// A module's contents, uncompressed (busybox insmod takes plain ELF).
fn read_module(path: &Path) -> io::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("ko") => return fs::read(path),
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return Err(error(format!("unknown module format: {name}"))),
    };
    let out = crate::cmd::output(Command::new(tool).args(["-dc", &name]))?;
    if !out.status.success() {
        return Err(error(format!("{tool} -dc {name} failed")));
    }
    Ok(out.stdout)
}

/// Whether the ELF file `data` needs a program interpreter (is dynamically linked).
fn is_dynamic_elf(data: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| data.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|i| u32_at(phoff as usize + i * phentsize) == Some(PT_INTERP))
}

/// busybox from `busybox-static`, checked to be a static binary (an initramfs has no libc).
fn static_busybox() -> io::Result<Vec<u8>> {
    let busybox = fs::read(BUSYBOX).map_err(|e| error(format!("{BUSYBOX}: {e} (install busybox-static)")))?;
    if !busybox.starts_with(b"\x7fELF") || is_dynamic_elf(&busybox) {
        return Err(error(format!("{BUSYBOX} is not a static binary: install busybox-static")));
    }
    Ok(busybox)
}

/// A busybox initramfs for `kernel` so far: `dirs`, `/dev/console`, `/bin/busybox`, the
/// `modules` (after their dependencies) in `/lib/modules` and their load order in `/etc/modules`.
pub(crate) fn busybox_cpio(kernel: &Kernel, dirs: &[&str], modules: &[&str]) -> io::Result<Cpio> {
    let busybox = static_busybox()?;
    let dep = fs::read_to_string(kernel.modules.join("modules.dep"))?;
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "etc", "lib", "lib/modules"].iter().chain(dirs) {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    let mut load_list = String::new();
    for path in module_load_order(&dep, modules)? {
        let name = format!("{}.ko", module_name(&path));
        cpio.file(&format!("lib/modules/{name}"), 0o644, &read_module(&kernel.modules.join(&path))?);
        load_list.push_str(&name);
        load_list.push('\n');
    }
    cpio.file("etc/modules", 0o644, load_list.as_bytes());
    Ok(cpio)
}

/// Writes `cpio` to `out` (through a rename: a half-written image is never booted).
pub(crate) fn write_cpio(cpio: Cpio, out: &Path) -> io::Result<()> {
    let tmp = out.with_extension("tmp");
    fs::File::create(&tmp)?.write_all(&cpio.finish())?;
    fs::rename(&tmp, out)
}

/// Writes the guest's initramfs (for `kernel`) to `out`.
pub fn build(kernel: &Kernel, out: &Path) -> io::Result<()> {
    let mut cpio = busybox_cpio(kernel, &["proc", "root", "run", "sys", "tmp", "www"], &MODULES)?;
    for (path, text) in SCRIPTS {
        cpio.file(path, 0o755, text.as_bytes());
    }
    cpio.file("www/index.html", 0o644, b"vmnet test guest\n");
    write_cpio(cpio, out)
}

/// A newc ("070701") cpio archive, as the kernel unpacks it: owner root, mtime 0.
#[derive(Default)]
pub(crate) struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) {
        self.inode += 1;
        let fields = [self.inode, mode, 0, 0, 1, 0, body.len() as u32, 0, 0, rdev.0, rdev.1];
        let mut header = String::from("070701");
        for f in fields.into_iter().chain([name.len() as u32 + 1, 0]) {
            header.push_str(&format!("{f:08x}"));
        }
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while self.data.len() % 4 != 0 {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), b"");
    }

    pub(crate) fn file(&mut self, name: &str, perm: u32, body: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), body);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), b"");
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), b"");
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_order_puts_dependencies_first() {
        let dep = "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n\
                   kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko \
                   kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko \
                   kernel/drivers/virtio/virtio_ring.ko\n";
        let order = module_load_order(dep, &["virtio", "virtio_net"]).expect("order");
        let names: Vec<&str> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(names, ["virtio_ring", "virtio", "failover", "net_failover", "virtio_net"]);
        assert!(module_load_order(dep, &["e1000"]).is_err());
    }

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("6.1.0-56-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-1-amd64"));
    }

    #[test]
    fn cpio_entries_are_newc_aligned_and_terminated() {
        let mut cpio = Cpio::default();
        cpio.file("bin/x", 0o755, b"abc");
        let data = cpio.finish();
        let header = String::from_utf8_lossy(&data[..110]);
        // magic, ino 1, mode 0100755, uid, gid, nlink 1, mtime, size 3, 4 device fields,
        // name size 6 ("bin/x" and its NUL), check
        let expected = "070701 00000001 000081ed 00000000 00000000 00000001 00000000 00000003 \
                        00000000 00000000 00000000 00000000 00000006 00000000";
        assert_eq!(header, expected.split_whitespace().collect::<String>());
        assert_eq!(&data[110..116], b"bin/x\0");
        assert_eq!(&data[116..119], b"abc", "name padded to a multiple of 4 (110 + 6 = 116)");
        assert_eq!(&data[119..120], b"\0");
        assert_eq!(&data[120 + 110..120 + 120], b"TRAILER!!!");
        assert_eq!(data.len() % 4, 0);
    }
}

//! The laptop VM's boot files and the test's share: the installed Debian kernel (one whose
//! modules have `mac80211_hwsim`), a busybox initramfs (`tests/wifi/init`) with the 9p and
//! overlay modules, and the share's `root/` (files laid over the VM's root: systemd units,
//! NM configuration, the project's D-Bus policy, polkit action and rule, vmnetd's default
//! configuration, passwd/group with the test user) and `hide` (paths removed in the VM).

use crate::cmd::error;
use crate::guest_image::{busybox_cpio, module_name, version_key, write_cpio};
use crate::users::TestUsers;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Overrides the laptop's kernel version (a `/boot/vmlinuz-<version>` with mac80211_hwsim).
pub const KERNEL_ENV: &str = "VMNET_WIFI_KERNEL";
/// Modules the initramfs loads (after their dependencies) to mount the 9p root and the overlay.
const MODULES: [&str; 4] = ["virtio_pci", "9pnet_virtio", "9p", "overlay"];
const INIT: &str = include_str!("../../wifi/init");
/// Where the in-VM runner is linked in the overlay (a symlink to the binary cargo built).
pub const RUNNER_IN_VM: &str = "/usr/local/libexec/vmnet-wifi-laptop";

/// Paths removed from the VM's view of this machine's root: an installed vmnet package (its
/// unit, D-Bus activation, dispatcher plugin, state) would run instead of the tree's vmnetd,
/// and the machine's NM profiles and state would change what NM does.
const HIDE: [&str; 10] = [
    "/usr/lib/systemd/system/vmnetd.service",
    "/lib/systemd/system/vmnetd.service",
    "/etc/systemd/system/multi-user.target.wants/vmnetd.service",
    "/usr/share/dbus-1/system-services/org.vmnet.service",
    "/usr/lib/NetworkManager/dispatcher.d/90-vmnet",
    "/etc/NetworkManager/dispatcher.d",
    "/etc/NetworkManager/system-connections",
    "/var/lib/NetworkManager",
    "/var/lib/vmnet",
    "/etc/vmnet",
];

const TARGET: &str = "[Unit]\n\
    Description=vmnet on real Wi-Fi (basic system, D-Bus, NetworkManager, the test runner)\n\
    Requires=basic.target\n\
    After=basic.target\n\
    Wants=dbus.service NetworkManager.service vmnet-wifi.service\n\
    AllowIsolate=yes\n";

/// NM: keyfile profiles only, the test's own interfaces unmanaged, no connectivity checks or
/// DNS changes, no random scan MACs (the APs' logs stay readable).
const NM_CONF: &str = "[main]\nplugins=keyfile\ndns=none\nrc-manager=unmanaged\n\
    [keyfile]\nunmanaged-devices=interface-name:vmt-*;interface-name:veth*;interface-name:br-*\n\
    [device]\nwifi.scan-rand-mac-address=no\n[connectivity]\nenabled=false\n";

/// Masks Debian's `D /tmp`: it would empty /tmp, which is this machine's over 9p (slow).
const TMPFILES_TMP: &str = "# empty: the VM's /tmp is the host's, seen through the overlay\n";

/// The binaries the VM runs, as cargo built them.
pub struct Binaries {
    pub runner: PathBuf,
    pub vmnetd: PathBuf,
    pub vmnetctl: PathBuf,
    pub dispatcher: PathBuf,
    pub tapguest: PathBuf,
}

/// The newest installed kernel with `mac80211_hwsim` among its modules (or `$VMNET_WIFI_KERNEL`).
pub fn find_kernel() -> io::Result<crate::guest_image::Kernel> {
    let has_hwsim = |version: &str| {
        fs::read_to_string(format!("/lib/modules/{version}/modules.dep")).is_ok_and(|dep| {
            dep.lines().any(|l| l.split(':').next().is_some_and(|p| module_name(p) == "mac80211_hwsim"))
        }) && Path::new(&format!("/boot/vmlinuz-{version}")).is_file()
    };
    let kernel = |version: &str| crate::guest_image::Kernel {
        version: version.to_string(),
        image: PathBuf::from(format!("/boot/vmlinuz-{version}")),
        modules: PathBuf::from(format!("/lib/modules/{version}")),
    };
    if let Ok(version) = std::env::var(KERNEL_ENV) {
        return if has_hwsim(&version) {
            Ok(kernel(&version))
        } else {
            Err(error(format!("{KERNEL_ENV}={version}: no /boot/vmlinuz-{version} with mac80211_hwsim")))
        };
    }
    let mut versions: Vec<String> = fs::read_dir("/boot")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|v| has_hwsim(v))
        .collect();
    versions.sort_by_key(|v| version_key(v));
    let version = versions.pop().ok_or_else(|| {
        error("no installed kernel has mac80211_hwsim: install linux-image-amd64 (tests/apt-packages)")
    })?;
    Ok(kernel(&version))
}

/// Writes the initramfs for `kernel` to `out`.
pub fn build_initramfs(kernel: &crate::guest_image::Kernel, out: &Path) -> io::Result<()> {
    let mut cpio = busybox_cpio(kernel, &["proc", "sys"], &MODULES)?;
    cpio.file("init", 0o755, INIT.as_bytes());
    write_cpio(cpio, out)
}

fn write(root: &Path, path: &str, mode: u32, text: &[u8]) -> io::Result<()> {
    let file = root.join(path.trim_start_matches('/'));
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&file, text)?;
    fs::set_permissions(&file, fs::Permissions::from_mode(mode))
}

fn copy(root: &Path, path: &str, from: &Path) -> io::Result<()> {
    let text = fs::read(from).map_err(|e| error(format!("cannot read {}: {e}", from.display())))?;
    write(root, path, 0o644, &text)
}

/// The runner's unit: its environment names the binaries; it powers the VM off when it ends.
fn runner_unit(bins: &Binaries, tester_uid: u32) -> String {
    let env = |name: &str, path: &Path| format!("Environment=\"{name}={}\"\n", path.display());
    format!(
        "[Unit]\nDescription=vmnet on real Wi-Fi: the scenarios of tests/tests/wifi.rs\n\
         After=dbus.service NetworkManager.service\n\
         SuccessAction=poweroff-immediate\nFailureAction=poweroff-immediate\n\
         [Service]\nType=exec\nExecStart={RUNNER_IN_VM} /mnt/vmnet-wifi\n\
         {}{}{}{}Environment=VMNET_WIFI_TESTER_UID={tester_uid}\n\
         StandardOutput=journal+console\nStandardError=journal+console\n\
         RuntimeMaxSec=400\n",
        env("VMNET_WIFI_VMNETD", &bins.vmnetd),
        env("VMNET_WIFI_VMNETCTL", &bins.vmnetctl),
        env("VMNET_WIFI_DISPATCHER", &bins.dispatcher),
        env("VMNET_WIFI_TAPGUEST", &bins.tapguest),
    )
}

/// Fills `share` (the VM's /mnt/vmnet-wifi): `root/`, `hide`. Returns the test user's uid.
pub fn stage_share(share: &Path, bins: &Binaries) -> io::Result<u32> {
    let root = share.join("root");
    let packaging = crate::workspace_root().join("packaging");
    fs::create_dir_all(root.join("etc"))?;
    let users = TestUsers::write(&root.join("etc"))?;
    for file in [&users.passwd, &users.group] {
        fs::set_permissions(file, fs::Permissions::from_mode(0o644))?;
    }
    write(&root, "/etc/systemd/system/vmnet-wifi.target", 0o644, TARGET.as_bytes())?;
    write(&root, "/etc/systemd/system/vmnet-wifi.service", 0o644, runner_unit(bins, users.uid).as_bytes())?;
    write(&root, "/etc/NetworkManager/conf.d/99-vmnet-wifi.conf", 0o644, NM_CONF.as_bytes())?;
    write(&root, "/etc/tmpfiles.d/tmp.conf", 0o644, TMPFILES_TMP.as_bytes())?;
    // What the package installs, from the tree: the default configuration, the bus policy,
    // the polkit action and the group rule.
    copy(&root, "/etc/vmnet/vmnetd.toml", &packaging.join("vmnetd.toml"))?;
    copy(&root, "/usr/share/dbus-1/system.d/org.vmnet.conf", &packaging.join("dbus/org.vmnet.conf"))?;
    copy(&root, "/usr/share/polkit-1/actions/org.vmnet.policy", &packaging.join("polkit/org.vmnet.policy"))?;
    copy(&root, "/usr/share/polkit-1/rules.d/50-vmnet.rules", &packaging.join("polkit/50-vmnet.rules"))?;
    let link = root.join(RUNNER_IN_VM.trim_start_matches('/'));
    fs::create_dir_all(link.parent().ok_or_else(|| error("runner path"))?)?;
    std::os::unix::fs::symlink(&bins.runner, &link)?;
    fs::write(share.join("hide"), HIDE.join("\n") + "\n")?;
    Ok(users.uid)
}

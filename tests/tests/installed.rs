//! The installed Debian package, as users get it. `.ci/run` builds and installs the package,
//! then runs these (`cargo test -p vmnet-tests --test installed -- --ignored`); they are ignored
//! otherwise because they test /usr and /etc, not the checkout.
//!
//! - On a private bus that has only the installed D-Bus policy, activation file, polkit actions
//!   and group rule: `vmnetctl status` D-Bus-activates /usr/sbin/vmnetd, a member of group
//!   vmnet adds, lists and removes a guest without a password, others are refused, the
//!   dispatcher plugin reaches it.
//! - `make install` installs the same files as the package.
//! - Under a real systemd (a container of this machine): `vmnetctl status` activates
//!   vmnetd.service, which runs as user vmnetd with four capabilities inside its sandbox and
//!   still makes taps, routes and sysctls.
//! - The README's first command, `packaging/install.sh` (given the package CI built, through
//!   its `--deb` option), in such a container without NetworkManager and without Wi-Fi: it
//!   follows the default route's interface and ends with `vmnetctl status` online.
//! - The installed GNOME Shell extension runs in a real headless GNOME Shell, and opening its
//!   menu D-Bus-activates the installed vmnetd.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use vmnet_tests::shell::{ExtensionFrom, ENABLED};
use vmnet_tests::{kernel_config, require_root, workspace_root, Container, World, NOBODY, UPLINK};

const ACTIVATION_FILE: &str = "/usr/share/dbus-1/system-services/org.vmnet.service";
const DISPATCHER: &str = "/usr/lib/NetworkManager/dispatcher.d/90-vmnet";

/// Panics unless the vmnet package is installed.
fn require_package() {
    for package in ["vmnet", "vmnet-desktop"] {
        let out =
            Command::new("dpkg-query").args(["-W", "-f", "${Status}", package]).output().expect("dpkg-query");
        let status = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            status, "install ok installed",
            "install the packages first: make deb, apt install ./target/debian/vmnet{{,-desktop}}_*.deb"
        );
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// vmnetctl as `uid` on the World's bus; panics unless it succeeds. Returns stdout.
fn vmnetctl_ok(world: &World, uid: Option<u32>, args: &[&str]) -> String {
    let out = world.vmnetctl_as(uid, args).expect("run vmnetctl");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "vmnetctl {args:?} as {uid:?} failed ({}): {stderr}", out.status);
    stdout
}

#[test]
#[ignore = "tests the installed package: .ci/run installs it and runs these"]
fn installed_files_work_together_on_a_private_bus() {
    require_root!();
    require_package();
    let world = World::try_new_installed("installed").expect("world");
    let tester = world.tester_uid();
    // The installed activation file as it is; vmnetd's /etc/vmnet and /var/lib/vmnet are the
    // World's (see Packaging::Installed).
    fs::copy(ACTIVATION_FILE, world.bus().service_dir().join("org.vmnet.service")).expect("activation file");
    let config = kernel_config(&world, "[arp]\nprobe_ms = 0\n");
    fs::write(world.dir().join("etc-vmnet/vmnetd.toml"), config).expect("config");
    assert!(!world.bus().has_owner("org.vmnet"));

    // Anyone's `status` starts it.
    let status = vmnetctl_ok(&world, Some(tester), &["status"]);
    assert!(status.starts_with(&format!("State:        online\nUplink:       {UPLINK}\n")), "{status}");
    let dbus = ["org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"];
    let args = [&["call"][..], &dbus, &["GetConnectionUnixProcessID", "s", "org.vmnet"]].concat();
    let (reply, _) = text(&world.busctl_as(None, &args).expect("busctl"));
    let pid = reply.trim().trim_start_matches("u ").to_owned();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("vmnetd's executable");
    assert_eq!(exe, Path::new("/usr/sbin/vmnetd"));

    // A member of group vmnet manages guests without a password (the installed rule).
    let added = vmnetctl_ok(&world, Some(tester), &["add", "web", "--json", "--no-ask-password"]);
    let added: Value = serde_json::from_str(&added).expect("JSON");
    assert_eq!(added["address"], "198.51.100.200", "{added}");
    assert_eq!(world.taps(), ["vmt-web"]);
    assert_eq!(world.tap_owner("vmt-web"), i64::from(tester));
    // The installed rt_protos entry names vmnetd's routes.
    let routes = world.ip(world.host_ns(), &["-4", "route", "show", "proto", "vmnet"]).expect("ip route");
    assert!(routes.contains("198.51.100.200 dev vmt-web"), "{routes}");
    let state = vmnet_tests::vmnetd::saved_state(&world.dir().join("var-lib-vmnet")).expect("state");
    assert_eq!(state["guests"]["web"]["owner"], tester, "{state}");
    let listed = vmnetctl_ok(&world, Some(NOBODY), &["list"]);
    assert!(listed.lines().nth(1).is_some_and(|l| l.starts_with("web ")), "{listed}");

    // Others are refused, plainly.
    let out = world.vmnetctl_as(Some(NOBODY), &["add", "db", "--no-ask-password"]).expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.starts_with("vmnetctl: not authorized: "), "{stderr}");

    // The dispatcher plugin nudges it.
    let out = Command::new(DISPATCHER)
        .args([UPLINK, "up"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", world.bus_address())
        .output()
        .expect("run the dispatcher plugin");
    let (_, log) = text(&out);
    assert!(out.status.success() && log.contains(": vmnetd resynced ("), "{log}");

    vmnetctl_ok(&world, Some(tester), &["remove", "web", "--no-ask-password"]);
    assert!(world.taps().is_empty());
}

/// Paths made comparable: relative, and man pages without the ".gz" the package adds.
fn normalized(paths: impl Iterator<Item = String>) -> BTreeSet<String> {
    paths.map(|p| p.trim_start_matches('/').trim_end_matches(".gz").to_owned()).collect()
}

/// The files below `root`, relative to it.
fn files_below(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files
}

#[test]
#[ignore = "tests the installed package: .ci/run installs it and runs these"]
fn make_install_installs_what_the_package_installs() {
    require_package();
    let dest = std::env::temp_dir().join(format!("vmnet-make-install-{}", std::process::id()));
    // The release binaries are there (the package was built from them); CARGO=true keeps make
    // from running cargo inside cargo test.
    let out = Command::new("make")
        .arg("-C")
        .arg(workspace_root())
        .args(["install", "CARGO=true", &format!("DESTDIR={}", dest.display())])
        .output()
        .expect("run make");
    let made = normalized(files_below(&dest).into_iter());
    let _ = fs::remove_dir_all(&dest);
    assert!(out.status.success(), "make install: {}", text(&out).1);

    let out = Command::new("dpkg").args(["-L", "vmnet", "vmnet-desktop"]).output().expect("dpkg -L");
    let (listed, _) = text(&out);
    // What only a Debian package has.
    let debian_only = ["copyright", "changelog.Debian", "lintian/overrides/vmnet"];
    let packaged = normalized(
        listed
            .lines()
            .filter(|p| Path::new(p).is_file() && !debian_only.iter().any(|d| p.contains(d)))
            .map(str::to_owned),
    );
    assert_eq!(made, packaged);
}

#[test]
#[ignore = "tests the installed package: .ci/run installs it and runs these"]
fn vmnetd_service_runs_as_user_vmnetd_in_its_sandbox_under_systemd() {
    require_root!();
    require_package();
    let container = Container::boot("unit").expect("boot a systemd container");
    let sh = |script: &str| container.sh(script).unwrap_or_else(|e| panic!("{e}"));
    // A Wi-Fi stand-in, the kernel source on it, and a user in group vmnet.
    sh("ip link add wlan0 type veth peer name lan0 && ip addr add 198.51.100.10/24 dev wlan0 && \
        ip link set lan0 up && ip link set wlan0 up");
    sh("printf '[uplink]\\nsource = \"kernel\"\\ninterface = \"wlan0\"\\nnameservers = [\"198.51.100.1\"]\\n' \
        > /etc/vmnet/vmnetd.toml");
    sh("useradd --user-group --groups vmnet vmtester");
    let as_tester = |args: &str| sh(&format!("runuser -u vmtester -- vmnetctl {args}"));

    // D-Bus activation through systemd.
    let status = as_tester("status");
    assert!(status.starts_with("State:        online\nUplink:       wlan0\n"), "{status}");
    let pid = sh("systemctl show --property MainPID --value vmnetd.service");
    let process = sh(&format!("cat /proc/{}/status", pid.trim()));
    let field = |name: &str| {
        process
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    assert_eq!(field("Uid:"), Some(sh("id -u vmnetd").trim().to_owned()), "{process}");
    // CAP_DAC_OVERRIDE (1), CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    assert_eq!(field("CapEff:").as_deref(), Some("0000000000003402"), "{process}");

    // It still does its work: a tap for the tester, the route, the sysctls, the state file.
    let added: Value = serde_json::from_str(&as_tester("add web --json --no-ask-password")).expect("JSON");
    assert_eq!(added["address"], "198.51.100.200", "{added}");
    assert_eq!(sh("cat /sys/class/net/vmt-web/owner"), sh("id -u vmtester"));
    assert!(sh("ip -4 route show proto vmnet").contains("198.51.100.200 dev vmt-web"));
    let sysctls = "/proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/neigh/wlan0/proxy_delay /proc/sys/net/ipv6/conf/vmt-web/accept_ra";
    assert_eq!(sh(&format!("cat {sysctls}")), "1\n0\n0\n", "the unit may write IPv4 and IPv6 sysctls");
    assert_eq!(sh("ip -4 -N neigh show proxy"), "198.51.100.200 dev wlan0 proxy proto 118 \n");
    assert_eq!(sh("stat -c %U /var/lib/vmnet/state.json /var/lib/vmnet/journal.jsonl"), "vmnetd\nvmnetd\n");
    // Its nftables tables, written over netlink with CAP_NET_ADMIN alone, and their counters
    // read back for anyone.
    let tables = sh("nft list ruleset");
    assert!(tables.contains("table inet vmnet") && tables.contains("table arp vmnet"), "{tables}");
    assert!(tables.contains("\"vmt-web\" . 198.51.100.200"), "{tables}");
    let verbose = as_tester("status --verbose");
    assert!(verbose.contains(" spoofed_source: IPv4 from a tap"), "{verbose}");
    as_tester("remove web --no-ask-password");
    assert_eq!(sh("cat /proc/sys/net/ipv4/ip_forward"), "0\n", "restored with the last guest");
    assert_eq!(sh("nft list ruleset"), "", "no table is left");

    sh("systemctl stop vmnetd.service");
    let state = container.exec(&["systemctl", "is-failed", "vmnetd.service"]).expect("systemctl");
    assert_eq!(text(&state).0, "inactive\n", "a clean stop");
    let journal = sh("journalctl --unit vmnetd.service --no-pager --output cat");
    assert!(!journal.contains("ERROR") && !journal.contains("WARN"), "{journal}");
}

/// The vmnet package `make deb` built (packaging/check-package.sh builds it before these tests).
fn built_package() -> std::path::PathBuf {
    let dir = workspace_root().join("target/debian");
    let debs: Vec<_> =
        fs::read_dir(&dir).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    // vmnet_*.deb; vmnet-desktop_*.deb is the desktop applets' package.
    let vmnet = |p: &std::path::PathBuf| {
        p.extension().is_some_and(|e| e == "deb")
            && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmnet_"))
    };
    let mut debs: Vec<_> = debs.into_iter().filter(vmnet).collect();
    assert_eq!(debs.len(), 1, "expected one package in {} (make deb): {debs:?}", dir.display());
    debs.remove(0)
}

#[test]
#[ignore = "tests the installed package: .ci/run installs it and runs these"]
fn install_sh_without_networkmanager_or_wifi_follows_the_default_route() {
    require_root!();
    // The package built, not the one installed: the container starts without it.
    let deb = built_package();
    let container = Container::boot("install").expect("boot a systemd container");
    let sh = |script: &str| container.sh(script).unwrap_or_else(|e| panic!("{e}"));
    // A wired machine: no Wi-Fi interface, the default route on eth0, and no NetworkManager
    // (this machine's root has it installed, and installing a package can start it: masked).
    sh("systemctl mask --now NetworkManager.service NetworkManager-wait-online.service");
    sh("ip link add eth0 type veth peer name lan0 && ip link set lan0 up && ip link set eth0 up && \
        ip addr add 192.0.2.10/24 dev eth0 && ip route add default via 192.0.2.1 dev eth0");
    assert_eq!(sh("ls -d /sys/class/net/*/wireless 2>/dev/null || true"), "");
    let nm = container.exec(&["busctl", "status", "org.freedesktop.NetworkManager"]).expect("busctl");
    assert!(!nm.status.success(), "NetworkManager runs in the container");
    // As a new user has it: the package not installed yet; the script and the package copied in.
    sh("dpkg --purge vmnet-desktop vmnet");
    let src = container.root().join("opt/vmnet-src");
    fs::create_dir_all(src.join("packaging")).expect("mkdir");
    for file in ["packaging/install.sh", "packaging/vmnetd.toml"] {
        fs::copy(workspace_root().join(file), src.join(file)).expect("copy into the container");
    }
    fs::copy(&deb, src.join("vmnet.deb")).expect("copy the package");

    let out = container
        .exec(&["/opt/vmnet-src/packaging/install.sh", "--deb", "/opt/vmnet-src/vmnet.deb"])
        .expect("run install.sh");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "install.sh failed ({}):\n{stdout}\n{stderr}", out.status);
    let chosen = "install.sh: no NetworkManager: /etc/vmnet/vmnetd.toml now follows eth0 through rtnetlink";
    assert!(stdout.contains(chosen), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("State:        online\nUplink:       eth0\nHost address: 192.0.2.10 "),
        "{stdout}"
    );
    let config = sh("cat /etc/vmnet/vmnetd.toml");
    assert!(config.contains("source = \"kernel\"") && config.contains("interface = \"eth0\""), "{config}");
    assert_eq!(sh("systemctl is-active vmnetd.service"), "active\n");
}

#[test]
#[ignore = "tests the installed package: .ci/run installs it and runs these"]
fn installed_gnome_shell_extension_activates_vmnetd_when_its_menu_opens() {
    require_root!();
    require_package();
    let world = World::try_new_installed("instshell").expect("world");
    fs::copy(ACTIVATION_FILE, world.bus().service_dir().join("org.vmnet.service")).expect("activation file");
    let config = kernel_config(&world, "[arp]\nprobe_ms = 0\n");
    fs::write(world.dir().join("etc-vmnet/vmnetd.toml"), config).expect("config");
    let shell =
        world.start_gnome_shell_with(world.tester_uid(), ExtensionFrom::Installed).expect("gnome-shell");
    let (state, error) = shell.wait_for_extensions().expect("extensions");
    assert_eq!(state, ENABLED, "{error}; {}", shell.log_tail());
    let status = |shell: &vmnet_tests::GnomeShell<'_>| shell.vmnet_menu().expect("menu")["status"].clone();
    assert_eq!(status(&shell), "vmnetd is not running");
    assert!(!world.bus().has_owner("org.vmnet"), "the shell's start must not start vmnetd");
    shell.open_vmnet_menu().expect("open the menu");
    let online = "Online: 198.51.100.0/24, gateway 198.51.100.10";
    let started = std::time::Instant::now();
    while status(&shell) != online && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status(&shell), online, "{}", shell.log_tail());
    assert!(world.bus().has_owner("org.vmnet"));
}

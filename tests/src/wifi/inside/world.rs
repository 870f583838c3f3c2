//! The world inside the laptop VM: three `mac80211_hwsim` radios (wlan1 in netns `home`, wlan2
//! in netns `office`, wlan0 the laptop's), hostapd WPA2-PSK and dnsmasq per AP, the VM's own
//! NetworkManager, vmnetd, `vmnetctl watch`, and the netns guests (`guest`, `guest6`). The VM is
//! the test's own machine, so these fixed names collide with nothing.

use super::lines::Lines;
use crate::cmd::{error, in_netns, output, run, wait_until};
use crate::procs::Procs;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The laptop's station interface, managed by NM.
pub const WLAN: &str = "wlan0";
/// Both APs' WPA2 passphrase.
pub const PSK: &str = "vmnet-wifi-secret";
/// Where the runner keeps its files in the VM (tmpfs).
pub const RUN_DIR: &str = "/run/vmnet-wifi";

/// An access point: its radio in its own netns, hostapd on it, dnsmasq for DHCP and SLAAC RAs.
pub struct Ap {
    pub ns: &'static str,
    pub iface: &'static str,
    pub ssid: &'static str,
    /// NM's profile for it on the laptop.
    pub profile: &'static str,
    pub channel: u8,
    /// The first three octets of its /24; the AP itself is `.1`.
    pub net: &'static str,
    /// The first three groups of its /64; the AP itself is `::1`.
    pub net6: &'static str,
}

pub const HOME: Ap = Ap {
    ns: "home",
    iface: "wlan1",
    ssid: "vmnet-home",
    profile: "vmnet-home",
    channel: 1,
    net: "198.51.100",
    net6: "2001:db8:1",
};
pub const OFFICE: Ap = Ap {
    ns: "office",
    iface: "wlan2",
    ssid: "vmnet-office",
    profile: "vmnet-office",
    channel: 6,
    net: "203.0.113",
    net6: "2001:db8:2",
};

impl Ap {
    pub fn address(&self) -> String {
        format!("{}.1", self.net)
    }

    pub fn subnet(&self) -> String {
        format!("{}.0/24", self.net)
    }

    /// The AP's own IPv6 address: router, DNS server and the LAN host that pings guests.
    pub fn address6(&self) -> String {
        format!("{}::1", self.net6)
    }

    pub fn prefix6(&self) -> String {
        format!("{}::/64", self.net6)
    }
}

/// Paths the host put in the runner's environment (see `image.rs`).
pub struct Bins {
    pub vmnetd: PathBuf,
    pub vmnetctl: PathBuf,
    pub dispatcher: PathBuf,
    pub tapguest: PathBuf,
}

pub struct Laptop {
    pub procs: Procs,
    pub bins: Bins,
    /// The share (`/mnt/vmnet-wifi`): logs for the host.
    pub out: PathBuf,
    pub tester: u32,
    /// hostapd's pid per AP namespace.
    pub hostapd: Vec<(&'static str, u32)>,
    pub watch: Option<Lines>,
    /// What scenario `ipv6` leaves for `ipv6-roam`.
    pub roam6: Option<super::ipv6::Roam6>,
}

fn env_path(name: &str) -> io::Result<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).ok_or_else(|| error(format!("{name} is not set")))
}

/// `ip -4 -o addr show dev DEV` in netns `ns` (None: the laptop's): the first address/prefix.
pub fn ipv4(ns: Option<&str>, dev: &str) -> Option<String> {
    let args = ["-4", "-o", "addr", "show", "dev", dev];
    let text = match ns {
        Some(ns) => crate::cmd::ip(ns, &args).ok()?,
        None => run(Command::new("ip").args(args)).ok()?,
    };
    text.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(str::to_string)
}

impl Laptop {
    pub fn new(out: &Path) -> io::Result<Laptop> {
        fs::create_dir_all(RUN_DIR)?;
        let tester = std::env::var("VMNET_WIFI_TESTER_UID")
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| error("VMNET_WIFI_TESTER_UID is not set"))?;
        Ok(Laptop {
            procs: Procs::new(Path::new(RUN_DIR).join("pids")),
            bins: Bins {
                vmnetd: env_path("VMNET_WIFI_VMNETD")?,
                vmnetctl: env_path("VMNET_WIFI_VMNETCTL")?,
                dispatcher: env_path("VMNET_WIFI_DISPATCHER")?,
                tapguest: env_path("VMNET_WIFI_TAPGUEST")?,
            },
            out: out.to_path_buf(),
            tester,
            hostapd: Vec::new(),
            watch: None,
            roam6: None,
        })
    }

    /// A log file on the share.
    pub fn log(&self, name: &str) -> io::Result<fs::File> {
        fs::OpenOptions::new().create(true).append(true).open(self.out.join(name))
    }

    /// Starts `argv` as a process of the runner (in netns `ns` if given), output to `log`.
    pub fn spawn(&self, name: &str, ns: Option<&str>, argv: &[&str], log: &str) -> io::Result<u32> {
        let mut cmd = match ns {
            Some(ns) => in_netns(ns, argv),
            None => {
                let mut cmd = Command::new(argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
        };
        let file = self.log(log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        Ok(self.procs.spawn(name, cmd)?.0)
    }

    /// Loads mac80211_hwsim with three radios and moves wlan1 to `home`, wlan2 to `office`
    /// (radios created in one netns share one medium, wherever they are moved).
    pub fn radios(&self) -> io::Result<()> {
        run(Command::new("modprobe").args(["mac80211_hwsim", "radios=3"]))?;
        let present = || Path::new("/sys/class/net/wlan2/phy80211").exists();
        if !wait_until(Duration::from_secs(10), Duration::from_millis(50), present) {
            return Err(error("mac80211_hwsim made no wlan2 within 10 s"));
        }
        for ap in [&HOME, &OFFICE] {
            run(Command::new("ip").args(["netns", "add", ap.ns]))?;
            crate::cmd::ip(ap.ns, &["link", "set", "lo", "up"])?;
            let phy = fs::read_to_string(format!("/sys/class/net/{}/phy80211/name", ap.iface))?;
            run(Command::new("iw").args(["phy", phy.trim(), "set", "netns", "name", ap.ns]))?;
        }
        Ok(())
    }

    /// hostapd (WPA2-PSK) and dnsmasq (DHCP .100-.150, router .1; RAs for SLAAC only with
    /// RDNSS `::1`, every 10 s, router lifetime 30 min) for `ap`.
    pub fn start_ap(&mut self, ap: &Ap) -> io::Result<()> {
        let conf = Path::new(RUN_DIR).join(format!("hostapd-{}.conf", ap.ns));
        let text = format!(
            "interface={}\ndriver=nl80211\nssid={}\nhw_mode=g\nchannel={}\nwpa=2\nwpa_key_mgmt=WPA-PSK\n\
             rsn_pairwise=CCMP\nwpa_passphrase={PSK}\nctrl_interface={RUN_DIR}/hostapd-{}\n",
            ap.iface, ap.ssid, ap.channel, ap.ns
        );
        fs::write(&conf, text)?;
        crate::cmd::ip(ap.ns, &["addr", "add", &format!("{}/24", ap.address()), "dev", ap.iface])?;
        // The router takes no RAs; its address stays while hostapd takes the radio down to
        // make it an AP.
        for (key, value) in [("accept_ra", "0"), ("accept_dad", "0"), ("keep_addr_on_down", "1")] {
            let assignment = format!("net.ipv6.conf.{}.{key}={value}", ap.iface);
            run(&mut in_netns(ap.ns, &["sysctl", "-qw", &assignment]))?;
        }
        let cidr6 = format!("{}/64", ap.address6());
        crate::cmd::ip(ap.ns, &["-6", "addr", "add", &cidr6, "dev", ap.iface, "nodad"])?;
        self.start_hostapd(ap)?;
        let range = format!("--dhcp-range={0}.100,{0}.150,255.255.255.0,10m", ap.net);
        let router = format!("--dhcp-option=option:router,{}", ap.address());
        let leases = format!("--dhcp-leasefile={RUN_DIR}/dnsmasq-{}.leases", ap.ns);
        let iface = format!("--interface={}", ap.iface);
        let range6 = format!("--dhcp-range={}::,ra-only,64,2h", ap.net6);
        let ra = format!("--ra-param={},10,1800", ap.iface);
        let dns6 = format!("--dhcp-option=option6:dns-server,[{}]", ap.address6());
        #[rustfmt::skip]
        let argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", &iface,
            "--bind-interfaces", "--except-interface=lo", "--dhcp-authoritative", "--no-ping",
            &range, &router, &leases, "--enable-ra", &range6, &ra, &dns6, "--log-dhcp",
            "--log-facility=-",
        ];
        self.spawn(&format!("dnsmasq {}", ap.ns), Some(ap.ns), &argv, &format!("dnsmasq-{}.log", ap.ns))?;
        Ok(())
    }

    fn start_hostapd(&mut self, ap: &Ap) -> io::Result<()> {
        let conf = format!("{RUN_DIR}/hostapd-{}.conf", ap.ns);
        let pid = self.spawn(
            &format!("hostapd {}", ap.ns),
            Some(ap.ns),
            &["hostapd", "-t", &conf],
            &format!("hostapd-{}.log", ap.ns),
        )?;
        self.hostapd.retain(|(ns, _)| *ns != ap.ns);
        self.hostapd.push((ap.ns, pid));
        Ok(())
    }

    /// hwsim's radios are all of rfkill type WLAN, so NM's `radio wifi off` blocks the APs'
    /// radios too, and hostapd disables the AP: a simulation artefact (real APs are other
    /// machines). This stops `ap`'s hostapd, unblocks the APs' radios and starts it again.
    pub fn revive_ap(&mut self, ap: &Ap) -> io::Result<()> {
        if let Some((_, pid)) = self.hostapd.iter().find(|(ns, _)| *ns == ap.ns) {
            self.procs.stop(*pid)?;
        }
        // A radio's sysfs entries show only in its netns's sysfs (`ip netns exec` mounts it).
        let unblock = "for soft in /sys/class/ieee80211/*/rfkill*/soft; do echo 0 > \"$soft\"; done";
        for ap in [&HOME, &OFFICE] {
            run(&mut in_netns(ap.ns, &["sh", "-c", unblock]))?;
        }
        self.start_hostapd(ap)
    }

    /// Whether hostapd of `ap` reports `state=ENABLED`.
    pub fn ap_enabled(&self, ap: &Ap) -> bool {
        let ctrl = format!("{RUN_DIR}/hostapd-{}", ap.ns);
        output(&mut in_netns(ap.ns, &["hostapd_cli", "-p", &ctrl, "-i", ap.iface, "status"]))
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == "state=ENABLED"))
    }

    /// The MACs of the stations associated with `ap` (hostapd's `all_sta`).
    pub fn stations(&self, ap: &Ap) -> Vec<String> {
        let ctrl = format!("{RUN_DIR}/hostapd-{}", ap.ns);
        let out = output(&mut in_netns(ap.ns, &["hostapd_cli", "-p", &ctrl, "-i", ap.iface, "all_sta"]));
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines()
            .filter(|l| l.len() == 17 && l.chars().filter(|c| *c == ':').count() == 5)
            .map(str::to_string)
            .collect()
    }

    /// Kills the hostapd of `ap`: the AP disappears.
    pub fn stop_ap(&self, ap: &Ap) -> io::Result<()> {
        let pid = self.hostapd.iter().find(|(ns, _)| *ns == ap.ns).map(|(_, pid)| *pid);
        self.procs.stop(pid.ok_or_else(|| error(format!("no hostapd in {}", ap.ns)))?).map(drop)
    }

    pub fn nmcli(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("nmcli").args(args))
    }

    /// The laptop's Wi-Fi address (address/prefix), if it has one.
    pub fn wlan_address(&self) -> Option<String> {
        ipv4(None, WLAN)
    }

    /// Whether wlan0 holds an address in `ap`'s subnet.
    pub fn on(&self, ap: &Ap) -> bool {
        self.wlan_address().is_some_and(|a| a.starts_with(&format!("{}.", ap.net)))
    }

    /// Waits until NM's scan list shows `ap` (rescanning when it does not; a rescan right
    /// before an activation would delay it, so the list is read first).
    pub fn wait_for_scan(&self, ap: &Ap, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(500), || {
            let list =
                self.nmcli(&["-t", "-f", "SSID", "dev", "wifi", "list", "ifname", WLAN, "--rescan", "no"]);
            if list.is_ok_and(|l| l.lines().any(|s| s == ap.ssid)) {
                return true;
            }
            let _ = self.nmcli(&["dev", "wifi", "rescan", "ifname", WLAN]);
            false
        })
    }

    /// Adds NM's WPA-PSK profile for `ap` on wlan0.
    pub fn add_profile(&self, ap: &Ap, autoconnect: bool) -> io::Result<()> {
        #[rustfmt::skip]
        let args = [
            "connection", "add", "type", "wifi", "ifname", WLAN, "con-name", ap.profile,
            "ssid", ap.ssid, "wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", PSK,
            "ipv6.method", "auto", "connection.autoconnect", if autoconnect { "yes" } else { "no" },
        ];
        self.nmcli(&args).map(drop)
    }

    /// `nmcli --wait 60 connection up PROFILE` in the background; returns its pid.
    pub fn connection_up(&self, ap: &Ap) -> io::Result<u32> {
        self.spawn(
            &format!("nmcli up {}", ap.profile),
            None,
            &["nmcli", "--wait", "60", "connection", "up", ap.profile],
            "nmcli.log",
        )
    }

    /// Waits for wlan0 to hold an address of `ap`; returns when it was seen.
    pub fn wait_for_address(&self, ap: &Ap, timeout: Duration) -> Option<Instant> {
        wait_until(timeout, Duration::from_millis(50), || self.on(ap)).then(Instant::now)
    }
}

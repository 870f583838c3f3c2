//! vmnet on a real 802.11 stack (`tests/tests/wifi.rs`): a "laptop" VM under QEMU TCG boots
//! the installed Debian kernel with this machine's root read-only over virtio-9p (tmpfs
//! overlay) and systemd, D-Bus, polkitd, NetworkManager and wpa_supplicant inside. Its
//! `mac80211_hwsim` radios make two hostapd access points in their own namespaces ("home"
//! 198.51.100.0/24, "office" 203.0.113.0/24, each with dnsmasq) and the laptop's `wlan0`,
//! which NM manages as `802-11-wireless` — the connection type vmnetd follows by default.
//!
//! - `laptop.rs`: the host side: boots the VM once, collects the results, cleans up.
//! - `image.rs`: kernel, initramfs (`tests/wifi/init`) and the files laid over the VM's root.
//! - `inside/`: the runner in the VM (`vmnet-wifi-laptop`) and its scenarios.
//! - `protocol.rs`: the result lines between the two.

mod image;
pub mod inside;
pub mod laptop;
pub mod protocol;

pub use image::Binaries;
pub use laptop::Outcome;

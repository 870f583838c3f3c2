//! A hostile LAN over real Wi-Fi: a host on the AP's side routes another network of the
//! laptop's (here a container-like netns behind a veth, with a VPN-like route to a LAN
//! address) through the laptop's Wi-Fi address. It reaches the guest, and nothing else: the
//! laptop forwards nothing it did not forward before vmnetd, and answers ARP on the Wi-Fi for
//! the guest's address only.

use super::guest::{pings, Guest};
use super::report::{Reporter, Step};
use super::scenarios::HOST_PART;
use super::world::{Ap, Laptop, HOME, OFFICE};
use crate::cmd::{ip, output, run};
use std::process::Command;

const PEER: &str = "vpnpeer";
const PEER_NET: &str = "192.0.2";
/// A LAN address the laptop routes into the other network (a VPN route overlapping the LAN).
const OVERLAPPING_HOST: &str = "77";

fn sh(args: &[&str]) -> Result<String, String> {
    run(Command::new(args[0]).args(&args[1..])).map_err(|e| e.to_string())
}

/// `arping` from the AP's netns on its radio for `address`: whether it was answered in 1 s.
fn arp_answered(ap: &Ap, address: &str) -> bool {
    let argv =
        ["ip", "netns", "exec", ap.ns, "busybox", "arping", "-I", ap.iface, "-c", "1", "-w", "1", "-f"];
    output(Command::new(argv[0]).args(&argv[1..]).arg(address))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("reply from"))
}

/// On whichever AP the laptop is on.
pub fn hostile(w: &mut Laptop, r: &mut Reporter, _guest: &mut Guest) -> Step {
    let ap = [&HOME, &OFFICE].into_iter().find(|ap| w.on(ap));
    let address = w.wlan_address().unwrap_or_default();
    r.require("laptop-on-an-ap", ap.is_some(), &format!("wlan0 {address}"))?;
    let ap = ap.ok_or("on no AP")?;
    let laptop = address.split('/').next().unwrap_or_default().to_string();
    let result = play(r, ap, &laptop);
    // Taken down whatever happened: the scenarios after this one see the laptop as before.
    let _ = sh(&["ip", "netns", "del", PEER]);
    let _ = ip(ap.ns, &["route", "del", &format!("{PEER_NET}.0/24")]);
    result
}

fn play(r: &mut Reporter, ap: &Ap, laptop: &str) -> Step {
    sh(&["ip", "netns", "add", PEER])?;
    sh(&["ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "eth0", "netns", PEER])?;
    sh(&["ip", "addr", "add", &format!("{PEER_NET}.1/24"), "dev", "vpn0"])?;
    sh(&["ip", "link", "set", "vpn0", "up"])?;
    let overlapping = format!("{}.{OVERLAPPING_HOST}", ap.net);
    sh(&["ip", "route", "add", &format!("{overlapping}/32"), "dev", "vpn0"])?;
    let in_peer = |args: &[&str]| ip(PEER, args).map_err(|e| e.to_string());
    in_peer(&["link", "set", "lo", "up"])?;
    in_peer(&["addr", "add", &format!("{PEER_NET}.2/24"), "dev", "eth0"])?;
    in_peer(&["link", "set", "eth0", "up"])?;
    in_peer(&["route", "add", "default", "via", &format!("{PEER_NET}.1")])?;
    // The LAN host: the AP's netns, routing the laptop's other network through its Wi-Fi address.
    ip(ap.ns, &["route", "add", &format!("{PEER_NET}.0/24"), "via", laptop]).map_err(|e| e.to_string())?;

    let guest_address = format!("{}.{HOST_PART}", ap.net);
    let reached = pings(ap.ns, &guest_address, 2);
    r.check("lan-reaches-the-guest", reached > 0, &format!("{reached} of 2 pings to {guest_address}"));
    let peer = format!("{PEER_NET}.2");
    let leaked = pings(ap.ns, &peer, 2);
    r.check(
        "no-open-router",
        leaked == 0,
        &format!("{leaked} of 2 pings to {peer} through the laptop answered"),
    );
    r.check("arp-for-the-guest", arp_answered(ap, &guest_address), &guest_address);
    let hijacked = arp_answered(ap, &overlapping);
    r.check("no-arp-for-a-vpn-routed-lan-address", !hijacked, &overlapping);
    Ok(())
}

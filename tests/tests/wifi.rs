//! vmnet on real Wi-Fi: one "laptop" VM (QEMU TCG, the installed Debian kernel with
//! mac80211_hwsim, systemd, NetworkManager, wpa_supplicant, hostapd APs "home" and "office")
//! runs vmnetd with its default configuration — NM connections of type `802-11-wireless` —
//! and plays every scenario in sequence (see `vmnet_tests::wifi::inside`). The first test to
//! get here boots it; each test asserts its scenario's checks. The VM is gone, and its files
//! too, before any assertion runs.

use std::sync::OnceLock;
use vmnet_tests::wifi::{Binaries, Outcome};

fn laptop() -> &'static Outcome {
    static LAPTOP: OnceLock<Outcome> = OnceLock::new();
    LAPTOP.get_or_init(|| {
        let started = std::time::Instant::now();
        let bins = Binaries::find(env!("CARGO_BIN_EXE_vmnet-wifi-laptop"), env!("CARGO_BIN_EXE_tapguest"));
        let outcome = Outcome::run(bins);
        eprintln!("{}whole VM run: {:.1} s", outcome.timings(), started.elapsed().as_secs_f64());
        outcome
    })
}

#[track_caller]
fn assert_scenario(name: &str) {
    if let Err(message) = laptop().scenario(name) {
        panic!("{message}");
    }
}

#[test]
fn slow_wifi_laptop_boots_with_aps_nm_and_vmnetd_on_its_default_configuration() {
    assert_scenario("laptop");
}

#[test]
fn slow_wifi_home_guest_of_a_vmnet_member_gets_a_lease_and_is_reached_across_802_11() {
    assert_scenario("home");
}

#[test]
fn slow_wifi_ipv6_guests_take_the_home_aps_prefix_by_slaac_and_are_pinged_across_802_11() {
    assert_scenario("ipv6");
}

#[test]
fn slow_wifi_roam_by_nmcli_rehomes_the_guest_once_and_the_office_reaches_it() {
    assert_scenario("roam");
}

#[test]
fn slow_wifi_ipv6_roam_puts_the_guests_on_the_office_prefix_reached_from_office_without_qmp() {
    assert_scenario("ipv6-roam");
}

#[test]
fn slow_wifi_roam_back_home_by_nmcli_rehomes_the_guest_once_more() {
    assert_scenario("roam-back");
}

#[test]
fn slow_wifi_home_ap_loss_nm_falls_back_on_office_and_the_guest_follows_once() {
    assert_scenario("ap-loss");
}

#[test]
fn slow_wifi_radio_off_takes_vmnetd_offline_and_on_restores_the_guest() {
    assert_scenario("radio");
}

#[test]
fn slow_wifi_hostile_lan_host_reaches_the_guest_and_nothing_else_of_the_laptop() {
    assert_scenario("hostile");
}

#[test]
fn slow_wifi_bridge_over_the_station_does_not_carry_a_second_mac() {
    assert_scenario("bridge");
}

/// Timings are printed, not asserted (TCG on a shared machine): only that they were measured.
#[test]
fn slow_wifi_timings_are_reported() {
    let outcome = laptop();
    if let Some(reason) = &outcome.cannot_run {
        panic!("the Wi-Fi laptop VM could not run: {reason}");
    }
    let times = &outcome.report.scenarios;
    let wanted = [
        ("home", "boot-to-nm-connected"),
        ("roam", "nm-address-to-rehomed"),
        ("ipv6-roam", "nm-address6-to-v6-pingable6"),
    ];
    for (scenario, label) in wanted {
        let found = times.get(scenario).is_some_and(|s| s.times.iter().any(|(l, _)| l == label));
        assert!(found, "no {label} timing from scenario {scenario}:\n{}", outcome.timings());
    }
    // Straight to stderr, past the test harness's capture: the figures show in every run's log.
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("\n{}\n", outcome.timings()).as_bytes());
}

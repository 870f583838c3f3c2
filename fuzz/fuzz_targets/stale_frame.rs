//! An IPv4 packet from the stale-request listener's packet socket, then the DHCP server on
//! its UDP payload.
#![no_main]
libfuzzer_sys::fuzz_target!(|packet: &[u8]| {
    if let Some((_, payload)) = vmnetd::dhcp::stale::udp_payload(packet) {
        vmnet_fuzz::serve(&packet[payload], true);
    }
});

//! A datagram on a tap's DHCP socket, for a guest with and without an address.
#![no_main]
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    vmnet_fuzz::serve(bytes, true);
    vmnet_fuzz::serve(bytes, false);
});

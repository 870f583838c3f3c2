//! vmnet-dispatcher's input: argv (NUL-separated arguments, any bytes) and the system bus
//! address from its environment (the first argument, as DBUS_SYSTEM_BUS_ADDRESS).
#![no_main]
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use vmnet_dispatcher_cli::Args;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let mut parts = bytes.split(|&b| b == 0);
    if let Some(Ok(address)) = parts.next().map(std::str::from_utf8) {
        let _ = zbus::Address::try_from(address);
    }
    let argv =
        std::iter::once(OsString::from("90-vmnet")).chain(parts.map(|p| OsString::from_vec(p.to_vec())));
    if let Ok(args) = Args::try_parse_from(argv) {
        args.resync_action();
        args.shown_interface();
    }
});

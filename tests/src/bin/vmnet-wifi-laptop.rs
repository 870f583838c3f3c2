//! vmnet-wifi-laptop OUT: the runner inside the Wi-Fi laptop VM (see `vmnet_tests::wifi`).
//! systemd starts it in the VM; OUT is the test's writable share, where it reports.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args_os().nth(1) {
        Some(out) => vmnet_tests::wifi::inside::main(std::path::Path::new(&out)),
        None => {
            eprintln!("usage: vmnet-wifi-laptop OUT (run inside the Wi-Fi laptop VM)");
            ExitCode::from(2)
        }
    }
}

//! vmnet-bench-client: times org.vmnet calls from inside one D-Bus connection, for the
//! `vmnet` benchmark (`tests/benches/vmnet.rs`), which runs it as root or, through `setpriv`, as
//! an unprivileged user (so that vmnetd asks polkitd).
//!
//! usage: vmnet-bench-client COUNT PREFIX
//!
//! Connects once to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`), calls `AddGuest(PREFIX<i>, {})`
//! for i in 0..COUNT, then `RemoveGuest(PREFIX<i>)` for each, and prints one JSON object on
//! stdout: `{"add_us": [...], "remove_us": [...]}`, the duration of each call in microseconds,
//! measured around the awaited call only (connecting and process start are not in it). Exits 1
//! with a message on stderr at the first failed call.

use std::collections::HashMap;
use std::process::exit;
use std::time::Instant;

use vmnet_dbus::Manager1Proxy;
use zbus::Variant;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("vmnet-bench-client: {msg}");
    exit(1)
}

async fn run(count: usize, prefix: &str) -> zbus::Result<(Vec<u64>, Vec<u64>)> {
    let connection = zbus::Connection::system().await?;
    let manager = Manager1Proxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let mut add_us = Vec::with_capacity(count);
    for name in &names {
        let started = Instant::now();
        let result = manager.add_guest(name, HashMap::<&str, Variant<'_>>::new()).await;
        let elapsed = started.elapsed();
        if let Err(e) = result {
            fail(format!("AddGuest {name}: {e}"));
        }
        add_us.push(elapsed.as_micros() as u64);
    }
    let mut remove_us = Vec::with_capacity(count);
    for name in &names {
        let started = Instant::now();
        let result = manager.remove_guest(name).await;
        let elapsed = started.elapsed();
        if let Err(e) = result {
            fail(format!("RemoveGuest {name}: {e}"));
        }
        remove_us.push(elapsed.as_micros() as u64);
    }
    Ok((add_us, remove_us))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [count, prefix] = args.as_slice() else {
        fail("usage: vmnet-bench-client COUNT PREFIX");
    };
    let count: usize = count.parse().unwrap_or_else(|_| fail(format!("not a count: {count}")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("cannot start a tokio runtime: {e}")));
    match runtime.block_on(run(count, prefix)) {
        Ok((add_us, remove_us)) => {
            println!("{}", serde_json::json!({ "add_us": add_us, "remove_us": remove_us }));
        }
        Err(e) => fail(format!("D-Bus: {e}")),
    }
}

//! What a QMP socket's peer sends: replies read line by line (bounded), and a
//! `query-rx-filter` return searched for the guest's NIC.
#![no_main]
use vmnetd::model::Mac;
use vmnetd::qmp::{nic_with_mac, read_reply};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let mut reader = bytes;
    futures::executor::block_on(async {
        while let Ok(reply) = read_reply(&mut reader).await {
            nic_with_mac(&reply, Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        }
    });
});

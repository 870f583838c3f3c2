//! An ARP packet from the uplink, as the probe listener reads it.
#![no_main]
use std::net::Ipv4Addr;
use vmnetd::arp::frame::Arp;
use vmnetd::model::Mac;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Some(arp) = Arp::decode(bytes) {
        let own = Mac([2, 0, 0, 0, 0, 1]);
        arp.conflicts_with(Ipv4Addr::new(198, 51, 100, 200), own);
        let again = Arp::decode(&arp.encode()).expect("an encoded packet decodes");
        assert_eq!(
            (again.request, again.sender_mac, again.sender_ip),
            (arp.request, arp.sender_mac, arp.sender_ip)
        );
        assert_eq!(again.target_ip, arp.target_ip);
    }
});

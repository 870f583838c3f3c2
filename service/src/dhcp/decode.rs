//! Requests from bytes a guest sent. dhcproto decodes with bounds checks, but a few of its
//! option decoders assume a length (`debug_assert!`, and `len - 1` / `len - 3`), so a debug
//! build panics on them, and a release build misreads them. Those options are checked here
//! first; a request that gets them wrong is not a request vmnetd answers.

use dhcproto::v4::Message;
use dhcproto::Decodable;

/// BOOTP's fixed header (RFC 2131), then the magic cookie; the options follow.
const OPTIONS_START: usize = 236 + 4;

/// The length rule of each option whose dhcproto decoder assumes one.
fn length_is_valid(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,        // Rapid Commit
        81 => len >= 3,        // Client FQDN: flags, two rcodes, name
        94 => len == 3,        // Client Network Interface
        151 => len >= 1,       // Bulk Leasequery status code
        152..=155 => len == 4, // Bulk Leasequery times
        _ => true,
    }
}

/// Whether every option in `bytes` (a DHCP message) that dhcproto decodes with a fixed
/// length has it. Like dhcproto, a run of adjacent options with the same code is one option
/// (RFC 3396), checked with its total length.
fn options_are_decodable(bytes: &[u8]) -> bool {
    let mut run: Option<(u8, usize)> = None;
    let mut at = OPTIONS_START;
    while let Some(&code) = bytes.get(at) {
        if code == 0 || code == 255 {
            if run.take().is_some_and(|(code, len)| !length_is_valid(code, len)) {
                return false;
            }
            if code == 255 {
                return true;
            }
            at += 1;
            continue;
        }
        let Some(&len) = bytes.get(at + 1) else { break };
        let len = usize::from(len);
        run = match run {
            Some((same, total)) if same == code => Some((code, total + len)),
            Some((other, total)) if !length_is_valid(other, total) => return false,
            _ => Some((code, len)),
        };
        at += 2 + len;
    }
    run.is_none_or(|(code, len)| length_is_valid(code, len))
}

/// The DHCP message in `bytes`, or `None` when it is not one vmnetd can decode safely.
pub fn decode_request(bytes: &[u8]) -> Option<Message> {
    if !options_are_decodable(bytes) {
        return None;
    }
    Message::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
    use dhcproto::Encodable;
    use std::net::Ipv4Addr;

    fn discover_with(raw_options: &[u8]) -> Vec<u8> {
        let zero = Ipv4Addr::UNSPECIFIED;
        let mut message = Message::new_with_id(1, zero, zero, zero, zero, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        message.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        let mut bytes = message.to_vec().unwrap();
        assert_eq!(bytes.pop(), Some(255));
        bytes.extend(raw_options);
        bytes.push(255);
        bytes
    }

    /// Found by fuzz/run.sh (dhcp_respond): option 155 with 2 bytes panicked a debug build in
    /// dhcproto's `debug_assert!(len == 4)`. The input is a seed of that target now.
    #[test]
    fn options_with_a_length_dhcproto_assumes_otherwise_are_refused() {
        let crashes: [&[u8]; 2] = [
            include_bytes!("../../../fuzz/seeds/dhcp_respond/crash-bulk-leasequery-time"),
            include_bytes!("../../../fuzz/seeds/dhcp_respond/crash-fqdn-short"),
        ];
        for crash in crashes {
            assert!(decode_request(crash).is_none());
        }
        for bad in [
            &[155, 2, 0, 0][..],
            &[81, 0],
            &[81, 2, 0, 0],
            &[151, 0],
            &[94, 2, 1, 2],
            &[80, 1, 0],
            &[81, 1, 0, 12, 1, b'h', 81, 3, 0, 0, 0],
        ] {
            assert!(decode_request(&discover_with(bad)).is_none(), "{bad:?}");
        }
        for good in [&[155, 4, 0, 0, 0, 1][..], &[80, 0], &[81, 3, 0, 0, 0], &[155, 2, 0, 0, 155, 2, 0, 1]] {
            let message = decode_request(&discover_with(good));
            assert!(message.is_some_and(|m| m.opts().msg_type() == Some(MessageType::Discover)), "{good:?}");
        }
        // Pads, and an option whose length runs past the end (dhcproto drops it).
        let truncated = decode_request(&discover_with(&[0, 0, 12, 200, b'h']));
        assert!(truncated.is_none_or(|m| !m.opts().contains(OptionCode::Hostname)));
        assert!(decode_request(&discover_with(&[0, 0])).is_some());
    }
}

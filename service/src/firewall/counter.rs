//! vmnetd's named counters of dropped packets as nf_tables objects: created with the values
//! they had (a replaced table keeps its counts), dumped and parsed back.

use std::ffi::c_void;

use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{MsgType, NlMsg};

use super::encode::{c_string, header, non_null, proto};
use super::ruleset::{Family, TABLE};

pub(super) const NFT_OBJECT_COUNTER: u32 = 1;

/// A counter's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// `NFT_MSG_NEWOBJ`: a named counter, starting from `count`.
pub(super) struct CounterMsg<'a> {
    pub family: Family,
    pub name: &'a str,
    pub count: Count,
}

// SAFETY: a counter object message is a few attributes long.
unsafe impl NlMsg for CounterMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _kind: MsgType) {
        unsafe {
            let object = non_null(sys::nftnl_obj_alloc());
            let (table, name) = (c_string(TABLE), c_string(self.name));
            let o = object.as_ptr();
            sys::nftnl_obj_set_str(o, sys::NFTNL_OBJ_TABLE as u16, table.as_ptr());
            sys::nftnl_obj_set_str(o, sys::NFTNL_OBJ_NAME as u16, name.as_ptr());
            sys::nftnl_obj_set_u32(o, sys::NFTNL_OBJ_FAMILY as u16, proto(self.family) as u32);
            sys::nftnl_obj_set_u32(o, sys::NFTNL_OBJ_TYPE as u16, NFT_OBJECT_COUNTER);
            sys::nftnl_obj_set_u64(o, sys::NFTNL_OBJ_CTR_PKTS as u16, self.count.packets);
            sys::nftnl_obj_set_u64(o, sys::NFTNL_OBJ_CTR_BYTES as u16, self.count.bytes);
            let nlh =
                header(buf, libc::NFT_MSG_NEWOBJ, self.family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
            sys::nftnl_obj_nlmsg_build_payload(nlh, o);
            sys::nftnl_obj_free(o);
        }
    }
}

/// A request to dump the counters of vmnetd's table of `family`.
pub fn counters_request(family: Family, seq: u32) -> Vec<u8> {
    let mut buffer = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    // SAFETY: the buffer has room for the largest netlink message; the object is freed after
    // libnftnl copied its attributes into the buffer.
    unsafe {
        let object = non_null(sys::nftnl_obj_alloc());
        let table = c_string(TABLE);
        sys::nftnl_obj_set_str(object.as_ptr(), sys::NFTNL_OBJ_TABLE as u16, table.as_ptr());
        sys::nftnl_obj_set_u32(object.as_ptr(), sys::NFTNL_OBJ_TYPE as u16, NFT_OBJECT_COUNTER);
        let flags = libc::NLM_F_DUMP | libc::NLM_F_ACK;
        let nlh = header(buffer.as_mut_ptr().cast(), libc::NFT_MSG_GETOBJ, family, flags, seq);
        sys::nftnl_obj_nlmsg_build_payload(nlh, object.as_ptr());
        sys::nftnl_obj_free(object.as_ptr());
        buffer.truncate((*nlh).nlmsg_len as usize);
    }
    buffer
}

/// A counter of a `NFT_MSG_NEWOBJ` message (one whole netlink message, header included), as
/// libnftnl parses it; `None` for another kind of object or a message it refuses.
pub fn parse_counter(message: &[u8]) -> Option<(String, Count)> {
    if message.len() < std::mem::size_of::<libc::nlmsghdr>() {
        return None;
    }
    // libnftnl reads the header (unaligned-safe: copied into an aligned buffer first).
    let mut aligned = vec![0u64; message.len().div_ceil(8)];
    // SAFETY: `aligned` has room for `message`; libnftnl validates every attribute against
    // the header's length, which the caller checked against the message's.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), aligned.as_mut_ptr().cast::<u8>(), message.len());
        let nlh = aligned.as_ptr().cast::<libc::nlmsghdr>();
        let object = non_null(sys::nftnl_obj_alloc());
        let o = object.as_ptr();
        let parsed = sys::nftnl_obj_nlmsg_parse(nlh, o) >= 0
            && sys::nftnl_obj_get_u32(o, sys::NFTNL_OBJ_TYPE as u16) == NFT_OBJECT_COUNTER;
        let result = parsed.then(|| {
            let name = sys::nftnl_obj_get_str(o, sys::NFTNL_OBJ_NAME as u16);
            let name = if name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
            };
            let count = Count {
                packets: sys::nftnl_obj_get_u64(o, sys::NFTNL_OBJ_CTR_PKTS as u16),
                bytes: sys::nftnl_obj_get_u64(o, sys::NFTNL_OBJ_CTR_BYTES as u16),
            };
            (name, count)
        });
        sys::nftnl_obj_free(o);
        result
    }
}

//! The ruleset as nf_tables netlink messages, through Mullvad's `nftnl` (libnftnl): its
//! tables, chains, rules and batches as they are; expressions with explicit registers (for
//! concatenated keys), sets with concatenated keys and named counters written here over
//! `nftnl-sys`, which the crate exposes but does not wrap.

use std::collections::BTreeMap;
use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{Batch, Chain, ChainType, FinalizedBatch, MsgType, NlMsg, Policy, ProtoFamily, Rule, Table};

use super::counter::{Count, CounterMsg, NFT_OBJECT_COUNTER};
use super::ruleset::{ChainSpec, Element, Family, Field, Hook, SetSpec, Step, TableSpec, TABLE};

/// Set elements per netlink message: the element list is one attribute, at most 64 KiB long.
const ELEMENTS_PER_MESSAGE: usize = 256;
/// nft's `BYTEORDER_HOST_ENDIAN`, in a set's user data: how nft tags strings (interface names).
const HOST_ENDIAN: u32 = 1;

pub fn proto(family: Family) -> ProtoFamily {
    match family {
        Family::Inet => ProtoFamily::Inet,
        Family::Arp => ProtoFamily::Arp,
    }
}

/// libnftnl returns null only when out of memory; like Rust's allocator, give up then.
pub(super) fn non_null<T>(pointer: *mut T) -> NonNull<T> {
    NonNull::new(pointer).unwrap_or_else(|| std::process::abort())
}

pub(super) fn c_string(text: &str) -> CString {
    // Every name here is a constant or an interface name: none holds a NUL.
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// Deletes and recreates every table in `tables`, with `elements` and the counters starting
/// from `counts` (by family and name), in one batch: the kernel swaps old for new atomically.
pub fn replace(
    tables: &[TableSpec],
    elements: &[Element],
    counts: &BTreeMap<(Family, String), Count>,
) -> FinalizedBatch {
    let mut batch = Batch::new();
    for spec in tables {
        let table = Table::new(c_string(TABLE), proto(spec.family));
        // Added first, so that the deletion cannot fail on a missing table.
        batch.add(&table, MsgType::Add);
        batch.add(&table, MsgType::Del);
        batch.add(&table, MsgType::Add);
        let chains: Vec<Chain> = spec.chains.iter().map(|c| chain(&table, c)).collect();
        for chain in &chains {
            batch.add(chain, MsgType::Add);
        }
        for counter in &spec.counters {
            let count = counts.get(&(spec.family, (*counter).to_owned())).copied().unwrap_or_default();
            batch.add(&CounterMsg { family: spec.family, name: counter, count }, MsgType::Add);
        }
        for (id, set) in spec.sets.iter().enumerate() {
            batch.add(&SetMsg { family: spec.family, spec: set, id: id as u32 + 1 }, MsgType::Add);
            let keys: Vec<&[u8]> = elements
                .iter()
                .filter(|e| e.family == spec.family && e.set == set.name)
                .map(|e| e.key.as_slice())
                .collect();
            add_elements(&mut batch, spec.family, set.name, &keys, MsgType::Add);
        }
        for rule_spec in &spec.rules {
            let Some(chain) = chains.iter().zip(&spec.chains).find(|(_, c)| c.name == rule_spec.chain) else {
                continue; // every rule names one of the table's chains (a unit test checks)
            };
            let mut rule = Rule::new(chain.0);
            for step in &rule_spec.steps {
                rule.add_expr(step);
            }
            batch.add(&rule, MsgType::Add);
        }
    }
    batch.finalize()
}

/// Deletes one table (the deletion fails with ENOENT when there is none).
pub fn delete(family: Family) -> FinalizedBatch {
    let mut batch = Batch::new();
    batch.add(&Table::new(c_string(TABLE), proto(family)), MsgType::Del);
    batch.finalize()
}

/// Removes `removed` and adds `added` elements, in one batch.
pub fn change_elements(removed: &[Element], added: &[Element]) -> FinalizedBatch {
    let mut batch = Batch::new();
    for (elements, kind) in [(removed, MsgType::Del), (added, MsgType::Add)] {
        let mut by_set: BTreeMap<(Family, &str), Vec<&[u8]>> = BTreeMap::new();
        for e in elements {
            by_set.entry((e.family, e.set)).or_default().push(&e.key);
        }
        for ((family, set), keys) in by_set {
            add_elements(&mut batch, family, set, &keys, kind);
        }
    }
    batch.finalize()
}

fn add_elements(batch: &mut Batch, family: Family, set: &str, keys: &[&[u8]], kind: MsgType) {
    for chunk in keys.chunks(ELEMENTS_PER_MESSAGE) {
        batch.add(&ElementsMsg { family, set, keys: chunk }, kind);
    }
}

fn chain<'a>(table: &'a Table, spec: &ChainSpec) -> Chain<'a> {
    let mut chain = Chain::new(c_string(spec.name), table);
    if let Some((hook, priority)) = spec.hook {
        let hook = match hook {
            Hook::Prerouting => nftnl::Hook::PreRouting,
            Hook::Forward => nftnl::Hook::Forward,
            // NF_ARP_IN is 0, as NF_INET_PRE_ROUTING is; nftnl names only the inet hooks.
            Hook::ArpIn => nftnl::Hook::PreRouting,
        };
        chain.set_hook(hook, priority);
        chain.set_type(ChainType::Filter);
        chain.set_policy(Policy::Accept);
    }
    chain
}

fn register(word: u32) -> u32 {
    libc::NFT_REG32_00 as u32 + word
}

impl Expression for Step {
    fn to_expr(&self, _rule: &Rule) -> NonNull<sys::nftnl_expr> {
        // SAFETY: every pointer comes from libnftnl's allocators (checked non-null) and every
        // string and buffer outlives the call that copies it.
        unsafe {
            match self {
                Step::Load(field, word) => load(*field, register(*word)),
                Step::Equals(word, data) => {
                    let expr = alloc_expr(c"cmp");
                    sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_CMP_SREG as u16, register(*word));
                    sys::nftnl_expr_set_u32(
                        expr.as_ptr(),
                        sys::NFTNL_EXPR_CMP_OP as u16,
                        libc::NFT_CMP_EQ as u32,
                    );
                    set_data(expr, sys::NFTNL_EXPR_CMP_DATA, data);
                    expr
                }
                Step::InSet { set, register: word, inverted } => {
                    let expr = alloc_expr(c"lookup");
                    let name = c_string(set);
                    sys::nftnl_expr_set_u32(
                        expr.as_ptr(),
                        sys::NFTNL_EXPR_LOOKUP_SREG as u16,
                        register(*word),
                    );
                    sys::nftnl_expr_set_str(expr.as_ptr(), sys::NFTNL_EXPR_LOOKUP_SET as u16, name.as_ptr());
                    if *inverted {
                        let flags = libc::NFT_LOOKUP_F_INV as u32;
                        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_LOOKUP_FLAGS as u16, flags);
                    }
                    expr
                }
                Step::Count(name) => {
                    let expr = alloc_expr(c"objref");
                    let name = c_string(name);
                    let kind = sys::NFTNL_EXPR_OBJREF_IMM_TYPE as u16;
                    sys::nftnl_expr_set_u32(expr.as_ptr(), kind, NFT_OBJECT_COUNTER);
                    sys::nftnl_expr_set_str(
                        expr.as_ptr(),
                        sys::NFTNL_EXPR_OBJREF_IMM_NAME as u16,
                        name.as_ptr(),
                    );
                    expr
                }
                Step::Accept => verdict(libc::NF_ACCEPT, None),
                Step::Drop => verdict(libc::NF_DROP, None),
                Step::Jump(chain) => verdict(libc::NFT_JUMP, Some(chain)),
            }
        }
    }
}

unsafe fn alloc_expr(name: &std::ffi::CStr) -> NonNull<sys::nftnl_expr> {
    non_null(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
}

unsafe fn set_data(expr: NonNull<sys::nftnl_expr>, attribute: u32, data: &[u8]) {
    let pointer = data.as_ptr() as *const c_void;
    unsafe { sys::nftnl_expr_set(expr.as_ptr(), attribute as u16, pointer, data.len() as u32) };
}

unsafe fn load(field: Field, dreg: u32) -> NonNull<sys::nftnl_expr> {
    let meta = |key: i32| unsafe {
        let expr = alloc_expr(c"meta");
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_META_KEY as u16, key as u32);
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_META_DREG as u16, dreg);
        expr
    };
    let payload = |base: i32, offset: u32, len: u32| unsafe {
        let expr = alloc_expr(c"payload");
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_PAYLOAD_DREG as u16, dreg);
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_PAYLOAD_BASE as u16, base as u32);
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, offset);
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_PAYLOAD_LEN as u16, len);
        expr
    };
    match field {
        Field::IifName => meta(libc::NFT_META_IIFNAME),
        Field::OifName => meta(libc::NFT_META_OIFNAME),
        Field::NfProto => meta(libc::NFT_META_NFPROTO),
        Field::L4Proto => meta(libc::NFT_META_L4PROTO),
        Field::Link { offset, len } => payload(libc::NFT_PAYLOAD_LL_HEADER, offset, len),
        Field::Network { offset, len } => payload(libc::NFT_PAYLOAD_NETWORK_HEADER, offset, len),
        Field::Transport { offset, len } => payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, offset, len),
    }
}

unsafe fn verdict(code: i32, chain: Option<&str>) -> NonNull<sys::nftnl_expr> {
    let expr = unsafe { alloc_expr(c"immediate") };
    unsafe {
        let dreg = libc::NFT_REG_VERDICT as u32;
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_IMM_DREG as u16, dreg);
        sys::nftnl_expr_set_u32(expr.as_ptr(), sys::NFTNL_EXPR_IMM_VERDICT as u16, code as u32);
        if let Some(chain) = chain {
            let name = c_string(chain);
            sys::nftnl_expr_set_str(expr.as_ptr(), sys::NFTNL_EXPR_IMM_CHAIN as u16, name.as_ptr());
        }
    }
    expr
}

/// A message's header, for `family`, written at `buf`.
pub(super) unsafe fn header(
    buf: *mut c_void,
    kind: i32,
    family: Family,
    flags: i32,
    seq: u32,
) -> *mut libc::nlmsghdr {
    let family = proto(family) as u16;
    unsafe { sys::nftnl_nlmsg_build_hdr(buf.cast::<c_char>(), kind as u16, family, flags as u16, seq) }
}

/// A libnftnl set of vmnetd's table: only its names (and family) are set here.
unsafe fn named_set(family: Family, name: &str) -> NonNull<sys::nftnl_set> {
    let set = non_null(unsafe { sys::nftnl_set_alloc() });
    let (table, name) = (c_string(TABLE), c_string(name));
    unsafe {
        sys::nftnl_set_set_u32(set.as_ptr(), sys::NFTNL_SET_FAMILY as u16, proto(family) as u32);
        sys::nftnl_set_set_str(set.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
        sys::nftnl_set_set_str(set.as_ptr(), sys::NFTNL_SET_NAME as u16, name.as_ptr());
    }
    set
}

/// `NFT_MSG_NEWSET`: a named hash set with a (concatenated) key.
struct SetMsg<'a> {
    family: Family,
    spec: &'a SetSpec,
    id: u32,
}

// SAFETY: a set message with four attributes is far below the largest netlink message.
unsafe impl NlMsg for SetMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _kind: MsgType) {
        unsafe {
            let set = named_set(self.family, self.spec.name);
            sys::nftnl_set_set_u32(set.as_ptr(), sys::NFTNL_SET_ID as u16, self.id);
            sys::nftnl_set_set_u32(set.as_ptr(), sys::NFTNL_SET_KEY_TYPE as u16, self.spec.key_type());
            sys::nftnl_set_set_u32(set.as_ptr(), sys::NFTNL_SET_KEY_LEN as u16, self.spec.key_len() as u32);
            if self.spec.key.len() == 1 {
                // For nft's listing, which reads a single key's byte order from here (a name:
                // as nft tags strings); concatenations take it from each part's type.
                let data = non_null(sys::nftnl_udata_buf_alloc(16));
                sys::nftnl_udata_put_u32(data.as_ptr(), sys::NFTNL_UDATA_SET_KEYBYTEORDER as u8, HOST_ENDIAN);
                let (pointer, len) =
                    (sys::nftnl_udata_buf_data(data.as_ptr()), sys::nftnl_udata_buf_len(data.as_ptr()));
                sys::nftnl_set_set_data(set.as_ptr(), sys::NFTNL_SET_USERDATA as u16, pointer, len);
                sys::nftnl_udata_buf_free(data.as_ptr());
            }
            let flags = libc::NLM_F_CREATE | libc::NLM_F_ACK;
            let nlh = header(buf, libc::NFT_MSG_NEWSET, self.family, flags, seq);
            sys::nftnl_set_nlmsg_build_payload(nlh, set.as_ptr());
            sys::nftnl_set_free(set.as_ptr());
        }
    }
}

/// `NFT_MSG_NEWSETELEM` or `NFT_MSG_DELSETELEM` with up to [`ELEMENTS_PER_MESSAGE`] keys.
struct ElementsMsg<'a> {
    family: Family,
    set: &'a str,
    keys: &'a [&'a [u8]],
}

// SAFETY: at most 256 keys of at most 64 bytes, well below the largest message (64 KiB).
unsafe impl NlMsg for ElementsMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, kind: MsgType) {
        unsafe {
            let set = named_set(self.family, self.set);
            for key in self.keys {
                let element = non_null(sys::nftnl_set_elem_alloc());
                let pointer = key.as_ptr() as *const c_void;
                let attribute = sys::NFTNL_SET_ELEM_KEY as u16;
                sys::nftnl_set_elem_set(element.as_ptr(), attribute, pointer, key.len() as u32);
                sys::nftnl_set_elem_add(set.as_ptr(), element.as_ptr());
            }
            let (message, flags) = match kind {
                MsgType::Add => {
                    (libc::NFT_MSG_NEWSETELEM, libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK)
                }
                MsgType::Del => (libc::NFT_MSG_DELSETELEM, libc::NLM_F_ACK),
            };
            let nlh = header(buf, message, self.family, flags, seq);
            sys::nftnl_set_elems_nlmsg_build_payload(nlh, set.as_ptr());
            sys::nftnl_set_free(set.as_ptr());
        }
    }
}

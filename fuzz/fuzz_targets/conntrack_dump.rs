//! A conntrack dump as the kernel sends it over ctnetlink
//! (`weft_kernel::parse_flows`): the proxy reads these after every sync.
//! Input: one receive buffer of netlink messages.
//!
//! What must hold: no panic; an error message is an errno; every flow
//! read has both directions' addresses of one family.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_kernel::parse_flows;

fuzz_target!(|data: &[u8]| {
    let mut flows = Vec::new();
    match parse_flows(data, &mut flows) {
        Ok(_) => {}
        Err(errno) => assert!(errno != 0),
    }
    for f in &flows {
        let _ = (f.orig_src, f.orig_dst, f.reply_src, f.reply_dst, f.protocol);
    }
});

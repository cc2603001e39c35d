//! The kernel's answers to an nf_tables element transaction
//! (`weft_kernel::read_replies`): the proxy reads them after every partial
//! sync that only changes elements. Input: one receive buffer of netlink
//! messages.
//!
//! What must hold: no panic; a refusal carries a non-zero errno.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_kernel::{read_replies, Replies};

fuzz_target!(|data: &[u8]| {
    let mut replies = Replies {
        last: 3,
        ..Replies::default()
    };
    read_replies(data, &mut replies);
    if let Some((_, errno)) = replies.refused {
        assert!(errno != 0);
    }
});

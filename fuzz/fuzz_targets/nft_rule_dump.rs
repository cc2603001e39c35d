//! An nf_tables rule dump as the kernel sends it
//! (`weft_kernel::parse_rule_jumps`): the proxy reads one several times a
//! second to notice that its rules were flushed from outside; and the
//! same bytes as a set-element dump (`weft_kernel::parse_element_verdicts`,
//! the parser shares the message walk). Input: one receive buffer of
//! netlink messages.
//!
//! What must hold: no panic; an error is a non-zero errno.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_kernel::{parse_element_verdicts, parse_rule_jumps};

fuzz_target!(|data: &[u8]| {
    let mut jumps = Vec::new();
    if let Err(errno) = parse_rule_jumps(data, &mut jumps) {
        assert!(errno != 0);
    }
    if let Err(errno) = parse_element_verdicts(data, &mut jumps) {
        assert!(errno != 0);
    }
});

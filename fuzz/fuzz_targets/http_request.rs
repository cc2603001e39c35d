//! The health and metrics endpoints' request reader
//! (`weft_telemetry::http::parse_head`): whatever a scraper, or anyone who
//! reaches the port, sends. Input: the bytes received, in the order a
//! socket delivers them.
//!
//! What must hold: no panic; an answer is decided by the size limit at the
//! latest; a decided head stays decided as more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_telemetry::http::{parse_head, Head};

fuzz_target!(|data: &[u8]| {
    const MAX: usize = 1024;
    let mut decided: Option<(usize, Head)> = None;
    for end in 0..=data.len().min(4 * MAX) {
        match parse_head(&data[..end], MAX) {
            None => assert!(end < MAX, "undecided at {end} bytes"),
            Some(h) => {
                decided.get_or_insert((end, h));
            }
        }
    }
    if let Some((at, Head::Request(method, path))) = decided {
        assert!(at <= MAX);
        assert!(path.starts_with('/'));
        assert!(!method.is_empty());
    }
});

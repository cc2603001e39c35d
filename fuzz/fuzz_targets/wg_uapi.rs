//! The WireGuard configuration socket's requests
//! (`weft_core::wg_uapi`): what any client that connects can send.
//! Input: the bytes of the connection.
//!
//! What must hold: no panic; the reader stops within its limits; a `set`
//! is parsed whole or refused with an errno.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::wg_uapi::{parse_set, read_request, Limits, Request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        line: 256,
        lines: 64,
        bytes: 4096,
    };
    let mut r = std::io::BufReader::with_capacity(17, data);
    for _ in 0..1000 {
        match read_request(&mut r, &limits) {
            Ok(None) => return,
            Ok(Some(Request::Set(lines))) => {
                assert!(lines.len() <= limits.lines);
                assert!(lines.iter().all(|l| l.len() <= limits.line));
                if let Err(errno) = parse_set(&lines) {
                    assert!(errno > 0);
                }
            }
            Ok(Some(_)) => {}
            Err(e) => {
                let _ = e.errno();
                return;
            }
        }
    }
});

//! Lease keys and values as read from etcd.
//! Input: `<key>\n<value JSON>`; without a newline the whole input is tried
//! as both a key and a value.
//! - a key that parses prints back to a string that parses to the same key;
//! - a value that parses serialises (`to_json`) to JSON that parses to an
//!   equal value and serialises to the same bytes again;
//! - decoding vxlan backend data never panics and never yields VNI 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::lease::{LeaseAttrs, LeaseError, LeaseKey};

fn check_key(s: &str) {
    match s.parse::<LeaseKey>() {
        Ok(k) => {
            assert!(k.primary().is_some());
            let printed = k.to_string();
            let again: LeaseKey = printed
                .parse()
                .unwrap_or_else(|e| panic!("{s:?} -> {printed:?} does not re-parse: {e}"));
            assert_eq!(again, k, "{s:?} -> {printed:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
        }
    }
}

fn check_value(key: &str, json: &[u8]) {
    let a = match LeaseAttrs::parse(key, json) {
        Ok(a) => a,
        Err(e) => {
            if !key.contains('\n') {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
            }
            assert!(matches!(e, LeaseError::Value { .. }));
            return;
        }
    };
    let out = a.to_json();
    let b = LeaseAttrs::parse(key, out.as_bytes())
        .unwrap_or_else(|e| panic!("to_json output {out:?} does not re-parse: {e}"));
    assert_eq!(a, b, "round trip through {out:?}");
    assert_eq!(b.to_json(), out, "to_json is not stable");
    let _ = a.backend();
    for v6 in [false, true] {
        if let Ok(d) = a.vxlan_data(key, v6) {
            assert_ne!(d.vni, 0, "VNI 0 must read as 1");
            let rebuilt = LeaseAttrs::vxlan(a.public_ip, d.clone());
            assert_eq!(rebuilt.vxlan_data(key, false).ok(), Some(d));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let (key, value) = (&data[..i], &data[i + 1..]);
            if let Ok(key) = std::str::from_utf8(key) {
                check_key(key);
                check_value(key, value);
            }
        }
        None => {
            if let Ok(s) = std::str::from_utf8(data) {
                check_key(s);
            }
            check_value("172.30.14.0-24", data);
        }
    }
});

//! `SubnetEnv::parse`: `/run/flannel/subnet.env` as written by flanneld or
//! by hand. Input: the file's text.
//!
//! `render()` is not the exact inverse of `parse()`: it writes a family only
//! when both its NETWORK and SUBNET are set, and writes MTU 0 and IPMASQ
//! false for absent values. What must hold: rendering a parsed file and
//! parsing that gives the parsed values with exactly those normalisations,
//! and rendering is then a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::subnet_file::SubnetEnv;

fn normalised(e: &SubnetEnv) -> SubnetEnv {
    let v4 = e.network.is_some() && e.subnet.is_some();
    let v6 = e.ipv6_network.is_some() && e.ipv6_subnet.is_some();
    SubnetEnv {
        network: e.network.filter(|_| v4),
        subnet: e.subnet.filter(|_| v4),
        ipv6_network: e.ipv6_network.filter(|_| v6),
        ipv6_subnet: e.ipv6_subnet.filter(|_| v6),
        mtu: Some(e.mtu.unwrap_or(0)),
        ipmasq: Some(e.ipmasq.unwrap_or(false)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SubnetEnv::parse(text) {
        Ok(e) => {
            let out = e.render();
            let again = SubnetEnv::parse(&out)
                .unwrap_or_else(|err| panic!("render output {out:?} does not parse: {err}"));
            assert_eq!(again, normalised(&e), "round trip through {out:?}");
            assert_eq!(again.render(), out, "render is not a fixed point");
        }
        Err(err) => {
            assert!(err.line >= 1 && err.line <= text.lines().count());
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
        }
    }
});

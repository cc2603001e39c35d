//! flannel's lease read from a Node's annotations and pod ranges
//! (`weft_core::kube_node::annotations`). Input: lines `key=value` (keys
//! under flannel's prefix, `podCIDR=…` and `podCIDRs=…` for the spec).
//!
//! What must hold: no panic; errors are one line; a lease read is inside
//! the families asked for and its key prints back to itself.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use weft_core::kube_node::annotations::{pod_cidrs, AnnotationNames, NodeView};
use weft_core::lease::LeaseKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names = AnnotationNames::new("flannel.alpha.coreos.com").expect("default prefix");
    let mut annotations = BTreeMap::new();
    let (mut pod_cidr, mut cidrs) = (None, Vec::new());
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "podCIDR" => pod_cidr = Some(v),
            "podCIDRs" => cidrs.push(v.to_string()),
            _ => {
                annotations.insert(format!("flannel.alpha.coreos.com/{k}"), v.to_string());
            }
        }
    }
    let view = NodeView {
        name: "fuzz",
        annotations: &annotations,
        pod_cidr,
        pod_cidrs: &cidrs,
    };
    let _ = pod_cidrs(&view);
    let _ = names.stored_public_ips(&view);
    let _ = names.stored_macs(&view);
    for (v4, v6) in [(true, false), (false, true), (true, true)] {
        match names.lease_of(&view, v4, v6) {
            Ok(Some(l)) => {
                assert!(v4 || l.key.v4.is_none(), "an IPv4 range was not asked for");
                assert!(v6 || l.key.v6.is_none(), "an IPv6 range was not asked for");
                let printed = l.key.to_string();
                let again: LeaseKey = printed.parse().expect("the key prints back");
                assert_eq!(again, l.key);
            }
            Ok(None) => {}
            Err(e) => assert!(!e.contains('\n'), "multi-line error: {e}"),
        }
    }
    let _ = AnnotationNames::new(text);
});

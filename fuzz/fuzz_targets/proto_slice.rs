//! `weft_proxy::spec::proto_slice::parse_proto_slice`: an EndpointSlice
//! as the Kubernetes API sends it to the proxy's watch, in protobuf.
//! Input: the enveloped object's bytes (`k8s\0`, runtime.Unknown).
//!
//! What must hold: errors are one line; an accepted slice's canonical JSON
//! (weft's store) parses back to an equal endpoint set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::spec::proto_slice::parse_proto_slice;
use weft_proxy::spec::{parse_object, Object};

fuzz_target!(|data: &[u8]| {
    match parse_proto_slice(data) {
        Ok(Some(set)) => {
            let again = parse_object(&set.to_value(), "round trip").expect("canonical JSON parses");
            assert_eq!(again, Object::Endpoints(set));
        }
        Ok(None) => {}
        Err(e) => assert!(!e.contains('\n'), "multi-line error: {e}"),
    }
});

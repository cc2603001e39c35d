//! `weft_proxy::spec::proto_service::parse_proto_service`: a Service as
//! the Kubernetes API sends it to the proxy's watch, in protobuf.
//! Input: the enveloped object's bytes (`k8s\0`, runtime.Unknown).
//!
//! What must hold: errors are one line; an accepted Service's canonical
//! JSON (weft's store) parses back to an equal Service.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::spec::proto_service::parse_proto_service;
use weft_proxy::spec::{parse_object, Object};

fuzz_target!(|data: &[u8]| {
    match parse_proto_service(data) {
        Ok(Some(svc)) => {
            let again = parse_object(&svc.to_value(), "round trip").expect("canonical JSON parses");
            assert_eq!(again, Object::Service(svc));
        }
        Ok(None) => {}
        Err(e) => assert!(!e.contains('\n'), "multi-line error: {e}"),
    }
});

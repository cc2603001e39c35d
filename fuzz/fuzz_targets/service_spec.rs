//! `weft_proxy::spec::parse_documents`: Service and EndpointSlice objects
//! from YAML or JSON (files given to `weft service apply`, values in etcd).
//! Input: the file's text.
//!
//! What must hold: errors are one line; every accepted object's canonical
//! JSON parses back to an equal object; accepted services plan and render
//! (iptables and nft) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::plan::catalog::Catalog;
use weft_proxy::render::iptables::IptablesRenderer;
use weft_proxy::render::nft::NftRenderer;
use weft_proxy::spec::{parse_documents, parse_object, Object};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let objects = match parse_documents(text, "fuzz") {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    let mut catalog = Catalog::default();
    for obj in objects {
        let v = match &obj {
            Object::Service(s) => s.to_value(),
            Object::Endpoints(e) => e.to_value(),
        };
        let again = parse_object(&v, "round trip").expect("canonical JSON parses");
        assert_eq!(again, obj);
        catalog.put(obj);
    }
    let ipt = IptablesRenderer::new(false, None, false);
    let nft = NftRenderer::new(false, None);
    for p in catalog.plan_all("node") {
        let _ = ipt.port(&p);
        let _ = nft.port(&p);
    }
});

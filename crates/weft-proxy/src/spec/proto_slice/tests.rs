use super::*;
use crate::spec::endpoints::node_name;
use crate::spec::{parse_object, Object};
use serde_json::{json, Value};

/// The slice of the JSON tests, as the API server's JSON.
fn json_slice() -> Value {
    json!({
      "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
      "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "42",
        "labels": {"kubernetes.io/service-name": "web"},
        "annotations": {TRIGGER_TIME: "2026-12-05T10:00:00Z", "other": "x"}},
      "addressType": "IPv4",
      "endpoints": [
        {"addresses": ["172.30.1.2"], "conditions": {"ready": true}, "nodeName": "n1"},
        {"addresses": ["172.30.1.3"], "conditions": {"ready": false, "serving": true,
         "terminating": true}}
      ],
      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]
    })
}

/// The same slice as the protobuf message.
fn proto_slice() -> ProtoSlice {
    ProtoSlice {
        metadata: Some(SliceMeta {
            name: "web-abc".into(),
            namespace: "shop".into(),
            resource_version: "42".into(),
            labels: [(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into(),
            annotations: [
                (TRIGGER_TIME.to_string(), "2026-12-05T10:00:00Z".to_string()),
                ("other".to_string(), "x".to_string()),
            ]
            .into(),
        }),
        endpoints: vec![
            ProtoEndpoint {
                addresses: ["172.30.1.2".into()].into(),
                conditions: Some(Conditions {
                    ready: Some(true),
                    serving: None,
                    terminating: None,
                }),
                node_name: Some(node_name("n1")),
            },
            ProtoEndpoint {
                addresses: ["172.30.1.3".into()].into(),
                conditions: Some(Conditions {
                    ready: Some(false),
                    serving: Some(true),
                    terminating: Some(true),
                }),
                node_name: None,
            },
        ],
        ports: vec![ProtoPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(8080),
        }],
        address_type: Some("IPv4".into()),
    }
}

/// `field` as a length-delimited protobuf field.
fn delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    let mut len = bytes.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

/// `slice` in the API server's envelope (`k8s\0`, runtime.Unknown).
pub(crate) fn envelope(slice: &ProtoSlice) -> Vec<u8> {
    enveloped(
        b"discovery.k8s.io/v1",
        b"EndpointSlice",
        &slice.encode_to_vec(),
    )
}

/// An encoded object of `api_version` and `kind` in the API server's
/// envelope.
pub(crate) fn enveloped(api_version: &[u8], kind: &[u8], object: &[u8]) -> Vec<u8> {
    let type_meta = [delimited(1, api_version), delimited(2, kind)].concat();
    let unknown = [delimited(1, &type_meta), delimited(2, object)].concat();
    [b"k8s\0".as_slice(), &unknown].concat()
}

/// What weft's store (the JSON path) makes of `v`.
fn from_json(v: &Value) -> Result<Option<EndpointSet>, String> {
    match parse_object(v, "test") {
        Ok(Object::Endpoints(e)) => Ok(Some(e)),
        Ok(Object::Service(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_slice_reads_as_its_json_does() {
    let proto = parse_proto_slice(&envelope(&proto_slice()));
    assert!(matches!(proto, Ok(Some(_))), "{proto:?}");
    assert_eq!(proto, from_json(&json_slice()));
    let s = proto_slice();
    assert_eq!(s.key(), ("shop".to_string(), "web-abc".to_string()));
    assert_eq!(s.trigger_time(), Some("2026-12-05T10:00:00Z"));
    assert_eq!(SliceKind::resource_version(&s), "42");
}

/// The protobuf path checks a slice as the JSON path (weft's store) does:
/// the same endpoint set, or the same one-line error.
#[test]
fn the_protobuf_path_checks_as_the_json_path_does() {
    type Change = fn(&mut ProtoSlice, &mut Value);
    let cases: [(&str, Change); 12] = [
        ("unchanged", |_, _| {}),
        ("bad address", |p, j| {
            p.endpoints[1].addresses[0] = "not-an-ip".into();
            j["endpoints"][1]["addresses"][0] = "not-an-ip".into();
        }),
        ("long address", |p, j| {
            let long = "1".repeat(60);
            p.endpoints[1].addresses[0] = long.as_str().into();
            j["endpoints"][1]["addresses"][0] = long.into();
        }),
        ("address twice", |p, j| {
            p.endpoints[1].addresses[0] = "172.30.1.2".into();
            j["endpoints"][1]["addresses"][0] = "172.30.1.2".into();
        }),
        ("address type", |p, j| {
            p.address_type = Some("IPv5".into());
            j["addressType"] = "IPv5".into();
        }),
        ("wrong family", |p, j| {
            p.endpoints[0].addresses[0] = "fd00::1".into();
            j["endpoints"][0]["addresses"][0] = "fd00::1".into();
        }),
        ("port range", |p, j| {
            p.ports[0].port = Some(70000);
            j["ports"][0]["port"] = 70000.into();
        }),
        ("protocol", |p, j| {
            p.ports[0].protocol = Some("ICMP".into());
            j["ports"][0]["protocol"] = "ICMP".into();
        }),
        ("namespace", |p, j| {
            if let Some(m) = p.metadata.as_mut() {
                m.namespace = "Shop".into();
            }
            j["metadata"]["namespace"] = "Shop".into();
        }),
        ("no addresses", |p, j| {
            p.endpoints[0].addresses.clear();
            j["endpoints"][0]["addresses"] = json!([]);
        }),
        ("port name", |p, j| {
            p.ports[0].name = Some("-x".into());
            j["ports"][0]["name"] = "-x".into();
        }),
        ("missing port", |p, j| {
            p.ports[0].port = None;
            j["ports"][0].as_object_mut().map(|o| o.remove("port"));
        }),
    ];
    for (what, change) in cases {
        let (mut p, mut j) = (proto_slice(), json_slice());
        change(&mut p, &mut j);
        let proto = parse_proto_slice(&envelope(&p));
        assert_eq!(proto, from_json(&j), "{what}");
        if let Err(e) = proto {
            assert!(what != "unchanged" && !e.contains('\n'), "{what}: {e}");
        }
    }
}

#[test]
fn ignored_slices_and_bad_bytes() {
    let mut fqdn = proto_slice();
    fqdn.address_type = Some("FQDN".into());
    assert_eq!(parse_proto_slice(&envelope(&fqdn)), Ok(None));
    let mut unlabeled = proto_slice();
    if let Some(m) = unlabeled.metadata.as_mut() {
        m.labels.clear();
    }
    assert_eq!(parse_proto_slice(&envelope(&unlabeled)), Ok(None));
    let bytes = envelope(&proto_slice());
    for end in 0..bytes.len() {
        if let Err(e) = parse_proto_slice(&bytes[..end]) {
            assert!(!e.contains('\n'), "{e}");
        }
    }
    assert!(parse_proto_slice(b"{\"kind\": \"EndpointSlice\"}")
        .expect_err("JSON")
        .contains("k8s"));
}

/// The fuzz corpus's seed is this test's slice in its envelope (written
/// there when `WEFT_WRITE_FUZZ_SEEDS` is set).
#[test]
fn the_fuzz_seed_is_the_test_slice() {
    is_fuzz_seed("proto_slice/seed-slice.pb", &envelope(&proto_slice()));
}

/// Checks that `bytes` are the fuzz corpus's file `corpus_path` (under
/// `fuzz/corpus/`), after writing them there when `WEFT_WRITE_FUZZ_SEEDS`
/// is set.
pub(crate) fn is_fuzz_seed(corpus_path: &str, bytes: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(corpus_path);
    if std::env::var_os("WEFT_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a directory"))
            .expect("makes the corpus directory");
        std::fs::write(&path, bytes).expect("writes the seed");
    }
    assert_eq!(std::fs::read(&path).expect("the seed"), bytes);
}

use super::*;
use crate::spec::proto_slice::tests::{enveloped, is_fuzz_seed};
use serde_json::{json, Value};

/// The Service of these tests, as the API server's JSON (every field the
/// proxy reads, and some it does not).
fn json_service() -> Value {
    json!({
      "apiVersion": "v1", "kind": "Service",
      "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
      "spec": {
        "type": "LoadBalancer",
        "clusterIP": "10.254.0.10",
        "ports": [
          {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web", "nodePort": 30080},
          {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}
        ],
        "externalIPs": ["192.0.2.10"],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
        "loadBalancerSourceRanges": ["192.0.2.0/24"],
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 31000,
        "internalTrafficPolicy": "Cluster"
      },
      "status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.20"}, {"ip": "192.0.2.21", "ipMode": "Proxy"}
      ]}}
    })
}

fn text(s: &str) -> Option<String> {
    Some(s.into())
}

fn port(name: &str, protocol: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: text(name),
        protocol: text(protocol),
        port: Some(port),
        target_port: Some(target),
        node_port: None,
    }
}

fn named(s: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: text(s),
    }
}

fn number(n: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(n),
        str_val: None,
    }
}

/// The same Service as the protobuf message.
fn proto_service() -> ProtoService {
    let mut http = port("http", "TCP", 80, named("web"));
    http.node_port = Some(30080);
    ProtoService {
        metadata: Some(ServiceMeta {
            name: "web".into(),
            namespace: "shop".into(),
            resource_version: "7".into(),
        }),
        spec: Some(ServiceSpec {
            ports: vec![http, port("dns", "UDP", 53, number(5353))],
            cluster_ip: text("10.254.0.10"),
            r#type: text("LoadBalancer"),
            external_ips: vec!["192.0.2.10".into()],
            session_affinity: text("ClientIP"),
            load_balancer_source_ranges: vec!["192.0.2.0/24".into()],
            external_traffic_policy: text("Local"),
            health_check_node_port: Some(31000),
            session_affinity_config: Some(AffinityConfig {
                client_ip: Some(ClientIpConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            internal_traffic_policy: text("Cluster"),
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: vec![
                    LoadBalancerIngress {
                        ip: text("192.0.2.20"),
                        ip_mode: None,
                    },
                    LoadBalancerIngress {
                        ip: text("192.0.2.21"),
                        ip_mode: text("Proxy"),
                    },
                ],
            }),
        }),
    }
}

fn envelope(svc: &ProtoService) -> Vec<u8> {
    enveloped(b"v1", b"Service", &svc.encode_to_vec())
}

/// What weft's store (the JSON path) makes of `v`.
fn from_json(v: &Value) -> Result<Option<Service>, String> {
    Service::from_value(v, "test")
        .map(Some)
        .map_err(|e| e.to_string())
}

#[test]
fn a_service_reads_as_its_json_does() {
    let proto = parse_proto_service(&envelope(&proto_service()));
    let Ok(Some(svc)) = &proto else {
        panic!("{proto:?}");
    };
    assert_eq!(svc.ports.len(), 2);
    assert_eq!(svc.affinity_seconds, Some(600));
    assert_eq!(
        svc.load_balancer_ips.len(),
        1,
        "the Proxy-mode IP is left out"
    );
    assert_eq!(proto, from_json(&json_service()));
    let p = proto_service();
    assert_eq!(p.id(), ServiceName::new("shop", "web"));
    assert_eq!(ServiceKind::resource_version(&p), "7");
}

/// The protobuf path checks a Service as the JSON path (weft's store)
/// does: the same Service, or the same one-line error.
#[test]
fn the_protobuf_path_checks_as_the_json_path_does() {
    type Change = fn(&mut ServiceSpec, &mut Value);
    let cases: [(&str, Change); 12] = [
        ("unchanged", |_, _| {}),
        ("cluster IP", |p, j| {
            p.cluster_ip = text("10.254.0.300");
            j["clusterIP"] = "10.254.0.300".into();
        }),
        ("headless", |p, j| {
            p.cluster_ip = text("None");
            j["clusterIP"] = "None".into();
        }),
        ("type", |p, j| {
            p.r#type = text("Magic");
            j["type"] = "Magic".into();
        }),
        ("protocol", |p, j| {
            p.ports[1].protocol = text("ICMP");
            j["ports"][1]["protocol"] = "ICMP".into();
        }),
        ("port range", |p, j| {
            p.ports[0].port = Some(70000);
            j["ports"][0]["port"] = 70000.into();
        }),
        ("target port name", |p, j| {
            p.ports[0].target_port = Some(named("-web"));
            j["ports"][0]["targetPort"] = "-web".into();
        }),
        ("target port as text", |p, j| {
            p.ports[0].target_port = Some(named("8080"));
            j["ports"][0]["targetPort"] = "8080".into();
        }),
        ("same port twice", |p, j| {
            p.ports[1].port = Some(80);
            p.ports[1].protocol = text("TCP");
            j["ports"][1]["port"] = 80.into();
            j["ports"][1]["protocol"] = "TCP".into();
        }),
        ("node port on a ClusterIP service", |p, j| {
            p.r#type = text("ClusterIP");
            j["type"] = "ClusterIP".into();
        }),
        ("affinity timeout", |p, j| {
            if let Some(c) = p
                .session_affinity_config
                .as_mut()
                .and_then(|c| c.client_ip.as_mut())
            {
                c.timeout_seconds = Some(0);
            }
            j["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] = 0.into();
        }),
        ("source range", |p, j| {
            p.load_balancer_source_ranges = vec!["192.0.2.0/33".into()];
            j["loadBalancerSourceRanges"] = json!(["192.0.2.0/33"]);
        }),
    ];
    for (what, change) in cases {
        let (mut p, mut j) = (proto_service(), json_service());
        if let Some(spec) = p.spec.as_mut() {
            change(spec, &mut j["spec"]);
        }
        let proto = parse_proto_service(&envelope(&p));
        assert_eq!(proto, from_json(&j), "{what}");
        if let Err(e) = proto {
            assert!(what != "unchanged" && !e.contains('\n'), "{what}: {e}");
        }
    }
}

/// Go's protobuf sends the zero values of plain fields (`nodePort: 0`,
/// `type: ""`, `healthCheckNodePort: 0`) that its JSON leaves out.
#[test]
fn zero_values_read_as_absent_fields() {
    let mut p = proto_service();
    let mut j = json_service();
    if let Some(spec) = p.spec.as_mut() {
        spec.r#type = text("");
        spec.external_traffic_policy = text("");
        spec.health_check_node_port = Some(0);
        spec.session_affinity = text("");
        spec.ports[0].node_port = Some(0);
        spec.ports[1].name = text("");
    }
    for field in [
        "type",
        "externalTrafficPolicy",
        "healthCheckNodePort",
        "sessionAffinity",
    ] {
        j["spec"].as_object_mut().map(|o| o.remove(field));
    }
    j["spec"]["ports"][0]
        .as_object_mut()
        .map(|o| o.remove("nodePort"));
    j["spec"]["ports"][1]
        .as_object_mut()
        .map(|o| o.remove("name"));
    let proto = parse_proto_service(&envelope(&p));
    assert_eq!(proto, from_json(&j));
    // the JSON now has an unnamed port beside a named one: refused alike
    assert!(proto.is_err());
    if let Some(spec) = p.spec.as_mut() {
        spec.ports[1].name = text("dns");
    }
    j["spec"]["ports"][1]["name"] = "dns".into();
    let proto = parse_proto_service(&envelope(&p));
    assert!(matches!(proto, Ok(Some(_))), "{proto:?}");
    assert_eq!(proto, from_json(&j));
}

#[test]
fn external_names_need_no_rules_and_bad_bytes_are_one_line() {
    let mut external = proto_service();
    if let Some(spec) = external.spec.as_mut() {
        spec.r#type = text("ExternalName");
    }
    assert_eq!(parse_proto_service(&envelope(&external)), Ok(None));
    let mut bad_ingress = proto_service();
    if let Some(lb) = bad_ingress
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
    {
        lb.ingress[0].ip_mode = text("Tunnel");
    }
    let e = parse_proto_service(&envelope(&bad_ingress)).expect_err("ipMode");
    assert!(e.contains("status.loadBalancer.ingress[0].ipMode"), "{e}");
    let bytes = envelope(&proto_service());
    for end in 0..bytes.len() {
        if let Err(e) = parse_proto_service(&bytes[..end]) {
            assert!(!e.contains('\n'), "{e}");
        }
    }
    assert!(parse_proto_service(b"{\"kind\": \"Service\"}")
        .expect_err("JSON")
        .contains("k8s"));
}

/// The fuzz corpus's seed is this test's Service in its envelope (written
/// there when `WEFT_WRITE_FUZZ_SEEDS` is set).
#[test]
fn the_fuzz_seed_is_the_test_service() {
    is_fuzz_seed("proto_service/seed-service.pb", &envelope(&proto_service()));
}

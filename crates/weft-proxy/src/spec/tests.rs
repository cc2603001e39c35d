use super::*;

const ARTICLE_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: example-service
  namespace: default
spec:
  type: NodePort
  clusterIP: 10.254.180.209
  ports:
  - protocol: TCP
    port: 80
    targetPort: 80
    nodePort: 32663
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: example-service
  namespace: default
  labels:
    kubernetes.io/service-name: example-service
addressType: IPv4
endpoints:
- addresses: ["172.30.14.2"]
  nodeName: host1
- addresses: ["172.30.46.2"]
  conditions: {ready: true}
  nodeName: host3
ports:
- port: 80
  protocol: TCP
"#;

fn parse_err(text: &str) -> String {
    match parse_documents(text, "test.yaml") {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn article_service_and_endpoints_parse() {
    let objs = parse_documents(ARTICLE_SERVICE, "svc.yaml").expect("valid");
    let Object::Service(svc) = &objs[0] else {
        panic!("service first")
    };
    assert_eq!(svc.id.to_string(), "default/example-service");
    assert_eq!(svc.kind, ServiceType::NodePort);
    assert_eq!(svc.cluster_ip, Some("10.254.180.209".parse().expect("ip")));
    assert_eq!(svc.ports[0].node_port, Some(32663));
    assert_eq!(svc.ports[0].target_port, TargetPort::Number(80));
    let Object::Endpoints(eps) = &objs[1] else {
        panic!("endpoints second")
    };
    assert_eq!(eps.endpoints.len(), 2);
    assert_eq!(eps.endpoints[1].node.as_deref(), Some("host3"));
}

#[test]
fn canonical_json_round_trips() {
    for obj in parse_documents(ARTICLE_SERVICE, "svc.yaml").expect("valid") {
        let v = match &obj {
            Object::Service(s) => s.to_value(),
            Object::Endpoints(e) => e.to_value(),
        };
        assert_eq!(parse_object(&v, "again").expect("round trip"), obj);
    }
}

#[test]
fn json_list_and_array_are_flattened() {
    let text = r#"{"kind":"List","items":[
        {"kind":"Service","metadata":{"name":"a"},"spec":{"clusterIP":"10.254.0.10","ports":[{"port":53,"protocol":"UDP"}]}},
        {"kind":"Service","metadata":{"name":"b","namespace":"kube-system"},"spec":{"ports":[{"name":"dns","port":53},{"name":"dns-udp","port":53,"protocol":"udp"}]}}
    ]}"#;
    let objs = parse_documents(text, "list.json").expect("valid");
    assert_eq!(objs.len(), 2);
    let Object::Service(b) = &objs[1] else {
        panic!()
    };
    assert_eq!(b.cluster_ip, None);
    assert_eq!(b.ports[1].protocol, Protocol::Udp);
}

#[test]
fn bad_specs_name_the_field() {
    let cases = [
        (
            "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 70000}]}",
            "Service default/web: spec.ports[0].port: 70000 is out of range 1-65535",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, protocol: ICMP}]}",
            "Service default/web: spec.ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.254.1, ports: [{port: 80}]}",
            "Service default/web: spec.clusterIP: \"10.254.1\" is not an IP address",
        ),
        (
            "kind: Service\nmetadata: {name: Web}\nspec: {ports: [{port: 80}]}",
            "Service default/Web: metadata.name: \"Web\" is not a DNS label (lower-case letters, digits and '-', at most 63)",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}, {port: 81}]}",
            "Service default/web: spec.ports[0].name: required when a service has several ports",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, nodePort: 30080}]}",
            "Service default/web: spec.ports[0].nodePort: only a NodePort or LoadBalancer service has node ports",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {sessionAffinity: Sticky, ports: [{port: 80}]}",
            "Service default/web: spec.sessionAffinity: \"Sticky\" is not None or ClientIP",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {externalTrafficPolicy: Local, ports: [{port: 80}]}",
            "Service default/web: spec.externalTrafficPolicy: Local applies to services reachable from outside only (NodePort, LoadBalancer or with externalIPs)",
        ),
        (
            "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: \"80\"}]}",
            "Service default/web: spec.ports[0].port: expected an integer 1-65535, got \"80\"",
        ),
        (
            "kind: EndpointSlice\nmetadata: {name: web}\nendpoints: [{addresses: [10.0.0.300]}]",
            "EndpointSlice default/web: endpoints[0].addresses[0]: \"10.0.0.300\" is not an IP address",
        ),
        (
            "kind: EndpointSlice\nmetadata: {name: web}\naddressType: IPv6\nendpoints: [{addresses: [10.0.0.3]}]",
            "EndpointSlice default/web: endpoints[0].addresses[0]: 10.0.0.3 does not match addressType",
        ),
        (
            "kind: Pod\nmetadata: {name: web}",
            "test.yaml: kind: \"Pod\" is not Service or EndpointSlice",
        ),
        ("{\"kind\": ", "test.yaml: (document): invalid JSON: EOF while parsing a value at line 1 column 9"),
    ];
    for (text, want) in cases {
        assert_eq!(parse_err(text), want, "for {text}");
    }
}

#[test]
fn one_bad_object_fails_the_whole_file() {
    let text =
        format!("{ARTICLE_SERVICE}\n---\nkind: Service\nmetadata: {{name: x}}\nspec: {{}}\n");
    assert_eq!(
        parse_err(&text),
        "Service default/x: spec.ports: at least one port is required"
    );
}

#[test]
fn affinity_defaults_to_three_hours() {
    let text = "kind: Service\nmetadata: {name: web}\nspec: {sessionAffinity: ClientIP, ports: [{port: 80}]}";
    let objs = parse_documents(text, "t").expect("valid");
    let Object::Service(s) = &objs[0] else {
        panic!()
    };
    assert_eq!(s.affinity_seconds, Some(10800));
}

#[test]
fn service_names_parse_with_default_namespace() {
    assert_eq!(
        ServiceName::parse("web").expect("ok").to_string(),
        "default/web"
    );
    assert_eq!(
        ServiceName::parse("kube-system/dns")
            .expect("ok")
            .namespace
            .as_ref(),
        "kube-system"
    );
    assert!(ServiceName::parse("a/B").is_err());
}

/// Regression (fuzz target service_spec): a name with line breaks made a
/// multi-line error.
#[test]
fn errors_stay_on_one_line() {
    let text = include_str!("../../tests/golden/fuzz-multiline-name.yaml");
    let e = parse_documents(text, "t").expect_err("invalid name");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn load_balancer_fields_round_trip() {
    let text = "kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32011
  clusterIP: 10.254.1.11
  externalIPs: [192.0.2.50]
  loadBalancerSourceRanges: [198.18.0.0/24]
  ports: [{name: http, port: 80, nodePort: 30011}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.61}, {ip: 192.0.2.62, ipMode: Proxy}]
";
    let Object::Service(s) = parse_documents(text, "t").expect("valid").remove(0) else {
        panic!("a Service");
    };
    assert_eq!(
        s.load_balancer_ips.len(),
        1,
        "Proxy-mode ingress is left out"
    );
    assert_eq!(s.health_check_node_port, Some(32011));
    let back = Service::from_value(&s.to_value(), "t").expect("parses back");
    assert_eq!(back, s);
}

/// A proxy keeps every endpoint of the cluster (255,000 in the scale
/// benchmark): its size is memory.
#[test]
fn an_endpoint_is_32_bytes_and_shares_its_node_name() {
    assert_eq!(std::mem::size_of::<crate::spec::Endpoint>(), 32);
    let a = crate::spec::node_name("node-a");
    let b = crate::spec::node_name("node-a");
    assert_eq!(&*a, "node-a");
    assert_eq!(a, b);
    assert_eq!(format!("{a:?}"), "\"node-a\"");
}

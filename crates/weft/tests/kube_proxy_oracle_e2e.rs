//! The strongest oracle for `weft proxy` in iptables mode: the pinned
//! upstream kube-proxy and weft run side by side, each in its own network
//! namespace, against one kube-apiserver holding the same objects (Services
//! with every feature kube-proxy's iptables mode has), for the same node
//! name. Their `iptables-save` output, KUBE-* chains and the jumps into
//! them, must be equal after normalising counters and the order of rules
//! kube-proxy writes in Go map order (the shared `KUBE-SERVICES`,
//! `KUBE-NODEPORTS`, `KUBE-EXTERNAL-SERVICES` and `KUBE-PROXY-FIREWALL`
//! chains). Then the objects change (partial syncs) and a service with
//! 1,000 endpoints puts both into kube-proxy's large-cluster mode, and the
//! rules must still be equal.
//!
//! Both run from one KubeProxyConfiguration file (`--config`), as a
//! kube-proxy DaemonSet's ConfigMap would give them, and both take the
//! node's address from its Node object. The comparison and its deliberate
//! differences are `weft_lab::iptables_oracle`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_lab::iptables_oracle::{chains, difference, reachable};
use weft_lab::{sh, Host, Lab, Proc};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const NODE: &str = "node-a";
const CLUSTER_CIDR: &str = "172.30.0.0/16";

/// One EndpointSlice: `(address, node, ready, serving, terminating)`.
fn slice(
    ns: &str,
    service: &str,
    name: &str,
    family: &str,
    ports: &str,
    endpoints: &[(&str, &str, bool, bool, bool)],
) -> String {
    let mut y = format!(
        "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {service}
    endpointslice.kubernetes.io/managed-by: weft-tests
addressType: {family}
ports: {ports}
endpoints:
"
    );
    if endpoints.is_empty() {
        y = y.replace("endpoints:\n", "endpoints: []\n");
    }
    for (ip, node, ready, serving, terminating) in endpoints {
        y.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  nodeName: {node}\n  conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}\n"
        ));
    }
    y
}

fn ready(ip: &'static str, node: &'static str) -> (&'static str, &'static str, bool, bool, bool) {
    (ip, node, true, true, false)
}

const HTTP: &str = "[{name: http, port: 8080, protocol: TCP}]";
const UNNAMED: &str = "[{name: \"\", port: 80, protocol: TCP}]";

/// Every feature of kube-proxy's iptables mode, in two namespaces.
fn objects() -> String {
    let mut y = String::from(
        "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
---
apiVersion: v1
kind: Service
metadata: {name: example-service, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.254.180.209
  ports: [{port: 80, targetPort: 80, nodePort: 32663, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.254.1.1
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec:
  clusterIP: 10.254.1.2
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: np-local, namespace: shop}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 10.254.1.3
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30003, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: np-local-none, namespace: shop}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 10.254.1.4
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30004, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: itp-local, namespace: shop}
spec:
  internalTrafficPolicy: Local
  clusterIP: 10.254.1.5
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: itp-local-none, namespace: shop}
spec:
  internalTrafficPolicy: Local
  clusterIP: 10.254.1.6
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: shop}
spec:
  clusterIP: 10.254.1.7
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext-ip, namespace: shop}
spec:
  clusterIP: 10.254.1.8
  externalIPs: [192.0.2.50]
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext-ip-none, namespace: shop}
spec:
  clusterIP: 10.254.1.9
  externalIPs: [192.0.2.51]
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.254.1.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30010, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-local, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32011
  clusterIP: 10.254.1.11
  loadBalancerSourceRanges: [198.18.0.0/24, 203.0.113.0/24]
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30011, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-local-none, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32012
  clusterIP: 10.254.1.12
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30012, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-no-node-ports, namespace: shop}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  clusterIP: 10.254.1.13
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: terminating, namespace: shop}
spec:
  clusterIP: 10.254.1.14
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: not-serving, namespace: shop}
spec:
  clusterIP: 10.254.1.15
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: shop}
spec:
  type: ExternalName
  externalName: example.invalid
---
apiVersion: v1
kind: Service
metadata:
  name: other-proxy
  namespace: shop
  labels: {service.kubernetes.io/service-proxy-name: someone-else}
spec:
  clusterIP: 10.254.1.16
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: v6-slice, namespace: shop}
spec:
  clusterIP: 10.254.1.17
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: portless-slice, namespace: shop}
spec:
  clusterIP: 10.254.1.18
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: udp-np, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.254.1.19
  ports: [{name: syslog, port: 514, targetPort: 514, nodePort: 30019, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-proxy-mode, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.254.1.20
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30020, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: np-sticky-local, namespace: shop}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  sessionAffinity: ClientIP
  externalIPs: [192.0.2.52]
  clusterIP: 10.254.1.21
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30021, protocol: TCP}
  - {name: https, port: 443, targetPort: 8443, nodePort: 30022, protocol: TCP}
",
    );
    y.push('\n');
    y.push_str(&slice(
        "default",
        "example-service",
        "example-service-1",
        "IPv4",
        UNNAMED,
        &[
            ready("172.30.14.2", "node-a"),
            ready("172.30.46.2", "node-b"),
        ],
    ));
    // twelve endpoints in two slices, one of them in both: kube-proxy sorts
    // endpoints as strings ("…10:8080" before "…2:8080")
    let web_a: Vec<_> = [
        "172.30.1.2",
        "172.30.1.3",
        "172.30.1.4",
        "172.30.1.5",
        "172.30.1.6",
        "172.30.1.7",
    ]
    .iter()
    .map(|ip| ready(ip, "node-b"))
    .collect();
    let web_b: Vec<_> = [
        "172.30.1.7",
        "172.30.1.8",
        "172.30.1.9",
        "172.30.1.10",
        "172.30.1.11",
        "172.30.1.12",
        "172.30.1.13",
    ]
    .iter()
    .map(|ip| ready(ip, "node-a"))
    .collect();
    let web_ports =
        "[{name: http, port: 8080, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]";
    y.push_str(&slice("shop", "web", "web-a", "IPv4", web_ports, &web_a));
    y.push_str(&slice("shop", "web", "web-b", "IPv4", web_ports, &web_b));
    let local_and_remote = [ready("172.30.2.2", "node-a"), ready("172.30.2.3", "node-b")];
    for svc in [
        "np-local",
        "itp-local",
        "ext-ip",
        "lb",
        "lb-local",
        "lb-no-node-ports",
    ] {
        y.push_str(&slice(
            "shop",
            svc,
            &format!("{svc}-1"),
            "IPv4",
            HTTP,
            &local_and_remote,
        ));
    }
    y.push_str(&slice(
        "shop",
        "lb-proxy-mode",
        "lb-proxy-mode-1",
        "IPv4",
        HTTP,
        &local_and_remote,
    ));
    let remote_only = [ready("172.30.3.2", "node-b"), ready("172.30.3.3", "node-b")];
    for svc in ["np-local-none", "itp-local-none", "lb-local-none"] {
        y.push_str(&slice(
            "shop",
            svc,
            &format!("{svc}-1"),
            "IPv4",
            HTTP,
            &remote_only,
        ));
    }
    y.push_str(&slice(
        "shop",
        "sticky",
        "sticky-1",
        "IPv4",
        HTTP,
        &[
            ready("172.30.4.2", "node-a"),
            ready("172.30.4.3", "node-b"),
            ready("172.30.4.4", "node-b"),
        ],
    ));
    y.push_str(&slice(
        "shop",
        "terminating",
        "terminating-1",
        "IPv4",
        HTTP,
        &[
            ("172.30.5.2", "node-a", false, true, true),
            ("172.30.5.3", "node-b", false, true, true),
            ("172.30.5.4", "node-b", false, false, true),
        ],
    ));
    y.push_str(&slice(
        "shop",
        "not-serving",
        "not-serving-1",
        "IPv4",
        HTTP,
        &[("172.30.6.2", "node-a", false, false, false)],
    ));
    y.push_str(&slice(
        "shop",
        "v6-slice",
        "v6-slice-1",
        "IPv6",
        HTTP,
        &[ready("fd00:30::2", "node-a")],
    ));
    y.push_str(&slice(
        "shop",
        "portless-slice",
        "portless-slice-1",
        "IPv4",
        "[]",
        &[ready("172.30.7.2", "node-a")],
    ));
    y.push_str(&slice(
        "shop",
        "udp-np",
        "udp-np-1",
        "IPv4",
        "[{name: syslog, port: 514, protocol: UDP}]",
        &[ready("172.30.8.2", "node-b")],
    ));
    y.push_str(&slice(
        "shop",
        "np-sticky-local",
        "np-sticky-local-1",
        "IPv4",
        "[{name: http, port: 8080, protocol: TCP}, {name: https, port: 8443, protocol: TCP}]",
        &[
            ready("172.30.9.2", "node-a"),
            ready("172.30.9.3", "node-a"),
            ready("172.30.9.4", "node-b"),
        ],
    ));
    for i in 0..20 {
        y.push_str(&format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: plain-{i}, namespace: default}}
spec:
  clusterIP: 10.254.2.{}
  ports: [{{port: 80, targetPort: 8080, protocol: TCP}}]
",
            i + 1
        ));
        let endpoints: Vec<(String, &str, bool, bool, bool)> = (0..=(i % 4))
            .map(|k| {
                (
                    format!("172.30.{}.{}", 20 + i, k + 2),
                    "node-b",
                    true,
                    true,
                    false,
                )
            })
            .collect();
        let eps: Vec<(&str, &str, bool, bool, bool)> = endpoints
            .iter()
            .map(|(ip, n, r, s, t)| (ip.as_str(), *n, *r, *s, *t))
            .collect();
        y.push_str(&slice(
            "default",
            &format!("plain-{i}"),
            &format!("plain-{i}-1"),
            "IPv4",
            "[{name: \"\", port: 8080, protocol: TCP}]",
            &eps,
        ));
    }
    y
}

/// Load-balancer status: one VIP-mode ingress per service, one in Proxy
/// mode (which kube-proxy ignores).
fn ingress(api: &weft_lab::ApiServer) {
    for (svc, ip, mode) in [
        ("lb", "192.0.2.60", "VIP"),
        ("lb-local", "192.0.2.61", "VIP"),
        ("lb-local-none", "192.0.2.62", "VIP"),
        ("lb-no-node-ports", "192.0.2.63", "VIP"),
        ("lb-proxy-mode", "192.0.2.64", "Proxy"),
    ] {
        let patch = format!(
            r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}","ipMode":"{mode}"}}]}}}}}}"#
        );
        api.kubectl(&[
            "-n",
            "shop",
            "patch",
            "service",
            svc,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .expect("load-balancer status");
    }
}

struct Side<'a> {
    host: &'a Host,
}

/// Waits until kube-proxy's rules show `marker` (they are written in one
/// transaction), then until both hosts hold equal rules (for both
/// families), or fails with the difference.
fn converge(what: &str, marker: &str, kube: Side, weft: Side, logs: &dyn Fn() -> String) {
    let started = Instant::now();
    loop {
        let out =
            sh("ip", &["netns", "exec", &kube.host.ns, "iptables-save"]).expect("iptables-save");
        if String::from_utf8_lossy(&out.stdout).contains(marker) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: kube-proxy never wrote {marker:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    loop {
        let mut diff = String::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            let (k, w) = (
                reachable(&chains(&kube.host.ns, tool).expect(tool)),
                chains(&weft.host.ns, tool).expect(tool),
            );
            let d = difference(&k, &w);
            if !d.is_empty() {
                diff.push_str(&format!("== {tool}\n{d}"));
            }
            if std::env::var_os("WEFT_ORACLE_DUMP").is_some() {
                eprintln!("== {tool} kube-proxy\n{k:#?}\n== {tool} weft\n{w:#?}");
            }
        }
        if diff.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{what}: kube-proxy's and weft's rules differ:\n{diff}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One HTTP/1.1 request to `host`'s own address.
fn get(host: &Host, port: u16, path: &str) -> String {
    let addr = std::net::SocketAddr::new(host.ip.into(), port);
    weft_lab::http_get_at(&host.ns, addr, path).unwrap_or_default()
}

fn status_and_body(response: &str) -> (String, String) {
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn header(response: &str, name: &str) -> Option<String> {
    response
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// One KubeProxyConfiguration for both proxies (as a kube-proxy
/// DaemonSet's ConfigMap): kube-proxy and `weft proxy` each run with
/// `--config` only.
fn config_file(lab: &Lab, api: &weft_lab::ApiServer) -> std::path::PathBuf {
    api.kube_proxy_config(
        lab.dir(),
        NODE,
        "iptables",
        CLUSTER_CIDR,
        "iptables:\n  syncPeriod: 30s\n  minSyncPeriod: 0s\n",
    )
    .expect("config file")
}

/// kube-proxy's metric families in a /metrics text: name (without a
/// counter's `_total`, which OpenMetrics keeps off the TYPE line) -> type.
fn metric_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| name.starts_with("kubeproxy_"))
        .map(|(name, kind)| {
            let name = if kind == "counter" {
                name.trim_end_matches("_total")
            } else {
                name
            };
            (name.to_string(), kind.trim().to_string())
        })
        .collect()
}

/// Every `kubeproxy_*` family weft claims (same meaning) that the pinned
/// kube-proxy shows after its first sync is on weft's /metrics, with the
/// same type.
fn same_kube_proxy_metrics(kube_host: &Host, weft_host: &Host) {
    const CLAIMED: &[&str] = &[
        "kubeproxy_sync_proxy_rules_duration_seconds",
        "kubeproxy_sync_full_proxy_rules_duration_seconds",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_service_changes",
        "kubeproxy_sync_proxy_rules_endpoint_changes",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures",
    ];
    let kube = weft_lab::http_get(&kube_host.ns, 10249, "/metrics").expect("kube-proxy /metrics");
    let weft = weft_lab::http_get(&weft_host.ns, 10249, "/metrics").expect("weft /metrics");
    let (kube, weft) = (metric_types(&kube), metric_types(&weft));
    let shown: Vec<&&str> = CLAIMED.iter().filter(|n| kube.contains_key(**n)).collect();
    assert!(
        shown.len() >= 5,
        "kube-proxy shows few of the claimed families: {kube:?}"
    );
    for name in shown {
        assert_eq!(weft.get(*name), kube.get(*name), "{name}: weft {weft:?}");
    }
}

/// kube-proxy's network programming latency, observed by both after a
/// slice with a trigger time reached the kernel.
fn same_programming_latency(kube_host: &Host, weft_host: &Host) {
    const NAME: &str = "kubeproxy_network_programming_duration_seconds";
    // none before the first observation: the family shows with it
    let count = |host: &Host| -> Option<f64> {
        let text = weft_lab::http_get(&host.ns, 10249, "/metrics").expect("/metrics");
        let kind = metric_types(&text).get(NAME).cloned()?;
        assert_eq!(kind, "histogram", "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{NAME}_count{{ip_family=\"IPv4\"}} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    weft_lab::eventually(Duration::from_secs(10), "programming latency", || {
        let seen = |host| count(host).is_some_and(|n| n >= 1.0);
        (seen(kube_host) && seen(weft_host)).then_some(())
    });
}

fn start_kube_proxy(lab: &Lab, api: &weft_lab::ApiServer, host: &Host) -> Proc {
    api.start_kube_proxy(
        host,
        lab.dir().join("kube-proxy.log"),
        &config_file(lab, api),
    )
    .expect("kube-proxy")
}

#[test]
fn weft_writes_the_rules_kube_proxy_writes() {
    let mut lab = Lab::new("wko", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    api.apply(&objects()).expect("objects");
    ingress(&api);
    // both proxies take node-a's address from its Node (one in both
    // hosts' network, so a source range holding it holds either host)
    api.kubectl(&[
        "patch",
        "node",
        NODE,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"198.18.0.11"},{"type":"InternalIP","address":"fd00:198:18::11"}]}}"#,
    ])
    .expect("node address");

    let kube_host = lab.host("kp", 11).expect("host");
    let weft_host = lab.host("wp", 12).expect("host");
    let mut kube_proxy = start_kube_proxy(&lab, &api, &kube_host);
    let config = config_file(&lab, &api);
    lab.start_proxy_args(
        &weft_host,
        &[
            "proxy".to_string(),
            format!("--config={}", config.display()),
        ],
    )
    .expect("weft proxy");
    let logs = || {
        format!(
            "--- kube-proxy log (tail)\n{}\n--- weft proxy log\n{}",
            weft_lab::tail(&lab.dir().join("kube-proxy.log"), 30),
            lab.proxy_log(&weft_host)
        )
    };
    let sides = || (Side { host: &kube_host }, Side { host: &weft_host });

    let (k, w) = sides();
    converge(
        "the first full sync",
        "default/example-service cluster IP",
        k,
        w,
        &logs,
    );

    // kube-proxy's health endpoints: each LoadBalancer Service with
    // externalTrafficPolicy Local answers on its health check node port
    // (200 with local endpoints, 503 without), in the same words.
    for port in [32011, 32012] {
        let (k, w) = (get(&kube_host, port, "/"), get(&weft_host, port, "/"));
        assert_eq!(
            status_and_body(&w),
            status_and_body(&k),
            "port {port}\n{w}\n{k}"
        );
        assert_eq!(
            header(&w, "X-Load-Balancing-Endpoint-Weight"),
            header(&k, "X-Load-Balancing-Endpoint-Weight")
        );
    }
    assert!(get(&weft_host, 32011, "/").starts_with("HTTP/1.1 200"));
    assert!(get(&weft_host, 32012, "/").starts_with("HTTP/1.1 503"));
    for path in ["/healthz", "/livez"] {
        let (k, w) = (get(&kube_host, 10256, path), get(&weft_host, 10256, path));
        assert_eq!(status_and_body(&w).0, status_and_body(&k).0, "{path}");
        let fields = |r: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(&status_and_body(r).1).expect("json");
            let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(fields(&w), fields(&k), "{path}: {w}\n{k}");
    }

    same_kube_proxy_metrics(&kube_host, &weft_host);

    // Changes, applied by both as partial syncs.
    api.kubectl(&["delete", "service", "plain-0"])
        .expect("delete");
    api.kubectl(&["-n", "shop", "delete", "endpointslice", "web-b"])
        .expect("delete slice");
    let mut changed = slice(
        "default",
        "example-service",
        "example-service-1",
        "IPv4",
        UNNAMED,
        &[
            ready("172.30.14.2", "node-a"),
            ("172.30.46.2", "node-b", false, false, false),
        ],
    );
    changed.push_str(
        "---
apiVersion: v1
kind: Service
metadata: {name: np-local, namespace: shop}
spec:
  type: NodePort
  externalTrafficPolicy: Cluster
  clusterIP: 10.254.1.3
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30003, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: shop}
spec:
  clusterIP: 10.254.1.7
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 1200}}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
",
    );
    api.apply(&changed).expect("changes");
    let mut late = String::from(
        "apiVersion: v1
kind: Service
metadata: {name: late, namespace: shop}
spec:
  clusterIP: 10.254.1.30
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
",
    );
    late.push_str(&slice(
        "shop",
        "late",
        "late-1",
        "IPv4",
        HTTP,
        &[ready("172.30.10.2", "node-a")],
    ));
    // as the EndpointSlice controller would, the slice says when the
    // change behind it happened: both proxies report the time from then
    // until the kernel had it
    let now = sh("date", &["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"]).expect("date");
    let now = String::from_utf8_lossy(&now.stdout).trim().to_string();
    let late = late.replace(
        "  name: late-1\n",
        &format!("  name: late-1\n  annotations: {{endpoints.kubernetes.io/last-change-trigger-time: \"{now}\"}}\n"),
    );
    api.apply(&late).expect("late service");
    let (k, w) = sides();
    converge("partial syncs", "shop/late:http cluster IP", k, w, &logs);
    same_programming_latency(&kube_host, &weft_host);

    // More than 1,000 endpoints: kube-proxy's large-cluster mode drops the
    // endpoint rules' comments. (A running kube-proxy applies the mode to
    // the services it rewrites only, until its next full sync: restarted,
    // it writes them all. weft rewrites everything when the mode changes.)
    let ips: Vec<String> = (0..1200)
        .map(|i| format!("172.30.{}.{}", 100 + i / 200, 2 + i % 200))
        .collect();
    let mut big = String::from(
        "apiVersion: v1
kind: Service
metadata: {name: big, namespace: shop}
spec:
  clusterIP: 10.254.1.31
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
",
    );
    for (i, chunk) in ips.chunks(600).enumerate() {
        let eps: Vec<_> = chunk
            .iter()
            .map(|ip| (ip.as_str(), "node-b", true, true, false))
            .collect();
        big.push_str(&slice(
            "shop",
            "big",
            &format!("big-{i}"),
            "IPv4",
            HTTP,
            &eps,
        ));
    }
    api.apply(&big).expect("big service");
    kube_proxy.stop(Duration::from_secs(5));
    let _kube_proxy = start_kube_proxy(&lab, &api, &kube_host);
    let (k, w) = sides();
    converge(
        "large-cluster mode",
        "shop/big:http cluster IP",
        k,
        w,
        &logs,
    );
    let saved = sh(
        "ip",
        &["netns", "exec", &weft_host.ns, "iptables-save", "-t", "nat"],
    )
    .expect("iptables-save");
    let saved = String::from_utf8_lossy(&saved.stdout);
    assert!(
        !saved.contains("\"shop/big:http -> "),
        "large-cluster mode keeps no endpoint comments"
    );
}

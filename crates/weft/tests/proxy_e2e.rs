//! End to end: `weft proxy` on a 3-host vxlan cluster in network namespaces
//! with a real etcd. Pods on other hosts reach cluster IPs and node ports
//! over real TCP and UDP; both endpoints answer; a removed endpoint stops
//! answering; a service without endpoints is refused at once; ClientIP
//! affinity keeps a client on one endpoint; externalTrafficPolicy Local
//! keeps node-port traffic on the node. Once with iptables, once with nft.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_lab::{eventually, http_get, serve_name, sh, tcp_ask, udp_ask, Host, Lab, Pod};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
const T: Duration = Duration::from_secs(2);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// Answers of `n` TCP connections from `pod` to `to` (errors as text).
fn answers(pod: &Pod, to: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| tcp_ask(&pod.ns, to, T).unwrap_or_else(|e| format!("error: {e}")))
        .collect()
}

/// `weft service endpoints add <service> <pod ip> --node <node>`.
fn add_endpoint(lab: &Lab, service: &str, pod: &Pod, node: &str) {
    let ip = pod.ip.to_string();
    lab.weft_client(&["service", "endpoints", "add", service, &ip, "--node", node])
        .expect("endpoints");
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// Scrapes the proxy's /metrics in the host's namespace.
fn scrape(host: &Host) -> String {
    http_get(&host.ns, 10249, "/metrics").expect("the metrics endpoint answers")
}

fn metric(text: &str, name: &str) -> f64 {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus text parses");
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("metric {name} in {body}"));
    match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name}: unexpected type"),
    }
}

/// Every `weft_proxy_fast_path_fallbacks_total` sample: (path, count).
fn fast_path_fallbacks(text: &str) -> Vec<(String, f64)> {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus text parses");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "weft_proxy_fast_path_fallbacks_total")
        .map(|s| {
            let path = s.labels.get("path").unwrap_or("?").to_string();
            let n = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (path, n)
        })
        .collect()
}

/// The proxy in `mode`; with `legacy`, iptables rules go to the legacy
/// backend, written by weft's own x_tables writer.
fn scenario(mode: &str, legacy: bool) {
    let mut lab = Lab::new("wtp", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let hosts: Vec<Host> = (0..3)
        .map(|i| lab.host(&format!("h{}", i + 1), 21 + i).expect("host"))
        .collect();
    for h in &hosts {
        lab.start_agent(h, &[]).expect("agent");
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(20))
            .expect("subnet");
        // Nodes route service addresses somewhere (a default route in real
        // life): without a route, the kernel would refuse before the proxy.
        sh(
            "ip",
            &["-n", &h.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
        )
        .expect("route");
        let mut args = vec![format!("--proxy-mode={mode}")];
        if legacy {
            args.push("--iptables-backend=legacy".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.start_proxy(h, &args).expect("proxy");
    }
    let web1 = lab.pod(&hosts[0], "web1").expect("pod");
    let web2 = lab.pod(&hosts[1], "web2").expect("pod");
    let client = lab.pod(&hosts[2], "client").expect("pod");
    let _s1 = serve_name(&web1, 80).expect("server");
    let _s2 = serve_name(&web2, 80).expect("server");

    // The article's service.
    let out = lab
        .weft_client(&[
            "service",
            "expose",
            "example-service",
            "--port",
            "80",
            "--type",
            "NodePort",
            "--node-port",
            "32663",
            "--cluster-ip",
            "10.254.180.209",
        ])
        .expect("expose");
    assert!(out.contains("cluster IP 10.254.180.209"), "{out}");
    add_endpoint(&lab, "example-service", &web1, "h1");
    add_endpoint(&lab, "example-service", &web2, "h2");
    let vip = addr("10.254.180.209:80");
    let both = BTreeSet::from(["web1".to_string(), "web2".to_string()]);
    eventually(
        Duration::from_secs(15),
        "the cluster IP answers from both endpoints",
        || (set(&answers(&client, vip, 12)) == both).then_some(()),
    );
    // Node port on another node (h1), from a pod on h3 and from h3 itself.
    let np = SocketAddr::new(hosts[0].ip.into(), 32663);
    eventually(
        Duration::from_secs(5),
        "the node port answers from both endpoints",
        || (set(&answers(&client, np, 12)) == both).then_some(()),
    );
    let host_client = Pod {
        name: "h3".into(),
        ns: hosts[2].ns.clone(),
        ip: hosts[2].ip,
        ip6: None,
        host: "h3".into(),
    };
    assert!(both.contains(&tcp_ask(&host_client.ns, np, T).expect("node port from a host")));

    // The rules kube-proxy would write for it.
    if mode == "iptables" {
        let save = if legacy {
            "iptables-legacy-save"
        } else {
            "iptables-save"
        };
        let saved = sh("ip", &["netns", "exec", &hosts[2].ns, save, "-t", "nat"]).expect("save");
        let saved = String::from_utf8_lossy(&saved.stdout).into_owned();
        assert!(saved.contains("-A KUBE-SERVICES -d 10.254.180.209/32 -p tcp -m comment --comment \"default/example-service cluster IP\" -m tcp --dport 80 -j KUBE-SVC-QLK4GP7H447Z7HSM"), "{saved}");
    } else {
        let listed = sh(
            "ip",
            &["netns", "exec", &hosts[2].ns, "nft", "list", "ruleset"],
        )
        .expect("nft");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(
            listed.contains("10.254.180.209 . tcp . 80 : goto service-"),
            "{listed}"
        );
        // No IPv6 service, no IPv6 tables.
        assert!(!listed.contains("table ip6 kube-proxy"), "{listed}");
    }

    // Removing an endpoint stops traffic to it.
    lab.weft_client(&[
        "service",
        "endpoints",
        "remove",
        "example-service",
        &web2.ip.to_string(),
    ])
    .expect("remove endpoint");
    eventually(Duration::from_secs(10), "only web1 answers", || {
        (set(&answers(&client, vip, 12)) == BTreeSet::from(["web1".to_string()])).then_some(())
    });

    // A service without endpoints is refused at once (REJECT, not a timeout).
    lab.weft_client(&[
        "service",
        "expose",
        "empty",
        "--port",
        "80",
        "--cluster-ip",
        "10.254.0.50",
    ])
    .expect("expose empty");
    let empty = addr("10.254.0.50:80");
    let refused = |_: ()| match tcp_ask(&client.ns, empty, T) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
        _ => None,
    };
    eventually(
        Duration::from_secs(10),
        "connection refused",
        || refused(()),
    );
    // Once the rule is in, refusal is immediate (a drop would take a retry).
    let t = Instant::now();
    assert!(refused(()).is_some());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "refused after {:?}",
        t.elapsed()
    );

    // ClientIP affinity: one client stays on one endpoint.
    lab.weft_client(&[
        "service",
        "expose",
        "sticky",
        "--port",
        "8080:80",
        "--cluster-ip",
        "10.254.0.51",
        "--session-affinity",
        "ClientIP",
    ])
    .expect("expose sticky");
    lab.weft_client(&[
        "service",
        "endpoints",
        "add",
        "sticky",
        &web1.ip.to_string(),
        &web2.ip.to_string(),
    ])
    .expect("endpoints");
    let sticky = addr("10.254.0.51:8080");
    eventually(Duration::from_secs(10), "sticky answers", || {
        tcp_ask(&client.ns, sticky, T).ok()
    });
    let got = answers(&client, sticky, 16);
    assert_eq!(set(&got).len(), 1, "affinity broken: {got:?}");

    // UDP through a cluster IP.
    lab.weft_client(&[
        "service",
        "expose",
        "dns",
        "--port",
        "53:80/udp",
        "--cluster-ip",
        "10.254.0.53",
    ])
    .expect("expose udp");
    lab.weft_client(&["service", "endpoints", "add", "dns", &web2.ip.to_string()])
        .expect("endpoints");
    let dns = addr("10.254.0.53:53");
    eventually(Duration::from_secs(10), "udp answer", || {
        udp_ask(&client.ns, dns, Duration::from_millis(500))
            .ok()
            .filter(|a| a == "web2")
    });

    // externalTrafficPolicy Local: a node port serves only its node's endpoints.
    lab.weft_client(&[
        "service",
        "expose",
        "local",
        "--port",
        "80",
        "--type",
        "NodePort",
        "--node-port",
        "30081",
        "--cluster-ip",
        "10.254.0.52",
        "--external-traffic-policy",
        "Local",
    ])
    .expect("expose local");
    add_endpoint(&lab, "local", &web1, "h1");
    add_endpoint(&lab, "local", &web2, "h2");
    let via_h2 = SocketAddr::new(hosts[1].ip.into(), 30081);
    eventually(Duration::from_secs(10), "local node port answers", || {
        (set(&answers(&host_client, via_h2, 10)) == BTreeSet::from(["web2".to_string()]))
            .then_some(())
    });

    let list = lab.weft_client(&["service", "list"]).expect("list");
    assert!(
        list.contains("example-service")
            && list.contains("10.254.180.209")
            && list.contains("80:32663/TCP"),
        "{list}"
    );

    // A bad value written straight into etcd is refused with its field,
    // and the last good version of the service stays in force.
    lab.etcdctl(&[
        "put",
        "/weft/services/default/example-service",
        r#"{"kind":"Service","metadata":{"name":"example-service"},"spec":{"ports":[{"port":0}]}}"#,
    ])
    .expect("put");
    eventually(Duration::from_secs(5), "the bad value logged", || {
        lab.proxy_log(&hosts[2])
            .contains("spec.ports[0].port: 0 is out of range")
            .then_some(())
    });
    assert_eq!(
        set(&answers(&client, vip, 4)),
        BTreeSet::from(["web1".to_string()])
    );

    // Metrics, read with a Prometheus parser.
    let m = scrape(&hosts[2]);
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert_eq!(metric(&m, "weft_proxy_services"), 5.0);
    assert!(metric(&m, "weft_proxy_syncs_partial_total") >= 5.0);
    assert_eq!(metric(&m, "weft_proxy_sync_errors_total"), 0.0);
    // the fast paths held: libnftables, nf_tables netlink and sets' sizes
    // raised in place (nftables mode), weft's x_tables reader and writer
    // (legacy); a fallback would be correct but slow
    for h in &hosts {
        let fallbacks = fast_path_fallbacks(&scrape(h));
        assert_eq!(fallbacks.len(), 5, "{fallbacks:?}");
        assert!(
            fallbacks.iter().all(|(_, n)| *n == 0.0),
            "{}: fast paths fell back: {fallbacks:?}",
            h.name
        );
    }

    // Rules removed from outside (a firewall reload, a flush) are put
    // back within about a second, not at the next periodic full sync.
    let flush: Vec<Vec<&str>> = match (mode, legacy) {
        ("nftables", _) => vec![vec!["nft", "flush", "ruleset"]],
        (_, true) => vec![
            vec!["iptables-legacy", "-t", "nat", "-F"],
            vec!["iptables-legacy", "-F"],
        ],
        _ => vec![vec!["iptables", "-t", "nat", "-F"], vec!["iptables", "-F"]],
    };
    let before = metric(&scrape(&hosts[2]), "weft_proxy_rules_restored_total");
    let flushed = std::time::Instant::now();
    for cmd in &flush {
        let mut args = vec!["netns", "exec", &hosts[2].ns];
        args.extend(cmd);
        sh("ip", &args).expect("flush");
    }
    eventually(Duration::from_secs(10), "the service after a flush", || {
        tcp_ask(&client.ns, vip, Duration::from_millis(300)).ok()
    });
    let took = flushed.elapsed();
    eprintln!(
        "{mode}{}: rules restored {took:?} after a flush",
        if legacy { " (legacy)" } else { "" }
    );
    assert!(took < Duration::from_secs(3), "restored after {took:?}");
    assert!(metric(&scrape(&hosts[2]), "weft_proxy_rules_restored_total") > before);

    // --cleanup removes every rule.
    let out = sh(
        "ip",
        &["netns", "exec", &hosts[0].ns, WEFT, "proxy", "--cleanup"],
    )
    .expect("cleanup");
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    for h in &hosts {
        let errors: Vec<String> = lab
            .proxy_log(h)
            .lines()
            .filter(|l| {
                (l.contains("ERROR") || l.contains("x_tables writer:"))
                    && !l.contains("ignoring /weft/services/default/example-service")
            })
            .map(String::from)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        if legacy {
            let log = lab.proxy_log(h);
            assert!(log.contains("written by weft's x_tables writer"), "{log}");
        }
    }
}

#[test]
fn proxy_iptables_mode_serves_cluster_ips_and_node_ports() {
    scenario("iptables", false);
}

#[test]
fn proxy_iptables_mode_on_legacy_serves_cluster_ips_and_node_ports() {
    scenario("iptables", true);
}

#[test]
fn proxy_nftables_mode_serves_cluster_ips_and_node_ports() {
    scenario("nftables", false);
}

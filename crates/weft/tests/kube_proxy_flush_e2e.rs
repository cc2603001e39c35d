//! Rules removed from outside, weft beside kube-proxy: the pinned
//! kube-proxy and `weft proxy` run from one KubeProxyConfiguration, each
//! in its own network namespace, against one kube-apiserver. Once both
//! have programmed the Service, both namespaces get the same flush (a
//! firewall reload's: every table's rules and chains; in nftables mode
//! `nft flush ruleset`), and the time until each has its Service back in
//! the kernel is measured in the same run. weft checks its entry points
//! four times a second (`weft_proxy::shell::canary`). kube-proxy v1.36.3's
//! iptables mode checks its KUBE-PROXY-CANARY chain once per sync period
//! (30 s, its default); its nftables mode has no such check and puts the
//! rules back at its next full sync, at most an hour later
//! (`proxyutil.FullSyncPeriod`), so it is reported as not back within the
//! deadline, which is past its sync period.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_lab::{sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const NODE: &str = "node-a";
const CLUSTER_IP: &str = "10.254.7.7";
/// How long kube-proxy is waited for (its sync period and a margin).
const KUBE_PROXY_DEADLINE: Duration = Duration::from_secs(45);

const OBJECTS: &str = "apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.254.7.7
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [172.30.14.2]
  nodeName: node-a
  conditions: {ready: true, serving: true, terminating: false}
";

fn in_ns(host: &Host, cmd: &[&str]) -> String {
    let mut args = vec!["netns", "exec", &host.ns];
    args.extend(cmd);
    match sh("ip", &args) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => String::new(),
    }
}

/// Whether the Service is reachable through the proxy's rules: the entry
/// point from the prerouting hook and the cluster IP behind it.
fn in_place(host: &Host, mode: &str) -> bool {
    if mode == "nftables" {
        let table = in_ns(host, &["nft", "list", "table", "ip", "kube-proxy"]);
        table.contains("jump services") && table.contains(CLUSTER_IP)
    } else {
        let nat = in_ns(host, &["iptables-nft-save", "-t", "nat"]);
        nat.lines()
            .any(|l| l.starts_with("-A PREROUTING") && l.ends_with("-j KUBE-SERVICES"))
            && nat.contains(&format!("{CLUSTER_IP}/32"))
    }
}

/// A firewall reload's flush, in `host`'s namespace: iptables-restore of
/// empty tables (what `service iptables reload` does: each table's rules
/// and chains removed in one transaction), or `nft flush ruleset`.
fn flush(host: &Host, mode: &str) {
    let script = if mode == "nftables" {
        "nft flush ruleset"
    } else {
        "printf '*nat\\nCOMMIT\\n*filter\\nCOMMIT\\n*mangle\\nCOMMIT\\n' | iptables-nft-restore"
    };
    sh("ip", &["netns", "exec", &host.ns, "sh", "-c", script])
        .unwrap_or_else(|e| panic!("{script}: {e}"));
}

fn restored_total(host: &Host) -> f64 {
    let text = weft_lab::http_get(&host.ns, 10249, "/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("weft_proxy_rules_restored_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn scenario(mode: &str, prefix: &str) {
    let mut lab = Lab::new(prefix, Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    api.apply(OBJECTS).expect("objects");
    let kube_host = lab.host("kp", 11).expect("host");
    let weft_host = lab.host("wp", 12).expect("host");
    let config = api
        .kube_proxy_config(lab.dir(), NODE, mode, "172.30.0.0/16", "")
        .expect("config file");
    let _kube_proxy = api
        .start_kube_proxy(&kube_host, lab.dir().join("kube-proxy.log"), &config)
        .expect("kube-proxy");
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
    let start = Instant::now();
    while !(in_place(&kube_host, mode) && in_place(&weft_host, mode)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{mode}: the first sync\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let restored_before = restored_total(&weft_host);

    // The same flush in both, one right after the other; each side's time
    // counts from its own flush.
    flush(&weft_host, mode);
    let weft_flushed = Instant::now();
    flush(&kube_host, mode);
    let kube_flushed = Instant::now();
    let (mut weft_took, mut kube_took) = (None, None);
    while kube_flushed.elapsed() < KUBE_PROXY_DEADLINE
        && (weft_took.is_none() || kube_took.is_none())
    {
        if weft_took.is_none() && in_place(&weft_host, mode) {
            weft_took = Some(weft_flushed.elapsed());
        }
        if kube_took.is_none() && in_place(&kube_host, mode) {
            kube_took = Some(kube_flushed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = |t: Option<Duration>| match t {
        Some(t) => format!("{:.2} s", t.as_secs_f64()),
        None => format!("not within {} s", KUBE_PROXY_DEADLINE.as_secs()),
    };
    eprintln!(
        "{mode}: rules back after a flush: weft {}, kube-proxy v1.36.3 {}",
        shown(weft_took),
        shown(kube_took)
    );
    let weft_took = weft_took.unwrap_or_else(|| panic!("{mode}: weft never restored\n{}", logs()));
    // the canary's path, not the periodic full sync (15 minutes)
    assert!(
        weft_took < Duration::from_secs(10),
        "{mode}: weft took {weft_took:?}\n{}",
        logs()
    );
    assert!(
        restored_total(&weft_host) > restored_before,
        "the metric counts it"
    );
    assert!(
        lab.proxy_log(&weft_host).contains("removed from outside"),
        "said in the log"
    );
}

#[test]
fn rules_come_back_after_a_flush_iptables_mode_weft_beside_kube_proxy() {
    scenario("iptables", "wfi");
}

#[test]
fn rules_come_back_after_a_flush_nftables_mode_weft_beside_kube_proxy() {
    scenario("nftables", "wfn");
}

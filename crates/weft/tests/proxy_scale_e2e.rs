//! The proxy at a size that fits the suite: 400 Services × 50 endpoints
//! (20,000) on a real kube-apiserver. `weft proxy` on host A programs
//! them, then follows changes (endpoints replaced in 20 Services, one
//! Service added, one deleted) with partial syncs only (its metrics: no
//! full sync after the first). A second proxy started fresh on host B
//! with the same objects does one full sync; the two kernels must hold
//! the same rules (compared as sorted lines, pool slots aside: the
//! partial path must end where a full sync ends). Timing targets live in `weft-bench
//! --scenario proxy-scale`, not here.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_lab::{metric_value, metrics, sh, ApiServer, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SERVICES: usize = 400;
const ENDPOINTS: usize = 50;

fn cluster_ip(i: usize) -> String {
    format!("10.254.{}.{}", 1 + i / 250, 1 + i % 250)
}

fn endpoint_ip(i: usize, j: usize, generation: usize) -> String {
    let n = i * ENDPOINTS + j;
    format!("100.{}.{}.{}", 64 + generation, n / 250, 1 + n % 250)
}

fn service_yaml(i: usize) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: default}}
spec:
  clusterIP: {}
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
",
        cluster_ip(i)
    )
}

fn slice_yaml(i: usize, generation: usize) -> String {
    let eps: String = (0..ENDPOINTS)
        .map(|j| {
            format!(
                "- addresses: [{}]\n  conditions: {{ready: true}}\n",
                endpoint_ip(i, j, generation)
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-{i}-1
  namespace: default
  labels: {{kubernetes.io/service-name: svc-{i}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
{eps}"
    )
}

/// Creates (or with `verb` "replace", replaces) the objects in one kubectl call.
fn kubectl_file(api: &ApiServer, dir: &Path, name: &str, verb: &str, docs: Vec<String>) {
    let file = dir.join(name);
    std::fs::write(&file, docs.join("---\n")).expect("objects file");
    api.kubectl(&[verb, "-f", &file.display().to_string()])
        .unwrap_or_else(|e| panic!("kubectl {verb}: {e:#}"));
}

fn in_ns(host: &Host, cmd: &[&str]) -> String {
    let mut args = vec!["netns", "exec", &host.ns];
    args.extend(cmd);
    sh("ip", &args)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The proxy's rules as sorted lines (nftables: the kube-proxy table;
/// iptables: nat and filter without counters or comments).
fn rules(host: &Host, mode: &str) -> Vec<String> {
    let text = if mode == "nftables" {
        in_ns(host, &["nft", "list", "table", "ip", "kube-proxy"])
    } else {
        in_ns(host, &["iptables-nft-save", "-t", "nat"])
            + &in_ns(host, &["iptables-nft-save", "-t", "filter"])
    };
    let mut lines: Vec<String> = text
        .lines()
        .flat_map(|l| l.split(", "))
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            // iptables-save's chain counters
            Some(at) if l.starts_with(':') => l[..at].to_string(),
            _ => l,
        })
        .map(unslotted)
        .collect();
    lines.sort();
    lines
}

/// A pool map element without its slot number: endpoints a proxy kept
/// keep their slots across changes, so two proxies' slots differ (see
/// `weft_proxy::render::nft_slots`); which endpoints back which port
/// must not.
fn unslotted(l: String) -> String {
    if let Some((key, value)) = l.split_once(" : ") {
        if let Some((base, slot)) = key.rsplit_once(" . ") {
            if key.matches(" . ").count() >= 3 && slot.chars().all(|c| c.is_ascii_digit()) {
                return format!("{base} : {value}");
            }
        }
    }
    l
}

/// Whether `line` names the address `ip` (not one it is a prefix of).
fn mentions(line: &str, ip: &str) -> bool {
    line.match_indices(ip).any(|(at, _)| {
        let before = line[..at].chars().last();
        let after = line[at + ip.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

fn wait(what: &str, mut ok: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what} within 120 s\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sync_counts(host: &Host) -> (f64, f64) {
    let m = metrics(host, 10249).unwrap_or_default();
    let get = |name: &str| metric_value(&m, name).unwrap_or(-1.0);
    (
        get("weft_proxy_syncs_full_total"),
        get("weft_proxy_syncs_partial_total"),
    )
}

fn scenario(mode: &str, prefix: &str) {
    let mut lab = Lab::new(prefix, Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    api.apply("apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n")
        .expect("nodes");
    let dir = lab.dir().to_path_buf();
    let objects: Vec<String> = (0..SERVICES)
        .flat_map(|i| [service_yaml(i), slice_yaml(i, 0)])
        .collect();
    kubectl_file(&api, &dir, "objects.yaml", "create", objects);
    let config = |node: &str| {
        let made = api
            .kube_proxy_config(&dir, node, mode, "100.64.0.0/10", "")
            .expect("config file");
        let own = dir.join(format!("config-{node}.yaml"));
        std::fs::rename(made, &own).expect("config");
        format!("--config={}", own.display())
    };
    let (a, b) = (
        lab.host("a", 11).expect("host"),
        lab.host("b", 12).expect("host"),
    );
    lab.start_proxy_args(&a, &["proxy".into(), config("node-a")])
        .expect("weft proxy on a");
    let log_a = || lab.proxy_log(&a);
    let has = |host: &Host, needle: &str| rules(host, mode).iter().any(|l| l.contains(needle));
    wait(
        "every Service on a",
        || has(&a, &cluster_ip(SERVICES - 1)),
        log_a,
    );
    wait("the first sync counted", || sync_counts(&a).0 >= 1.0, log_a);
    let (full_before, partial_before) = sync_counts(&a);

    // 20 Services' endpoints replaced, one Service added, one deleted
    let changed: Vec<String> = (0..20).map(|i| slice_yaml(i * 20, 1)).collect();
    kubectl_file(&api, &dir, "changed.yaml", "replace", changed);
    kubectl_file(
        &api,
        &dir,
        "added.yaml",
        "create",
        vec![service_yaml(SERVICES), slice_yaml(SERVICES, 0)],
    );
    api.kubectl(&["delete", "service", "svc-7", "-n", "default"])
        .expect("delete");
    let last_new = endpoint_ip(19 * 20, ENDPOINTS - 1, 1);
    wait(
        "the changes on a",
        || {
            let r = rules(&a, mode);
            r.iter().any(|l| l.contains(&last_new))
                && r.iter().any(|l| l.contains(&cluster_ip(SERVICES)))
                && !r.iter().any(|l| mentions(l, &cluster_ip(7)))
        },
        log_a,
    );
    // settled: nothing pending
    std::thread::sleep(Duration::from_secs(2));
    let (full_after, partial_after) = sync_counts(&a);
    assert_eq!(
        full_after,
        full_before,
        "{mode}: no full sync for the changes\n{}",
        log_a()
    );
    assert!(
        partial_after > partial_before,
        "{mode}: partial syncs took the changes"
    );

    // a fresh proxy's full sync of the same objects ends in the same
    // rules; that proxy is the proxy-only binary, built beside weft
    let proxy_only = Path::new(WEFT).with_file_name("weft-proxy");
    assert!(
        proxy_only.is_file(),
        "{} is built with the workspace (weft-proxy's cli feature)",
        proxy_only.display()
    );
    lab.start_proxy_program(&b, &proxy_only, &[config("node-b")], &[])
        .expect("weft-proxy on b");
    wait(
        "every Service on b",
        || has(&b, &cluster_ip(SERVICES)) && has(&b, &last_new),
        || lab.proxy_log(&b),
    );
    std::thread::sleep(Duration::from_secs(1));
    let (ra, rb) = (rules(&a, mode), rules(&b, mode));
    assert!(
        ra.len() > SERVICES * ENDPOINTS,
        "{mode}: {} lines",
        ra.len()
    );
    if ra != rb {
        let only_a: Vec<&String> = ra.iter().filter(|l| !rb.contains(l)).take(10).collect();
        let only_b: Vec<&String> = rb.iter().filter(|l| !ra.contains(l)).take(10).collect();
        panic!("{mode}: partial syncs' rules differ from a full sync's:\nonly after partial: {only_a:#?}\nonly after full: {only_b:#?}");
    }
}

#[test]
fn nftables_partial_syncs_at_20k_endpoints_end_where_a_full_sync_does() {
    scenario("nftables", "wsn");
}

#[test]
fn iptables_partial_syncs_at_20k_endpoints_end_where_a_full_sync_does() {
    scenario("iptables", "wsi");
}

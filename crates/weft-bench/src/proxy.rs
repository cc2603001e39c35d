//! Scenario "proxy": N services × E endpoints are loaded into a real etcd,
//! `weft proxy` is started in a host namespace, and we measure, per mode:
//! start → first full sync done (`/readyz`), the full sync's own render and
//! apply time (from its log line), then single services added while N exist:
//! etcd write → the proxy's partial sync returned from the kernel (its
//! `/metrics` counter; polling the kernel with `nft get element` costs
//! ~0.8 s at 10,000 services, more than what it would measure); and RSS.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, TxnOp};
use weft_firewall::{Backend, BackendChoice};
use weft_lab::{in_netns, sh, Host, Lab};
use weft_proxy::plan::names::service_hash;
use weft_proxy::spec::{
    Endpoint, EndpointPort, EndpointSet, Protocol, Service, ServiceName, ServicePort, ServiceType,
    TargetPort,
};

use crate::{etcd_version, put_in_batches, rss_kib, runtime, stats};

const CONFIG: &str = r#"{"Network":"100.64.0.0/10","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

/// Service i: cluster IP 10.96.0.0/12 + i, E endpoints in 100.64.0.0/10.
fn service(i: usize, endpoints: usize) -> (Service, EndpointSet) {
    let id = ServiceName::new("bench", &format!("svc-{i}"));
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1);
    let svc = Service {
        id: id.clone(),
        kind: ServiceType::ClusterIP,
        cluster_ip: Some(IpAddr::V4(ip)),
        headless: false,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(8080),
            node_port: None,
        }],
        affinity_seconds: None,
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        source_ranges: Vec::new(),
        health_check_node_port: None,
        external_local: false,
        internal_local: false,
    };
    let eps = EndpointSet {
        service: id,
        endpoints: (0..endpoints)
            .map(|j| {
                Endpoint::ready(
                    IpAddr::V4(Ipv4Addr::from(
                        u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i * endpoints + j) as u32 + 2,
                    )),
                    Some(format!("node{}", (i * endpoints + j) % 50).as_str()),
                )
            })
            .collect(),
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    };
    (svc, eps)
}

fn load(lab: &Lab, range: std::ops::Range<usize>, endpoints: usize) -> Result<()> {
    in_netns(&lab.etcd_ns()?, move || -> Result<()> {
        runtime()?.block_on(async move {
            let mut c = Client::connect(["http://127.0.0.1:2379"], None).await?;
            let ops: Vec<TxnOp> = range
                .flat_map(|i| {
                    let (s, e) = service(i, endpoints);
                    [
                        TxnOp::put(
                            format!("/weft/services/bench/svc-{i}"),
                            s.to_value().to_string(),
                            None,
                        ),
                        TxnOp::put(
                            format!("/weft/endpoints/bench/svc-{i}"),
                            e.to_value().to_string(),
                            None,
                        ),
                    ]
                })
                .collect();
            put_in_batches(&mut c, &ops).await
        })
    })?
}

fn http_get(host: &Host, path: &str) -> Option<String> {
    weft_lab::http_get(&host.ns, 10249, path)
}

fn ready(host: &Host) -> bool {
    http_get(host, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// Partial syncs the proxy has completed (its `nft -f` / `iptables-restore`
/// returned, so the kernel holds the rules).
fn partial_syncs(host: &Host) -> u64 {
    http_get(host, "/metrics")
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("weft_proxy_syncs_partial_total "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A bench mode's `weft proxy` flags and the iptables program suffix it
/// writes with: `iptables` (the backend weft detects), `iptables-legacy`,
/// `iptables-nft`, `nftables`.
fn mode_flags(mode: &str) -> (Vec<String>, &'static str) {
    let (proxy_mode, backend, suffix) = match mode {
        "nftables" => ("nftables", "auto", ""),
        "iptables-legacy" => ("iptables", "legacy", "-legacy"),
        "iptables-nft" => ("iptables", "nft", "-nft"),
        _ => ("iptables", "auto", ""),
    };
    (
        vec![
            format!("--proxy-mode={proxy_mode}"),
            format!("--iptables-backend={backend}"),
        ],
        suffix,
    )
}

/// `nft list map ip kube-proxy service-ips` in `host` (weft's nftables
/// mode and kube-proxy's name the table and map alike).
pub(crate) fn service_ips_map(host: &Host) -> Result<std::process::Output> {
    let list = [
        "netns",
        "exec",
        &host.ns,
        "nft",
        "list",
        "map",
        "ip",
        "kube-proxy",
        "service-ips",
    ];
    sh("ip", &list)
}

/// Whether service i's rule is in the kernel.
fn present(host: &Host, mode: &str, i: usize) -> bool {
    let (s, _) = service(i, 1);
    let ip = s.cluster_ip.map(|a| a.to_string()).unwrap_or_default();
    let r = if mode == "nftables" {
        let want = format!("{ip} . tcp . 80 : goto service-");
        service_ips_map(host).and_then(|o| {
            if String::from_utf8_lossy(&o.stdout).contains(&want) {
                Ok(o)
            } else {
                Err(anyhow::anyhow!("{want} not found"))
            }
        })
    } else {
        let chain = format!(
            "KUBE-SVC-{}",
            service_hash(&format!("bench/svc-{i}:http"), Protocol::Tcp)
        );
        let iptables = format!("iptables{}", mode_flags(mode).1);
        sh(
            "ip",
            &[
                "netns", "exec", &host.ns, &iptables, "-w", "-t", "nat", "-S", &chain,
            ],
        )
    };
    r.is_ok()
}

/// The floor of any change at this size: the median time of the smallest
/// NAT transaction (one chain holding one `return`), added the way the
/// proxy writes in this mode into the table the proxy filled, then
/// removed: `nft`, iptables-restore, or on legacy weft's own x_tables
/// writer (`WEFT_IPTABLES_WRITER=tool` makes it, and the proxy, use
/// `iptables-legacy-restore`). The kernel re-validates the whole table on
/// each such commit, so a proxy change costs about this much however
/// little it changes.
fn kernel_floor_ms(host: &Host, mode: &str) -> Result<f64> {
    // `None`: nft
    let ipt = if mode == "nftables" {
        None
    } else {
        let choice = match mode {
            "iptables-legacy" => BackendChoice::Only(Backend::Legacy),
            "iptables-nft" => BackendChoice::Only(Backend::Nft),
            _ => BackendChoice::Auto,
        };
        Some(in_netns(&host.ns, || {
            weft_firewall::backend::detect(choice)
        })??)
    };
    let apply = |text: &str| -> Result<()> {
        match &ipt {
            None => weft_firewall::apply::run("nft", &["-f", "-"], Some(text)).map(|_| ())?,
            Some(ipt) => weft_firewall::apply::restore_noflush(ipt, false, text).map(|_| ())?,
        }
        Ok(())
    };
    let (add, del) = if mode == "nftables" {
        (
            "add chain ip kube-proxy weft-bench-probe\nadd rule ip kube-proxy weft-bench-probe return\n",
            "delete chain ip kube-proxy weft-bench-probe\n",
        )
    } else {
        (
            "*nat\n:WEFT-BENCH-PROBE - [0:0]\n-A WEFT-BENCH-PROBE -j RETURN\nCOMMIT\n",
            "*nat\n-F WEFT-BENCH-PROBE\n-X WEFT-BENCH-PROBE\nCOMMIT\n",
        )
    };
    // run from a thread inside the namespace, as the proxy writes: no
    // `ip netns exec` in what is timed
    let mut times = in_netns(&host.ns, || -> Result<Vec<f64>> {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            apply(add)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            apply(del)?;
        }
        Ok(times)
    })??;
    Ok(stats(&mut times).1)
}

/// `render 12.3ms, apply 456.7ms` from the proxy's full-sync log line.
fn sync_split(log: &str) -> (f64, f64) {
    let line = log.lines().find(|l| l.contains("full sync:")).unwrap_or("");
    let ms = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split([',', ' ']).find(|w| !w.is_empty()))
            .map(|d| {
                let (num, mult) = if let Some(v) = d.strip_suffix("ms") {
                    (v, 1.0)
                } else if let Some(v) = d.strip_suffix("µs") {
                    (v, 1e-3)
                } else if let Some(v) = d.strip_suffix("ns") {
                    (v, 1e-6)
                } else if let Some(v) = d.strip_suffix('s') {
                    (v, 1e3)
                } else {
                    (d, f64::NAN)
                };
                num.parse::<f64>().map(|n| n * mult).unwrap_or(f64::NAN)
            })
            .unwrap_or(f64::NAN)
    };
    (ms("render "), ms("apply "))
}

/// (min, median, max, p99) of a non-empty sample.
fn min_med_max(v: &mut [f64]) -> (f64, f64, f64, f64) {
    let (min, med, p99, max) = stats(v);
    (min, med, max, p99)
}

pub fn run(
    weft: &std::path::Path,
    modes: &[String],
    counts: &[usize],
    endpoints: usize,
    samples: usize,
    runs: usize,
) -> Result<serde_json::Value> {
    println!(
        "weft-bench proxy: weft proxy vs real etcd {} in network namespaces, {endpoints} endpoints per service",
        etcd_version()
    );
    println!(
        "{:>15} {:>8} | {:>20} | {:>26} | {:>30} | {:>8} | {:>8}",
        "mode",
        "services",
        "ready ms min/med/max",
        "render, apply min/med/max",
        "add one ms med/p99/max (apply)",
        "floor ms",
        "RSS MiB"
    );
    let mut json = Vec::new();
    for mode in modes.iter().map(String::as_str) {
        for &n in counts {
            let mut lab = Lab::new("wbp", weft)?;
            lab.start_etcd()?;
            lab.put_config(CONFIG)?;
            let host = lab.host("node1", 11)?;
            load(&lab, 0..n, endpoints).context("loading services into etcd")?;
            let (mut readies, mut renders, mut full_applies) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..runs.max(1) {
                if run > 0 {
                    // A cold start again: no proxy, no rules.
                    lab.stop_proxy(&host);
                    let w = weft.to_string_lossy();
                    sh("ip", &["netns", "exec", &host.ns, &w, "proxy", "--cleanup"])?;
                }
                let log_start = lab.proxy_log(&host).len();
                let t0 = Instant::now();
                let mut flags = mode_flags(mode).0;
                flags.push("-v".into());
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                lab.start_proxy(&host, &flags)?;
                while !ready(&host) {
                    if t0.elapsed() > Duration::from_secs(900) {
                        bail!("proxy not ready after 900 s:\n{}", lab.proxy_log(&host));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                readies.push(t0.elapsed().as_secs_f64() * 1e3);
                let (render, apply) = sync_split(&lab.proxy_log(&host)[log_start..]);
                renders.push(render);
                full_applies.push(apply);
            }
            let (rmin, ready_ms, rmax, _) = min_med_max(&mut readies);
            let (_, render, _, _) = min_med_max(&mut renders);
            let (amin, apply, amax, _) = min_med_max(&mut full_applies);
            let mut adds = Vec::new();
            for k in 0..samples {
                let i = n + k;
                let before = partial_syncs(&host);
                let t = Instant::now();
                load(&lab, i..i + 1, endpoints)?;
                while partial_syncs(&host) == before {
                    if t.elapsed() > Duration::from_secs(300) {
                        bail!(
                            "service {i} not programmed after 300 s:\n{}",
                            lab.proxy_log(&host)
                        );
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                adds.push(t.elapsed().as_secs_f64() * 1e3);
            }
            if samples > 0 && !present(&host, mode, n + samples - 1) {
                bail!(
                    "the last service added is not in the kernel:\n{}",
                    lab.proxy_log(&host)
                );
            }
            let mut applies: Vec<f64> = lab
                .proxy_log(&host)
                .lines()
                .filter(|l| l.contains("partial sync:"))
                .map(|l| sync_split(&l.replace("partial sync:", "full sync:")).1)
                .filter(|v| v.is_finite())
                .collect();
            let (_, apply_med, _, _) = if applies.is_empty() {
                (0.0, f64::NAN, 0.0, 0.0)
            } else {
                stats(&mut applies)
            };
            let pid = lab.proxy(&host)?.pid().unwrap_or(0);
            let (rss, _, _) = rss_kib(pid);
            let floor = kernel_floor_ms(&host, mode)?;
            let (_, amed, ap99, amax_add) = if adds.is_empty() {
                (0.0, 0.0, 0.0, 0.0)
            } else {
                stats(&mut adds)
            };
            println!(
                "{mode:>15} {n:>8} | {rmin:>6.0} {ready_ms:>6.0} {rmax:>6.0} | {render:>5.0} {amin:>6.0} {apply:>6.0} {amax:>6.0} | {amed:>6.1} {ap99:>6.1} {amax_add:>8.1} ({apply_med:>5.1}) | {floor:>8.1} | {:>8.1}",
                rss as f64 / 1024.0
            );
            json.push(serde_json::json!({
                "mode": mode, "services": n, "endpoints_per_service": endpoints,
                "start_to_ready_ms": {"min": rmin, "median": ready_ms, "max": rmax},
                "full_sync_render_ms": render,
                "full_sync_apply_ms": {"min": amin, "median": apply, "max": amax},
                "add_one_ms": {"median": amed, "p99": ap99, "max": amax_add},
                "add_one_apply_ms_median": apply_med,
                "kernel_floor_ms": floor,
                "rss_kib": rss,
            }));
            lab.stop_proxy(&host);
        }
    }
    println!("(ready: process start until /readyz, i.e. etcd listed and the first full sync applied; add one: etcd write of a");
    println!(" service and its endpoints until the proxy's transaction with the kernel has returned, seen on its /metrics;");
    println!(" floor: the smallest NAT transaction into the same table, written as the proxy writes (nft, iptables-restore,\n or on legacy weft's x_tables writer), about what any change costs)");
    Ok(serde_json::Value::Array(json))
}

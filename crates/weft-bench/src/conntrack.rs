//! `weft-bench --scenario conntrack`: how fast a UDP flow follows its
//! Service when the endpoint is replaced, weft proxy and the pinned
//! kube-proxy side by side on one kube-apiserver, in each mode asked for.
//!
//! On a host of its own, each proxy serves a UDP Service with one of two
//! pods (both keep answering, so only a conntrack cleanup can move the
//! flow); a client sends a datagram every 20 ms from a fixed source port.
//! Each sample moves the EndpointSlice to the other pod and times the API
//! server's answer to the first datagram answered by the new pod. With
//! `--conntrack-entries`, that many unrelated UDP entries are put in the
//! host's conntrack table first (as many clients' flows would be), which
//! is what a cleanup has to look through.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weft_core::subnet_file::SubnetEnv;
use weft_kernel::{Conntrack, DumpFilter, Flow, IPPROTO_UDP};
use weft_lab::{serve_name, sh, udp_ask, ApiServer, Host, Lab, Pod, SteadyUdpClient};

use crate::kube_proxy::{register_node, start, ProxyCommand, Who};
use crate::stats;

const VIP: &str = "10.254.0.53";

fn service() -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\n  namespace: default\n\
         spec:\n  clusterIP: {VIP}\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n"
    )
}

fn slice(pod: &Pod) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: dns-1\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: dns\n\
         addressType: IPv4\nports:\n- name: dns\n  port: 53\n  protocol: UDP\nendpoints:\n\
         - addresses: [\"{}\"]\n  nodeName: {}\n  conditions:\n    ready: true\n",
        pod.ip, pod.host
    )
}

/// `n` UDP flows of other clients to other destinations, DNATed as a
/// busy node's would be.
fn background(n: usize) -> Vec<Flow> {
    (0..n as u32)
        .map(|i| {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i / 50_000);
            let port = 10_000 + (i % 50_000) as u16;
            Flow {
                protocol: IPPROTO_UDP,
                orig_src: SocketAddr::new(client.into(), port),
                orig_dst: "10.254.1.1:53".parse().expect("address"),
                reply_src: "100.64.250.2:53".parse().expect("address"),
                reply_dst: SocketAddr::new(client.into(), port),
            }
        })
        .collect()
}

/// A host with two answering pods on its bridge and a route for Service
/// addresses.
fn host_with_pods(lab: &mut Lab, octet: u8) -> Result<(Host, [Pod; 2])> {
    let host = lab.host(&format!("c{octet}"), octet)?;
    let env = SubnetEnv {
        network: Some("100.64.0.0/10".parse()?),
        subnet: Some(format!("100.64.{octet}.1/24").parse()?),
        mtu: Some(1500),
        ipmasq: Some(false),
        ..SubnetEnv::default()
    };
    std::fs::create_dir_all(lab.dir().join(&host.name))?;
    lab.write_subnet_env(&host, &env)?;
    sh(
        "ip",
        &[
            "-n",
            &host.ns,
            "route",
            "add",
            "10.254.0.0/16",
            "dev",
            "eth0",
        ],
    )?;
    let pods = [lab.pod(&host, "a")?, lab.pod(&host, "b")?];
    Ok((host, pods))
}

/// One proxy's samples: ms from the API's answer to the first datagram
/// the new pod answered (None: not within 10 s).
fn follow(
    api: &ApiServer,
    host: &Host,
    pods: &[Pod; 2],
    samples: usize,
) -> Result<Vec<Option<f64>>> {
    let vip: SocketAddr = format!("{VIP}:53").parse()?;
    // the rules first, so the steady flow is DNATed from its start
    let t = Instant::now();
    while udp_ask(&host.ns, vip, Duration::from_millis(200))
        .ok()
        .as_deref()
        != Some(pods[0].name.as_str())
    {
        if t.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the Service was not served after 60 s");
        }
    }
    let client = SteadyUdpClient::start(&host.ns, 40053, vip, Duration::from_millis(20))?;
    let mut out = Vec::new();
    for i in 0..samples {
        let to = &pods[(i + 1) % 2];
        api.apply(&slice(to))?;
        let acked = Instant::now();
        let mut answered = None;
        while acked.elapsed() < Duration::from_secs(10) {
            if let Some(t) = client.first_answer_from(&to.name, acked) {
                answered = Some(t.saturating_duration_since(acked).as_secs_f64() * 1e3);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        out.push(answered);
        if answered.is_none() {
            // stuck on the old pod: it will not move by itself
            break;
        }
    }
    Ok(out)
}

/// What one cleanup pays at `entries` entries: a whole-table UDP dump
/// (what kube-proxy reads on every sync, and weft after a full one) and a
/// dump filtered in the kernel to one Service's frontend (what weft reads
/// after a partial sync), in ms, median of 5.
fn dump_costs(lab: &mut Lab, entries: usize) -> Result<(f64, f64, usize, usize)> {
    let ns = lab.netns("dump")?;
    let mut ct = Conntrack::open_in_netns(Path::new(&format!("/run/netns/{ns}")))?;
    let mut flows = background(entries);
    // one client of the Service the change is about
    flows.push(Flow {
        protocol: IPPROTO_UDP,
        orig_src: "198.18.0.5:40053".parse()?,
        orig_dst: format!("{VIP}:53").parse()?,
        reply_src: "100.64.21.2:53".parse()?,
        reply_dst: "198.18.0.5:40053".parse()?,
    });
    ct.insert(&flows, 600)?;
    let whole = DumpFilter {
        ipv6: false,
        protocol: IPPROTO_UDP,
        dst_ip: None,
        dst_port: None,
    };
    let one = DumpFilter {
        dst_ip: Some(VIP.parse()?),
        dst_port: Some(53),
        ..whole
    };
    let mut time = |f: &DumpFilter| -> Result<(f64, usize)> {
        let mut ms = Vec::new();
        let mut n = 0;
        for _ in 0..5 {
            let t = Instant::now();
            n = ct.dump(f)?.len();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok((stats(&mut ms).1, n))
    };
    let (whole_ms, whole_n) = time(&whole)?;
    let (one_ms, one_n) = time(&one)?;
    Ok((whole_ms, one_ms, whole_n, one_n))
}

fn row(mode: &str, entries: usize, who: Who, samples: &[Option<f64>]) -> serde_json::Value {
    let mut done: Vec<f64> = samples.iter().flatten().copied().collect();
    let stuck = samples.len() - done.len();
    if done.is_empty() {
        println!(
            "{mode:>9} {entries:>8} {:>11} | never followed (stuck on the old pod for 10 s)",
            who.name()
        );
        return serde_json::json!({"followed": 0, "stuck": stuck});
    }
    let (min, med, p99, max) = stats(&mut done);
    println!(
        "{mode:>9} {entries:>8} {:>11} | {min:>7.1} {med:>7.1} {p99:>7.1} {max:>7.1} | {stuck}",
        who.name()
    );
    serde_json::json!({"ms": {"min": min, "median": med, "p99": p99, "max": max}, "stuck": stuck})
}

pub fn run(
    weft: &Path,
    modes: &[String],
    entry_counts: &[usize],
    samples: usize,
    proxies: &[String],
) -> Result<serde_json::Value> {
    let mut lab = Lab::new("wbc", weft)?;
    let mut costs = Vec::new();
    for &entries in entry_counts.iter().filter(|n| **n > 0) {
        let (whole, one, whole_n, one_n) = dump_costs(&mut lab, entries)?;
        println!(
            "  conntrack table of {} UDP entries: whole-table dump {whole:.1} ms ({whole_n} entries read), \
             dump filtered to one Service {one:.1} ms ({one_n} read)",
            entries + 1
        );
        costs.push(serde_json::json!({
            "entries": entries + 1, "whole_table_dump_ms": whole, "filtered_dump_ms": one,
        }));
    }
    println!(
        "weft-bench conntrack: a UDP flow (one datagram per 20 ms, fixed source port) follows its Service's endpoint"
    );
    println!(
        "{:>9} {:>8} {:>11} | {:>7} {:>7} {:>7} {:>7} | stuck",
        "mode", "entries", "proxy", "min ms", "median", "p99", "max"
    );
    lab.start_etcd()?;
    let api_host = lab.etcd_host(0)?;
    let api = lab.start_apiserver(&api_host)?;
    api.apply(&service())?;
    let mut octet = 20u8;
    let mut json = Vec::new();
    for mode in modes.iter().map(String::as_str) {
        for &entries in entry_counts {
            let mut medians = Vec::new();
            for who in [Who::Weft, Who::KubeProxy]
                .into_iter()
                .filter(|w| proxies.iter().any(|p| p == w.name()))
            {
                octet += 1;
                let (host, pods) = host_with_pods(&mut lab, octet)?;
                let _servers = [serve_name(&pods[0], 53)?, serve_name(&pods[1], 53)?];
                register_node(&api, &host)?;
                if entries > 0 {
                    let mut ct =
                        Conntrack::open_in_netns(Path::new(&format!("/run/netns/{}", host.ns)))?;
                    ct.insert(&background(entries), 600)
                        .context("filling the conntrack table")?;
                }
                api.apply(&slice(&pods[0]))?;
                let weft_proxy = ProxyCommand::new(&lab.weft, None);
                let mut proc = start(&lab, &api, who, mode, &host, &weft_proxy)?;
                let samples = follow(&api, &host, &pods, samples).with_context(|| {
                    format!("{} in {mode} mode:\n{}", who.name(), proc.log_tail(20))
                });
                proc.stop(Duration::from_secs(5));
                let samples = samples?;
                let r = row(mode, entries, who, &samples);
                medians.push((who, r["ms"]["median"].as_f64()));
                json.push(serde_json::json!({
                    "mode": mode, "background_entries": entries, "proxy": who.name(), "follow": r,
                }));
            }
            if let [(_, Some(w)), (_, Some(k))] = medians.as_slice() {
                println!(
                    "{mode:>9} {entries:>8} same run: kube-proxy / weft = {:.1}x (median)",
                    k / w
                );
            }
        }
    }
    println!("(from `kubectl apply` of the EndpointSlice returning (the API server has answered) until the first datagram");
    println!(" answered by the new pod;");
    println!(" entries: unrelated UDP conntrack entries in the host's table; stuck: samples never followed within 10 s)");
    Ok(serde_json::json!({"follow": json, "dump_costs": costs}))
}

//! Scenario "kube-leases": the agent in Kubernetes mode against upstream
//! flanneld in Kubernetes mode, one after the other on one kube-apiserver.
//! N Nodes carrying flannel's annotations (vxlan leases, as flanneld
//! nodes publish them) are created through the API first; then each agent
//! is started cold on a host whose own Node has a podCIDR, and the time
//! until every route, neighbour and FDB entry is in its kernel is
//! measured from outside (netlink dumps in the host's namespace); then
//! single Nodes are added and deleted and the time until the route
//! appears or goes is measured; RSS is read from /proc.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PostParams};
use weft_lab::{in_netns, ApiServer, Lab};

use crate::agents;
use crate::leases::{fake_lease, start_and_wait, until_route};
use crate::{rss_kib, runtime, stats, BenchArgs};

const PREFIX: &str = "flannel.alpha.coreos.com";
const NET_CONF: &str = r#"{"Network":"100.64.0.0/10","Backend":{"Type":"vxlan"}}"#;
/// The agent host's own pod range: below every fake lease's.
const OWN_RANGE: &str = "100.64.0.0/26";

fn node_json(name: &str, range: &str, annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"podCIDR": range, "podCIDRs": [range]},
    })
}

/// Node `peer-<i>`, holding fake lease `i` as a flanneld node would.
fn peer_node(i: usize) -> Result<Node> {
    let (key, attrs) = fake_lease(i);
    let range = key
        .v4
        .ok_or_else(|| anyhow!("fake lease without IPv4"))?
        .to_string();
    let data = attrs.backend_data.as_ref().map_or("null", |d| d.get());
    let annotations = serde_json::json!({
        format!("{PREFIX}/kube-subnet-manager"): "true",
        format!("{PREFIX}/backend-type"): "vxlan",
        format!("{PREFIX}/backend-data"): data,
        format!("{PREFIX}/public-ip"): attrs.public_ip.to_string(),
    });
    Ok(serde_json::from_value(node_json(
        &format!("peer-{i}"),
        &range,
        annotations,
    ))?)
}

enum Write {
    Create(Box<Node>),
    Delete(String),
}

/// Creates `create` and deletes the Nodes named `delete` through the API,
/// 32 requests in flight.
fn write_nodes(api: &ApiServer, create: Vec<Node>, delete: Vec<String>) -> Result<()> {
    let kubeconfig = api.admin_kubeconfig()?;
    in_netns(&api.host.ns, move || -> Result<()> {
        runtime()?.block_on(async move {
            let client =
                weft_proxy::shell::source::kubernetes::client(Some(&kubeconfig), None).await?;
            let api: kube::Api<Node> = kube::Api::all(client);
            let writes = create
                .into_iter()
                .map(|n| Write::Create(Box::new(n)))
                .chain(delete.into_iter().map(Write::Delete));
            let results: Vec<Result<()>> = futures::stream::iter(writes)
                .map(|write| {
                    let api = api.clone();
                    async move {
                        match write {
                            Write::Create(node) => {
                                drop(api.create(&PostParams::default(), &node).await?)
                            }
                            Write::Delete(name) => {
                                drop(api.delete(&name, &DeleteParams::default()).await?)
                            }
                        }
                        Ok(())
                    }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            results.into_iter().collect()
        })
    })?
}

/// Nodes `peer-<i>` for `range`.
fn peers(range: std::ops::Range<usize>) -> Result<Vec<Node>> {
    range.map(peer_node).collect()
}

pub(crate) fn run(a: &BenchArgs, weft: &Path) -> Result<serde_json::Value> {
    let agents = [agents::weft(a, weft), agents::flanneld()?];
    println!(
        "weft-bench: agents in Kubernetes mode (-kube-subnet-mgr) on one kube-apiserver, vxlan, {} CPUs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "{:>6} | {:<38} | {:>14} | {:>18} | {:>8} | {:>22} | {:>22} | {:>20}",
        "Nodes",
        "agent",
        "cold start ms",
        "subnet file ms",
        "CPU s",
        "add Node ms med/p99",
        "delete Node ms med/p99",
        "RSS MiB sync/peak/idle"
    );
    let mut json = Vec::new();
    for &n in &a.counts {
        let mut lab = Lab::new("wkbench", weft)?;
        lab.start_etcd()?;
        let etcd_host = lab.etcd_host(0)?;
        let api = lab.start_apiserver(&etcd_host)?;
        let host = lab.host("node1", 11)?;
        let conf = lab.dir().join("net-conf.json");
        std::fs::write(&conf, NET_CONF)?;
        let kubeconfig = api.admin_kubeconfig()?;
        let own: Node =
            serde_json::from_value(node_json("node1", OWN_RANGE, serde_json::json!({})))?;
        write_nodes(&api, vec![own], Vec::new())?;
        let t = Instant::now();
        write_nodes(&api, peers(0..n)?, Vec::new())?;
        println!(
            "({n} Nodes created through the API in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let mut cold_ms = Vec::new();
        for agent in &agents {
            agents::reset(&mut lab, &host)?;
            let mut args = agent.first.clone();
            args.extend(lab.kube_agent_args(&host, &kubeconfig, &conf));
            let mut env = vec![("NODE_NAME".to_string(), "node1".to_string())];
            // flanneld's informer blocks on its event queue (5,000 deep
            // unless EVENT_QUEUE_DEPTH says more) before its first sync
            // completes: with more Nodes than that it never starts.
            // Operators of large clusters raise it; so does the bench.
            if agent.upstream {
                env.push(("EVENT_QUEUE_DEPTH".into(), (2 * n + 100).to_string()));
            }
            let c = start_and_wait(&mut lab, &host, n, &agent.program, &args, &env, None)?;
            let cpu = crate::kube_proxy::cpu_seconds(lab.agent(&host)?.pid().unwrap_or(0));
            let mut nl = lab.netlink(&host)?;
            let (mut adds, mut dels) = (Vec::new(), Vec::new());
            for i in (n + 10..).take(a.samples) {
                let t0 = Instant::now();
                write_nodes(&api, peers(i..i + 1)?, Vec::new())?;
                adds.push(until_route(&mut nl, i, true, t0)?.as_secs_f64() * 1e3);
                let t0 = Instant::now();
                write_nodes(&api, Vec::new(), vec![format!("peer-{i}")])?;
                dels.push(until_route(&mut nl, i, false, t0)?.as_secs_f64() * 1e3);
            }
            // idle: what the agent holds once the samples have settled
            std::thread::sleep(std::time::Duration::from_secs(2));
            let pid = lab.agent(&host)?.pid().unwrap_or(0);
            let (rss_after, _, _) = rss_kib(pid);
            let (_, amed, ap99, _) = stats(&mut adds);
            let (_, dmed, dp99, _) = stats(&mut dels);
            println!(
                "{n:>6} | {:<38} | {:>14.0} | {:>18.0} | {cpu:>8.2} | {amed:>10.1} {ap99:>10.1} | {dmed:>10.1} {dp99:>10.1} | {:>6.1} {:>6.1} {:>6.1}",
                agent.name,
                c.programmed.as_secs_f64() * 1e3,
                c.subnet_file.as_secs_f64() * 1e3,
                c.rss_kib as f64 / 1024.0,
                c.peak_kib as f64 / 1024.0,
                rss_after as f64 / 1024.0,
            );
            json.push(serde_json::json!({
                "nodes": n,
                "agent": agent.name,
                "cold_start_ms": c.programmed.as_secs_f64() * 1e3,
                "subnet_file_ms": c.subnet_file.as_secs_f64() * 1e3,
                "add_node_ms": {"median": amed, "p99": ap99},
                "delete_node_ms": {"median": dmed, "p99": dp99},
                "cpu_seconds_at_sync": cpu,
                "rss_kib_after_sync": c.rss_kib,
                "peak_rss_kib": c.peak_kib,
                "rss_kib_idle_after_samples": rss_after,
            }));
            cold_ms.push(c.programmed.as_secs_f64() * 1e3);
            lab.stop_agent(&host, false);
        }
        if let [w, u] = cold_ms[..] {
            println!(
                "{n:>6} | same run: {} {w:.0} ms vs {} {u:.0} ms to all programmed: {:.1}x faster",
                agents[0].name,
                agents[1].name,
                u / w
            );
        }
        drop(api);
    }
    println!("(cold start: agent started → every route, neighbour and FDB entry on flannel.1, read by netlink dumps;");
    println!(" add/delete: the Node's create/delete request → route there/gone, by route lookups)");
    Ok(serde_json::Value::Array(json))
}

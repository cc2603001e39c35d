//! `weft-bench`: weft measured against real etcd, real kernels and, where
//! the scenario has one, the upstream program it replaces, in network
//! namespaces. One module per scenario:
//! - [`leases`]: the agent programming remote leases (cold start, churn, RSS);
//! - [`datapath`]: pod-to-pod throughput per backend (iperf3);
//! - [`wireguard`]: its wireguard rows, next to wireguard-go (also alone);
//! - [`proxy`]: the service proxy with N services (etcd store);
//! - [`kube_leases`]: the agent and upstream flanneld in Kubernetes mode
//!   side by side on one kube-apiserver (N Nodes);
//! - [`kube_proxy`]: the proxy and upstream kube-proxy side by side on one
//!   kube-apiserver;
//! - [`proxy_scale`]: the same at 10k-250k endpoints, a rolling Service,
//!   endpoint churn and the kernel's floor (the objects both write:
//!   [`api_objects`]);
//! - [`conntrack`]: a UDP flow following its Service's replaced endpoint,
//!   weft proxy beside kube-proxy;
//! - [`etcd_load`]: many simulated hosts on one etcd;
//! - [`etcd_chaos`]: a soak with etcd members killed under agents.
//!
//! The `weft-bench` binary (`src/main.rs`) is [`BenchArgs`] and [`run`];
//! it drives the node binary `weft` (`--weft`, by default the `weft`
//! beside it), which carries no part of this harness.

mod agents;
mod api_objects;
mod cold_starts;
mod conntrack;
mod datapath;
mod etcd_chaos;
mod etcd_load;
mod kube_leases;
mod kube_proxy;
mod leases;
mod nft_events;
mod nft_floor;
mod proxy;
mod proxy_scale;
mod wireguard;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, TxnOp};

#[derive(clap::Parser)]
#[command(
    name = "weft-bench",
    about = "Measure weft against real etcd, kube-apiserver and kernels in network namespaces, beside the upstream programs it replaces"
)]
pub struct BenchArgs {
    /// The weft binary to measure (default: the `weft` beside weft-bench)
    #[arg(long)]
    weft: Option<std::path::PathBuf>,
    /// Numbers of remote leases to program from a cold start
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    counts: Vec<usize>,
    /// Single-lease add/remove samples per count
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Cold-start runs per count (min/median/max are printed)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the figures as JSON here
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Run the agent under this command, e.g. "valgrind --tool=massif" (for profiling)
    #[arg(long)]
    wrap: Option<String>,
    /// Agents the leases scenario runs, one after the other on the same
    /// lab: weft and upstream flanneld (the pinned release)
    #[arg(long, value_delimiter = ',', default_value = "weft,flanneld",
          value_parser = ["weft", "flanneld"])]
    agents: Vec<String>,
    /// The agent binary the leases scenario measures, run with flanneld's
    /// flags (e.g. the lean build, target/lean/flanneld); default: this
    /// binary's `weft agent`. (The other scenarios run `weft agent`.)
    #[arg(long)]
    agent_bin: Option<std::path::PathBuf>,
    /// The proxy binary the proxy-scale scenario measures, run with `weft
    /// proxy`'s flags (e.g. the lean build, target/lean/weft-proxy);
    /// default: this binary's `weft proxy`
    #[arg(long)]
    proxy_bin: Option<std::path::PathBuf>,
    /// What to measure (comma-separated; each is described below)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "leases")]
    scenario: Vec<Scenario>,
    /// How long the etcd-chaos soak runs, in minutes
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Seconds per iperf3 run in the datapath scenario
    #[arg(long, default_value_t = 3)]
    iperf_secs: u32,
    /// Service counts for the proxy scenario
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    proxy_services: Vec<usize>,
    /// Endpoints per service in the proxy scenario
    #[arg(long, default_value_t = 10)]
    proxy_endpoints: usize,
    /// Simulated hosts for the etcd-load scenario
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    etcd_hosts: Vec<usize>,
    /// Proxy modes to measure: nftables, iptables (the backend weft
    /// detects), iptables-legacy, iptables-nft
    #[arg(long, value_delimiter = ',', default_value = "nftables,iptables",
          value_parser = ["nftables", "iptables", "iptables-legacy", "iptables-nft"])]
    proxy_modes: Vec<String>,
    /// Proxy scenario: also run this upstream program side by side on one
    /// kube-apiserver (Services from the API instead of etcd)
    #[arg(long, value_parser = ["kube-proxy"])]
    against: Option<String>,
    /// With --against: which of the two proxies to run
    #[arg(long, value_delimiter = ',', default_value = "weft,kube-proxy",
          value_parser = ["weft", "kube-proxy"])]
    proxies: Vec<String>,
    /// conntrack scenario: unrelated UDP entries put in each host's
    /// conntrack table before the samples
    #[arg(long, value_delimiter = ',', default_value = "0,100000")]
    conntrack_entries: Vec<usize>,
    /// proxy-scale: Service counts (× --scale-endpoints each)
    #[arg(long, value_delimiter = ',', default_value = "200,2000,5000")]
    scale_services: Vec<usize>,
    /// proxy-scale: endpoints per Service
    #[arg(long, default_value_t = 50)]
    scale_endpoints: usize,
    /// proxy-scale: cold starts of each proxy in each mode, each on a
    /// fresh host; the median is reported (kube-proxy's own varies
    /// several-fold from one start to the next)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    cold_starts: u32,
    /// proxy-scale: Services (× 10 endpoints) under churn
    #[arg(long, default_value_t = 10_000)]
    churn_services: usize,
    /// proxy-scale: endpoint changes a second
    #[arg(long, default_value_t = 100)]
    churn_rate: u32,
    /// proxy-scale: seconds of churn (0: none)
    #[arg(long, default_value_t = 120)]
    churn_secs: u64,
    /// With --against: seconds a proxy gets to program every Service
    /// before it is reported incomplete and stopped
    #[arg(long, default_value_t = 900)]
    rules_timeout: u64,
}

/// The scenarios, as `weft-bench --help` describes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// leases, datapath, proxy and etcd-load, one after the other
    All,
    /// etcd mode: --counts remote leases into a real etcd, then weft's
    /// agent (or --agent-bin) and flanneld cold-started in turn: time until
    /// every route, neighbour and FDB entry is in the kernel, the subnet
    /// file, one lease added/removed (--samples), RSS; --runs cold starts
    Leases,
    /// Kubernetes mode: --counts Nodes with flannel's annotations on one
    /// kube-apiserver, weft's agent and flanneld cold-started in turn:
    /// time to a programmed kernel, CPU, a Node added/deleted, RSS
    KubeLeases,
    /// pod-to-pod TCP (iperf3, --iperf-secs rounds) over every backend next
    /// to hand-built kernel equivalents, udp next to flanneld's, and the
    /// wireguard rows
    Datapath,
    /// weft's userspace WireGuard next to wireguard-go configured as
    /// flanneld configures it: throughput and CPU per Gbit
    Wireguard,
    /// --proxy-services Services × --proxy-endpoints in each of
    /// --proxy-modes: start → every rule in the kernel, one Service added,
    /// RSS; from weft's etcd store, or with --against kube-proxy from one
    /// kube-apiserver beside kube-proxy (--proxies), an endpoint changed too
    Proxy,
    /// the proxy at scale, weft beside kube-proxy on one kube-apiserver
    /// (--proxies, --proxy-modes): --scale-services × --scale-endpoints
    /// cold start, endpoint changes and the kernel floor; a 5,000-endpoint
    /// Service rolled 10 % at a time; --churn-rate endpoint changes a second
    /// for --churn-secs over --churn-services × 10 endpoints (CPU, RSS)
    ProxyScale,
    /// a UDP flow following its Service's replaced endpoint (conntrack
    /// cleanup), weft beside kube-proxy, with --conntrack-entries unrelated
    /// entries in the table, --samples replacements
    Conntrack,
    /// --etcd-hosts simulated agents on one etcd: join and renew rates, one
    /// lease change to every watcher, etcd's memory
    EtcdLoad,
    /// a soak, not a timing: etcd members killed at random under 4 agents
    /// for --minutes while leases change; every agent's routes checked
    EtcdChaos,
}

/// What `--scenario all` runs, in this order.
const SCENARIOS: [Scenario; 4] = [
    Scenario::Leases,
    Scenario::Datapath,
    Scenario::Proxy,
    Scenario::EtcdLoad,
];

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Writes `ops` in transactions of 128 (etcd's default limit is 128 ops).
pub(crate) async fn put_in_batches(c: &mut Client, ops: &[TxnOp]) -> Result<()> {
    for chunk in ops.chunks(128) {
        c.txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await?;
    }
    Ok(())
}

/// (VmRSS, VmHWM, RssAnon) in KiB.
pub(crate) fn rss_kib(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"))
}

pub(crate) fn stats(v: &mut [f64]) -> (f64, f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (pick(0.0), pick(0.5), pick(0.99), pick(1.0))
}

/// The `weft` binary the scenarios run: `--weft`, else the one in this
/// program's folder (`target/release/weft` beside `target/release/weft-bench`).
fn weft_binary(given: Option<&std::path::Path>) -> Result<std::path::PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating weft-bench")?
            .with_file_name("weft"),
    };
    if !path.is_file() {
        bail!(
            "--weft {}: no such file (build it: cargo build --release -p weft)",
            path.display()
        );
    }
    Ok(path)
}

pub fn run(a: BenchArgs) -> Result<()> {
    let weft = weft_binary(a.weft.as_deref())?;
    let mut report = serde_json::Map::new();
    if let Some(bin) = &a.agent_bin {
        // or the bench would wait two minutes for leases it never programs
        weft_agent::cli::check_agent_binary("--agent-bin", bin)?;
    }
    let scenarios: Vec<Scenario> = if a.scenario.contains(&Scenario::All) {
        SCENARIOS.to_vec()
    } else {
        a.scenario.clone()
    };
    for s in scenarios {
        match s {
            Scenario::All => {}
            Scenario::Leases => {
                report.insert("leases".into(), leases::run(&a, &weft)?);
            }
            Scenario::KubeLeases => {
                report.insert("kube_leases".into(), kube_leases::run(&a, &weft)?);
            }
            Scenario::Datapath => {
                report.insert("datapath".into(), datapath::run(&weft, a.iperf_secs)?);
                report.insert(
                    "datapath_wireguard".into(),
                    wireguard::run(&weft, a.iperf_secs, 5)?,
                );
            }
            Scenario::Conntrack => {
                report.insert(
                    "conntrack".into(),
                    conntrack::run(
                        &weft,
                        &a.proxy_modes,
                        &a.conntrack_entries,
                        a.samples,
                        &a.proxies,
                    )?,
                );
            }
            Scenario::Wireguard => {
                report.insert(
                    "datapath_wireguard".into(),
                    wireguard::run(&weft, a.iperf_secs, 5)?,
                );
            }
            Scenario::Proxy if a.against.is_some() => {
                report.insert(
                    "proxy_against_kube_proxy".into(),
                    kube_proxy::run(
                        &weft,
                        &a.proxy_modes,
                        &a.proxy_services,
                        a.proxy_endpoints,
                        a.samples,
                        std::time::Duration::from_secs(a.rules_timeout),
                        &a.proxies,
                    )?,
                );
            }
            Scenario::Proxy => {
                report.insert(
                    "proxy".into(),
                    proxy::run(
                        &weft,
                        &a.proxy_modes,
                        &a.proxy_services,
                        a.proxy_endpoints,
                        a.samples,
                        a.runs,
                    )?,
                );
            }
            Scenario::ProxyScale => {
                let args = proxy_scale::ScaleArgs {
                    modes: &a.proxy_modes,
                    services: &a.scale_services,
                    endpoints: a.scale_endpoints,
                    cold_starts: a.cold_starts as usize,
                    samples: a.samples,
                    timeout: std::time::Duration::from_secs(a.rules_timeout),
                    proxies: &a.proxies,
                    churn_services: a.churn_services,
                    churn_rate: a.churn_rate,
                    churn_secs: a.churn_secs,
                    weft_proxy: kube_proxy::ProxyCommand::new(&weft, a.proxy_bin.as_deref()),
                };
                report.insert("proxy_scale".into(), proxy_scale::run(&weft, &args)?);
            }
            Scenario::EtcdLoad => {
                report.insert("etcd_load".into(), etcd_load::run(&weft, &a.etcd_hosts)?);
            }
            Scenario::EtcdChaos => {
                report.insert("etcd_chaos".into(), etcd_chaos::run(&weft, a.minutes)?);
            }
        }
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

pub(crate) fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.replace("etcd Version: ", "v")))
        .unwrap_or_else(|| "?".into())
}

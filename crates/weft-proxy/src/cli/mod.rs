//! The proxy as a program: flags in, a running proxy out. `weft proxy`
//! and the proxy-only `weft-proxy` binary (`src/bin/weft-proxy.rs`) share
//! it. The proxy watches Services and endpoints, from the Kubernetes API
//! (`--kubeconfig`, `--master`, or in-cluster) or from weft's own store in
//! etcd (`--etcd-endpoints`), and programs Service virtual IPs and
//! NodePorts through iptables or nftables. `--cleanup` removes its rules.

pub mod etcd_args;

use std::sync::Arc;
use std::time::Duration;

use crate::shell::metrics::ProxyStats;
use crate::shell::options::{NodeOptions, ProxyOptions, RulesOptions, SourceOptions, SyncTiming};
use crate::shell::sync::{cleanup, ProxyMode};
use anyhow::{anyhow, Context, Result};
use ipnet::IpNet;

use etcd_args::{parse_duration, EtcdArgs};

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Kubeconfig file of the API server to take Services and
    /// EndpointSlices from (instead of weft's etcd store)
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The API server's URL (overrides the kubeconfig's)
    #[arg(long)]
    master: Option<String>,
    /// iptables (kube-proxy's chains) or nftables (kube-proxy's verdict
    /// maps); default iptables, or nftables on a host without any iptables
    /// program
    #[arg(long = "proxy-mode", default_value = "")]
    mode: String,
    /// iptables mode's backend: auto (the one already holding rules, else
    /// the one `iptables` runs), legacy or nft
    #[arg(long = "iptables-backend", default_value = "auto")]
    iptables_backend: weft_firewall::BackendChoice,
    /// This node's name, matched against endpoints' nodeName (traffic policy Local)
    #[arg(long = "hostname-override")]
    hostname: Option<String>,
    /// Pod network(s) (comma-separated); default: flannel's Network/IPv6Network from etcd
    #[arg(long = "cluster-cidr", value_delimiter = ',')]
    cluster_cidr: Vec<IpNet>,
    /// Period of full syncs (everything rewritten, stale rules removed)
    #[arg(long = "sync-period", default_value = "15m", value_parser = parse_duration)]
    sync_period: Duration,
    /// Changes arriving within this window are applied together
    #[arg(long = "min-sync-period", default_value = "0s", value_parser = parse_duration)]
    min_sync_period: Duration,
    /// This node's IP (kube-proxy's `--bind-address`); default: the Node
    /// object's InternalIP, else the address of the default route
    #[arg(long = "bind-address")]
    bind_address: Option<std::net::IpAddr>,
    /// Masquerade every packet to a cluster IP (not only those from
    /// outside --cluster-cidr)
    #[arg(long = "masquerade-all")]
    masquerade_all: bool,
    /// iptables mode: IPv4 node ports also answer on 127.0.0.1
    /// (sets route_localnet)
    #[arg(long = "iptables-localhost-nodeports", default_value_t = true, action = clap::ArgAction::Set)]
    localhost_node_ports: bool,
    /// Addresses that serve node ports: CIDRs (comma-separated), or
    /// "primary" (the node's own addresses); default: every local address
    #[arg(long = "nodeport-addresses", value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// Delete the UDP and SCTP conntrack entries a sync leaves pointing at
    /// endpoints that no longer serve, as kube-proxy does (false: leave
    /// conntrack alone, for comparison)
    #[arg(long = "conntrack-cleanup", default_value_t = true, action = clap::ArgAction::Set)]
    conntrack_cleanup: bool,
    /// Remove every rule the proxy created (both modes) and exit
    #[arg(long)]
    cleanup: bool,
    /// Address of /healthz, /readyz and /metrics ("" to disable)
    #[arg(long = "metrics-bind-address", default_value = "127.0.0.1:10249")]
    metrics: String,
    /// Address of kube-proxy's /healthz and /livez (JSON; "" to disable)
    #[arg(long = "healthz-bind-address", default_value = "0.0.0.0:10256")]
    healthz: String,
    /// kube-proxy's KubeProxyConfiguration file; its settings win over
    /// flags (except --hostname-override), as in kube-proxy
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", default_value = "text")]
    log_format: String,
    /// More logs (repeatable)
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

fn node_name(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// Exactly one source: the Kubernetes API when `--kubeconfig` or
/// `--master` is given (or, with neither nor `--etcd-endpoints`, inside a
/// pod), else weft's etcd store.
fn source(a: &ProxyArgs) -> Result<SourceOptions> {
    let etcd_given = std::env::args()
        .any(|arg| arg == "--etcd-endpoints" || arg.starts_with("--etcd-endpoints="))
        || std::env::var_os("FLANNELD_ETCD_ENDPOINTS").is_some();
    let kube_given = a.kubeconfig.is_some() || a.master.is_some();
    if etcd_given && kube_given {
        return Err(anyhow!(
            "--etcd-endpoints and --kubeconfig/--master name two sources of Services: give one"
        ));
    }
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    Ok(if kube_given || (in_pod && !etcd_given) {
        SourceOptions::Kubernetes {
            kubeconfig: a.kubeconfig.clone(),
            master: a.master.clone(),
        }
    } else {
        SourceOptions::Etcd {
            etcd: a.etcd.options(),
            prefix: a.etcd.service_prefix.clone(),
            flannel_prefix: a.etcd.prefix.clone(),
        }
    })
}

/// Applies `--config`: the file's settings replace the flags' (kube-proxy's
/// rule), `--hostname-override` excepted.
fn apply_config(a: &mut ProxyArgs) -> Result<()> {
    let Some(path) = a.config.clone() else {
        return Ok(());
    };
    let c = crate::config_file::read(&path)?;
    a.kubeconfig = c.kubeconfig.or(a.kubeconfig.take());
    a.hostname = a.hostname.take().or(c.hostname_override);
    a.bind_address = c.bind_address.or(a.bind_address);
    if let Some(h) = c.healthz_bind_address {
        a.healthz = h;
    }
    if let Some(m) = c.metrics_bind_address {
        a.metrics = m;
    }
    if let Some(m) = c.mode {
        a.mode = m;
    }
    if !c.cluster_cidr.is_empty() {
        a.cluster_cidr = c.cluster_cidr;
    }
    if let Some(n) = c.node_port_addresses {
        a.nodeport_addresses = n;
    }
    a.masquerade_all = c.masquerade_all.unwrap_or(a.masquerade_all);
    a.localhost_node_ports = c.localhost_node_ports.unwrap_or(a.localhost_node_ports);
    a.sync_period = c.sync_period.unwrap_or(a.sync_period);
    a.min_sync_period = c.min_sync_period.unwrap_or(a.min_sync_period);
    Ok(())
}

/// Runs the proxy until SIGTERM or SIGINT (or, with `--cleanup`, removes
/// its rules).
pub fn run(mut a: ProxyArgs) -> Result<()> {
    weft_telemetry::logging::init(a.verbose, a.log_format == "json");
    apply_config(&mut a)?;
    if a.cleanup {
        for what in cleanup()? {
            println!("removed {what}");
        }
        return Ok(());
    }
    let mode = ProxyMode::parse(&a.mode)
        .ok_or_else(|| anyhow!("--proxy-mode {:?}: expected iptables or nftables", a.mode))?;
    if a.mode.is_empty() && mode == ProxyMode::Nftables {
        tracing::warn!("no iptables programs on this host: nftables mode");
    }
    let opts = ProxyOptions {
        source: source(&a)?,
        rules: RulesOptions {
            mode,
            iptables_backend: a.iptables_backend,
        },
        node: NodeOptions {
            name: node_name(a.hostname),
            ip: a.bind_address,
            cluster_cidr: a.cluster_cidr,
            node_port_addresses: a.nodeport_addresses.clone(),
            localhost_node_ports: a.localhost_node_ports,
            masquerade_all: a.masquerade_all,
        },
        timing: SyncTiming {
            period: a.sync_period,
            min_period: a.min_sync_period,
        },
        healthz: crate::config_file::bind_address(&a.healthz, 10256, "--healthz-bind-address")?,
        conntrack_cleanup: a.conntrack_cleanup,
    };
    let stats = Arc::new(ProxyStats::new(mode));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        if !a.metrics.is_empty() {
            let listener = tokio::net::TcpListener::bind(&a.metrics)
                .await
                .with_context(|| format!("--metrics-bind-address {}", a.metrics))?;
            tokio::spawn(weft_telemetry::serve(
                listener,
                Arc::new(weft_telemetry::Endpoints {
                    name: "weft proxy is running",
                    ready: stats.ready.clone(),
                    registry: stats.registry.clone(),
                }),
            ));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = crate::shell::run::run(opts, stats) => r,
            _ = term.recv() => { tracing::info!("SIGTERM: exiting, rules left in place"); Ok(()) }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: exiting, rules left in place"); Ok(()) }
        }
    })
}

/// `weft-proxy`'s command line: the proxy's flags, no subcommand.
#[derive(clap::Parser, Debug)]
#[command(
    name = "weft-proxy",
    version,
    about = "weft's service proxy alone (kube-proxy's job): the flags of `weft proxy`"
)]
struct ProxyOnly {
    #[command(flatten)]
    args: ProxyArgs,
}

/// The proxy-only binary's main: exit 0 after a clean stop, 1 when the
/// proxy fails, 2 on bad flags.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let a = ProxyOnly::parse();
    match run(a.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-proxy: {}", weft_kube::chain_words(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

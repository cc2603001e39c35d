//! The proxy's life: a source (weft's etcd store or the Kubernetes API,
//! [`super::source`]) reports Services and endpoints; every snapshot it
//! sends is a full sync, single changes are partial syncs of the Services
//! they touch (coalescing bursts), with a periodic full sync. While the
//! source is away, the rules stay as they are.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use weft_etcd::{connect, EtcdOptions};

use super::health::{ProxyHealth, ServiceHealth};
use super::source::{self, Change};
use super::store::Store;
use super::sync::{HostSettings, ProxyMode, SyncReport, Syncer};
use crate::plan::catalog::Catalog;
use crate::spec::ServiceName;

/// Where Services and endpoints come from.
#[derive(Debug, Clone)]
pub enum SourceOptions {
    /// weft's own store in etcd.
    Etcd {
        etcd: EtcdOptions,
        /// weft's service prefix (`/weft`).
        prefix: String,
        /// flannel's prefix, to read the pod network from its config.
        flannel_prefix: String,
    },
    /// The Kubernetes API (`--kubeconfig`, `--master`, else in-cluster).
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        master: Option<String>,
    },
}

/// How the proxy runs (`weft proxy` flags).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub source: SourceOptions,
    pub mode: ProxyMode,
    /// iptables mode: which iptables backend (auto-detected by default).
    pub iptables_backend: weft_firewall::BackendChoice,
    /// This node's name (`nodeName` of local endpoints).
    pub node: String,
    /// Pod networks; with the etcd source read from flannel's config when
    /// not given.
    pub cluster_cidr: Vec<IpNet>,
    /// Full sync period.
    pub sync_period: Duration,
    /// Events arriving within this window are synced together.
    pub min_sync_period: Duration,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--bind-address`: this node's address (else the Node object's, with
    /// the Kubernetes source).
    pub node_ip: Option<IpAddr>,
    /// `--iptables-localhost-nodeports`.
    pub localhost_node_ports: bool,
    /// `--nodeport-addresses`: CIDRs, or `primary` (the node's addresses);
    /// empty: every local address.
    pub node_port_addresses: Vec<String>,
    /// `--healthz-bind-address`: where `/healthz` and `/livez` answer.
    pub healthz: Option<std::net::SocketAddr>,
}

/// The node's addresses: `--bind-address`, else (Kubernetes source) its
/// Node's InternalIPs.
async fn node_ips(opts: &ProxyOptions, client: Option<&kube::Client>) -> Vec<IpAddr> {
    if let Some(ip) = opts.node_ip.filter(|ip| !ip.is_unspecified()) {
        return vec![ip];
    }
    let Some(client) = client else {
        return Vec::new();
    };
    match source::kubernetes::node_addresses(client, &opts.node).await {
        Ok(ips) => ips,
        Err(e) => {
            tracing::warn!("node {:?}: {e}; its address is unknown", opts.node);
            Vec::new()
        }
    }
}

/// `--nodeport-addresses` resolved to this host's addresses.
fn node_port_ips(given: &[String], node_ips: &[IpAddr]) -> anyhow::Result<Option<Vec<IpAddr>>> {
    if given.is_empty() {
        return Ok(None);
    }
    let mut cidrs = Vec::new();
    let mut out = Vec::new();
    for g in given {
        if g == "primary" {
            out.extend(node_ips.iter().copied());
        } else {
            let net: IpNet = g.parse().map_err(|_| {
                anyhow::anyhow!("--nodeport-addresses {g:?}: expected CIDRs or \"primary\"")
            })?;
            cidrs.push(net);
        }
    }
    if !cidrs.is_empty() {
        let mut nl = weft_kernel::Netlink::open()?;
        for iface in weft_kernel::list_interfaces(&mut nl)? {
            for a in iface.addrs {
                if cidrs.iter().any(|c| c.contains(&a.addr())) && !out.contains(&a.addr()) {
                    out.push(a.addr());
                }
            }
        }
    }
    Ok(Some(out))
}

/// The proxy's Prometheus metrics (served by `weft proxy`).
pub struct ProxyStats {
    pub services: Gauge,
    pub service_ports: Gauge,
    pub syncs_full: Counter,
    pub syncs_partial: Counter,
    /// Service ports whose rules were (re)written.
    pub rules_synced: Counter,
    pub sync_errors: Counter,
    pub etcd_reconnects: Counter,
    pub sync_seconds: Histogram,
    /// Set after the first successful full sync.
    pub ready: Arc<AtomicBool>,
    pub registry: Arc<Mutex<Registry>>,
}

impl Default for ProxyStats {
    fn default() -> Self {
        let s = ProxyStats {
            services: Gauge::default(),
            service_ports: Gauge::default(),
            syncs_full: Counter::default(),
            syncs_partial: Counter::default(),
            rules_synced: Counter::default(),
            sync_errors: Counter::default(),
            etcd_reconnects: Counter::default(),
            sync_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
            ready: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(Mutex::new(Registry::with_prefix("weft_proxy"))),
        };
        if let Ok(mut r) = s.registry.lock() {
            r.register("services", "Services known", s.services.clone());
            r.register(
                "service_ports",
                "Service ports programmed",
                s.service_ports.clone(),
            );
            r.register("syncs_full", "Full syncs done", s.syncs_full.clone());
            r.register(
                "syncs_partial",
                "Partial syncs done",
                s.syncs_partial.clone(),
            );
            r.register(
                "rules_synced",
                "Service ports whose rules were written",
                s.rules_synced.clone(),
            );
            r.register(
                "sync_errors",
                "Syncs the firewall refused",
                s.sync_errors.clone(),
            );
            r.register(
                "etcd_reconnects",
                "Re-lists after etcd errors",
                s.etcd_reconnects.clone(),
            );
            r.register(
                "sync_duration_seconds",
                "Time to render and apply a sync",
                s.sync_seconds.clone(),
            );
            weft_firewall::fallback::register(&mut r);
        }
        s
    }
}

impl ProxyStats {
    fn record(&self, r: &SyncReport, services: usize) {
        if r.full {
            self.syncs_full.inc();
        } else {
            self.syncs_partial.inc();
        }
        self.rules_synced.inc_by(r.written as u64);
        self.services.set(services as i64);
        self.service_ports.set(r.ports as i64);
        self.sync_seconds
            .observe((r.render + r.apply).as_secs_f64());
        if r.full {
            self.ready.store(true, Ordering::Relaxed);
        }
    }
}

/// Reads the pod networks from flannel's config (`Network`, `IPv6Network`).
async fn flannel_networks(store: &Store, flannel_prefix: &str) -> Vec<IpNet> {
    let key = format!("{}/config", flannel_prefix.trim_end_matches('/'));
    let resp = match store.etcd().get(&key, None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}: off-cluster sources to cluster IPs are not masqueraded");
            return Vec::new();
        }
    };
    let Some(kv) = resp.kvs().first() else {
        tracing::warn!(
            "no flannel config at {key}: off-cluster sources to cluster IPs are not masqueraded"
        );
        return Vec::new();
    };
    match weft_core::config::NetConfig::parse(&String::from_utf8_lossy(kv.value())) {
        Ok(c) => [c.ipv4, c.ipv6]
            .iter()
            .flatten()
            .map(|p| p.network())
            .collect(),
        Err(e) => {
            tracing::warn!("flannel config at {key}: {e}");
            Vec::new()
        }
    }
}

/// Starts the source; returns its channel, the pod networks (given, or
/// flannel's from etcd) and the node's addresses.
async fn start_source(
    opts: &ProxyOptions,
) -> anyhow::Result<(mpsc::Receiver<Change>, Vec<IpNet>, Vec<IpAddr>)> {
    let (tx, rx) = mpsc::channel(1024);
    let mut nets = opts.cluster_cidr.clone();
    let ips;
    match &opts.source {
        SourceOptions::Etcd {
            etcd,
            prefix,
            flannel_prefix,
        } => {
            let store = Store::new(connect(etcd).await?, prefix);
            if nets.is_empty() {
                nets = flannel_networks(&store, flannel_prefix).await;
            }
            ips = node_ips(opts, None).await;
            tokio::spawn(source::etcd::run(store, tx));
        }
        SourceOptions::Kubernetes { kubeconfig, master } => {
            let client =
                source::kubernetes::client(kubeconfig.as_deref(), master.as_deref()).await?;
            if nets.is_empty() {
                tracing::warn!(
                    "no --cluster-cidr: off-cluster sources to cluster IPs are not masqueraded"
                );
            }
            ips = node_ips(opts, Some(&client)).await;
            tokio::spawn(source::kubernetes::run(client, tx));
        }
    }
    Ok((rx, nets, ips))
}

/// Runs until the future is dropped; returns only on a fatal error.
pub async fn run(opts: ProxyOptions, stats: Arc<ProxyStats>) -> anyhow::Result<()> {
    let iptables = match opts.mode {
        ProxyMode::Iptables => {
            let choice = opts.iptables_backend;
            let ipt = tokio::task::spawn_blocking(move || weft_firewall::backend::detect(choice))
                .await??;
            tracing::info!("iptables backend: {ipt}");
            ipt
        }
        ProxyMode::Nftables => weft_firewall::Iptables::plain(weft_firewall::Backend::Nft),
    };
    let (mut changes, nets, node_ips) = start_source(&opts).await?;
    let host = HostSettings {
        masquerade_all: opts.masquerade_all,
        node_port_ips: node_port_ips(&opts.node_port_addresses, &node_ips)?,
        node_ips,
        localhost_node_ports: opts.localhost_node_ports,
    };
    let v4 = nets.iter().find(|n| matches!(n, IpNet::V4(_))).copied();
    let v6 = nets.iter().find(|n| matches!(n, IpNet::V6(_))).copied();
    tracing::info!(
        "proxy mode {:?}, node {:?} {:?}, cluster networks {:?}",
        opts.mode,
        opts.node,
        host.node_ips,
        nets
    );
    let mut syncer = Syncer::new(opts.mode, iptables, v4, v6, &host);
    let proxy_health = ProxyHealth::default();
    if let Some(addr) = opts.healthz {
        proxy_health
            .clone()
            .serve(addr)
            .await
            .with_context(|| format!("--healthz-bind-address {addr}"))?;
    }
    let mut service_health = ServiceHealth::new(proxy_health.clone(), host.node_port_ips.clone());
    let mut catalog = Catalog::default();
    // nothing is synced before the source's first snapshot
    let mut listed = false;
    let mut next_full = Instant::now() + opts.sync_period;
    let mut dirty: BTreeSet<ServiceName> = BTreeSet::new();
    let mut flush_at: Option<Instant> = None;
    loop {
        let retry = (listed && syncer.needs_full).then(|| Instant::now() + Duration::from_secs(1));
        let wake = [Some(next_full), flush_at, retry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_full);
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else {
                    anyhow::bail!("the service source stopped");
                };
                let id = match change {
                    Change::Snapshot(fresh) => {
                        catalog = fresh;
                        listed = true;
                        dirty.clear();
                        flush_at = None;
                        if full_sync(&mut syncer, &catalog, &opts, &stats) {
                            synced(&mut service_health, &proxy_health, &catalog, &opts.node);
                        }
                        next_full = Instant::now() + opts.sync_period;
                        continue;
                    }
                    Change::Relisting => {
                        stats.etcd_reconnects.inc();
                        continue;
                    }
                    Change::Put(obj) => catalog.put(obj),
                    Change::Service(s) => catalog.put_service(s),
                    Change::Slices(id, slices) => {
                        catalog.put_slices(id.clone(), slices);
                        id
                    }
                    Change::RemoveService(id) => {
                        catalog.remove_service(&id);
                        id
                    }
                    Change::RemoveEndpoints(id) => {
                        catalog.remove_endpoints(&id);
                        id
                    }
                };
                if listed {
                    dirty.insert(id);
                    if flush_at.is_none() {
                        flush_at = Some(Instant::now() + opts.min_sync_period);
                    }
                }
            }
            _ = sleep_until(wake) => {
                if !listed {
                    next_full = Instant::now() + opts.sync_period;
                } else if syncer.needs_full || Instant::now() >= next_full {
                    dirty.clear();
                    flush_at = None;
                    if full_sync(&mut syncer, &catalog, &opts, &stats) {
                        synced(&mut service_health, &proxy_health, &catalog, &opts.node);
                    }
                    next_full = Instant::now() + opts.sync_period;
                } else if flush_at.is_some_and(|t| Instant::now() >= t) {
                    flush_at = None;
                    let services = std::mem::take(&mut dirty);
                    let plans = services
                        .iter()
                        .flat_map(|id| catalog.plan(id, &opts.node))
                        .collect();
                    match syncer.partial(&services, plans) {
                        Ok(_) if syncer.needs_full => {
                            if full_sync(&mut syncer, &catalog, &opts, &stats) {
                                synced(&mut service_health, &proxy_health, &catalog, &opts.node);
                            }
                            next_full = Instant::now() + opts.sync_period;
                        }
                        Ok(r) => {
                            stats.record(&r, catalog.services.len());
                            synced(&mut service_health, &proxy_health, &catalog, &opts.node);
                            tracing::debug!(
                                "partial sync: {} service(s), {} port(s) written, {} bytes, render {:?}, apply {:?}",
                                services.len(), r.written, r.bytes, r.render, r.apply
                            );
                        }
                        Err(e) => {
                            stats.sync_errors.inc();
                            tracing::error!("partial sync failed (full sync next): {e}");
                        }
                    }
                }
            }
        }
    }
}

/// After a successful sync: the proxy is healthy, and the health-check
/// node ports follow the catalog.
fn synced(health: &mut ServiceHealth, proxy: &ProxyHealth, catalog: &Catalog, node: &str) {
    proxy.synced_now();
    health.sync(catalog, node);
}

/// A full sync's transient text (rules, `iptables-save` output) is freed
/// by now: hand those pages back to the kernel.
fn after_full_sync() {
    weft_kernel::release_free_heap();
}

fn full_sync(
    syncer: &mut Syncer,
    catalog: &Catalog,
    opts: &ProxyOptions,
    stats: &ProxyStats,
) -> bool {
    let plans = catalog.plan_all(&opts.node);
    let n = plans.len();
    match syncer.full(plans) {
        Ok(r) => {
            stats.record(&r, catalog.services.len());
            tracing::info!(
                "full sync: {} services, {n} ports, {} bytes of rules, render {:?}, apply {:?}{}",
                catalog.services.len(),
                r.bytes,
                r.render,
                r.apply,
                if r.cold {
                    " (new table, elements loaded in parallel)"
                } else {
                    ""
                }
            );
            after_full_sync();
            true
        }
        Err(e) => {
            stats.sync_errors.inc();
            tracing::error!("full sync failed (retrying in 1s): {e}");
            false
        }
    }
}

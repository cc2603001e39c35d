//! The proxy's life: list services and endpoints from etcd, full sync,
//! then watch and partially sync the services that changed (coalescing
//! bursts), with a periodic full sync. etcd outages leave the rules as they
//! are; a bad object is logged with its field and the last good version of
//! it stays in effect.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::time::{sleep, sleep_until, Instant};
use weft_etcd::{connect, EtcdOptions};

use super::store::{KeyKind, Store};
use super::sync::{ProxyMode, SyncReport, Syncer};
use crate::plan::catalog::Catalog;
use crate::spec::{Object, ServiceName};

/// How the proxy runs (`weft proxy` flags).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub etcd: EtcdOptions,
    /// weft's service prefix (`/weft`).
    pub prefix: String,
    /// flannel's prefix, to read the pod network from its config.
    pub flannel_prefix: String,
    pub mode: ProxyMode,
    /// iptables mode: which iptables backend (auto-detected by default).
    pub iptables_backend: weft_firewall::BackendChoice,
    /// This node's name (`nodeName` of local endpoints).
    pub node: String,
    /// Pod networks; read from flannel's config when not given.
    pub cluster_cidr: Vec<IpNet>,
    /// Full sync period.
    pub sync_period: Duration,
    /// Events arriving within this window are synced together.
    pub min_sync_period: Duration,
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

fn load(catalog: &mut Catalog, key: &str, obj: Result<Object, crate::spec::SpecError>) {
    match obj {
        Ok(o) => {
            catalog.put(o);
        }
        Err(e) => tracing::error!("ignoring {key}: {e}"),
    }
}

/// Runs until the future is dropped; returns only on a fatal error.
pub async fn run(opts: ProxyOptions, stats: Arc<ProxyStats>) -> anyhow::Result<()> {
    let mut syncer: Option<Syncer> = None;
    let mut catalog = Catalog::default();
    let mut store = Store::new(connect(&opts.etcd).await?, &opts.prefix);
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
    loop {
        let listing = match store.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing services: {e}; retrying in 1s");
                stats.etcd_reconnects.inc();
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let syncer = match &mut syncer {
            Some(s) => s,
            None => {
                let nets = if opts.cluster_cidr.is_empty() {
                    flannel_networks(&store, &opts.flannel_prefix).await
                } else {
                    opts.cluster_cidr.clone()
                };
                let v4 = nets.iter().find(|n| matches!(n, IpNet::V4(_))).copied();
                let v6 = nets.iter().find(|n| matches!(n, IpNet::V6(_))).copied();
                tracing::info!(
                    "proxy mode {:?}, node {:?}, cluster networks {:?}",
                    opts.mode,
                    opts.node,
                    nets
                );
                syncer.insert(Syncer::new(opts.mode, iptables.clone(), v4, v6))
            }
        };
        let mut fresh = Catalog::default();
        for (key, obj) in listing.objects {
            // Keep the last good version of an object that went bad.
            if obj.is_err() {
                match store.classify(&key) {
                    KeyKind::Service(id) => {
                        if let Some(s) = catalog.services.get(&id) {
                            fresh.services.insert(id, s.clone());
                        }
                    }
                    KeyKind::Endpoints(id) => {
                        if let Some(e) = catalog.endpoints.get(&id) {
                            fresh.endpoints.insert(id, e.clone());
                        }
                    }
                    KeyKind::Other => {}
                }
            }
            load(&mut fresh, &key, obj);
        }
        catalog = fresh;
        full_sync(syncer, &catalog, &opts, &stats);

        // Watch from the listing's revision.
        let wopts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(listing.revision + 1)
            .with_progress_notify();
        let watch = store
            .etcd()
            .call_on(&format!("watching {}", store.root()), |mut c| {
                let (root, wopts) = (store.root(), wopts.clone());
                async move { c.watch(root, Some(wopts)).await }
            })
            .await;
        let (mut stream, member) = match watch {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("watching services: {e}; re-listing in 1s");
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut next_full = Instant::now() + opts.sync_period;
        let mut dirty: BTreeSet<ServiceName> = BTreeSet::new();
        let mut flush_at: Option<Instant> = None;
        let reason = loop {
            let retry = if syncer.needs_full {
                Some(Instant::now() + Duration::from_secs(1))
            } else {
                None
            };
            let wake = [Some(next_full), flush_at, retry]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_full);
            tokio::select! {
                msg = stream.message() => {
                    // a broken stream says the member is in trouble: the
                    // next watch goes to another one first
                    let lost = |why: String| store.etcd().stream_broken(member, &why);
                    let resp = match msg {
                        Ok(Some(r)) if r.compact_revision() > 0 => {
                            break format!("watch revision compacted at {}", r.compact_revision());
                        }
                        Ok(Some(r)) if r.canceled() => {
                            break lost(format!("watch cancelled: {}", r.cancel_reason()));
                        }
                        Ok(Some(r)) => r,
                        Ok(None) => break lost("watch closed by the server".into()),
                        Err(e) => break lost(format!("watch: {}", weft_etcd::describe(&e))),
                    };
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        let kind = store.classify(&key);
                        let id = match &kind {
                            KeyKind::Service(id) | KeyKind::Endpoints(id) => id.clone(),
                            KeyKind::Other => continue,
                        };
                        match ev.event_type() {
                            EventType::Put => load(&mut catalog, &key, store.parse_value(&key, kv.value())),
                            EventType::Delete => match kind {
                                KeyKind::Service(_) => catalog.remove_service(&id),
                                _ => catalog.remove_endpoints(&id),
                            },
                        }
                        dirty.insert(id);
                    }
                    if !dirty.is_empty() && flush_at.is_none() {
                        flush_at = Some(Instant::now() + opts.min_sync_period);
                    }
                }
                _ = sleep_until(wake) => {
                    if syncer.needs_full || Instant::now() >= next_full {
                        dirty.clear();
                        flush_at = None;
                        full_sync(syncer, &catalog, &opts, &stats);
                        next_full = Instant::now() + opts.sync_period;
                    } else if flush_at.is_some_and(|t| Instant::now() >= t) {
                        flush_at = None;
                        let services = std::mem::take(&mut dirty);
                        let plans = services
                            .iter()
                            .flat_map(|id| catalog.plan(id, &opts.node))
                            .collect();
                        match syncer.partial(&services, plans) {
                            Ok(r) => {
                                stats.record(&r, catalog.services.len());
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
        };
        stats.etcd_reconnects.inc();
        tracing::warn!("{reason}; re-listing (rules stay in place)");
        sleep(Duration::from_millis(200)).await;
    }
}

fn full_sync(syncer: &mut Syncer, catalog: &Catalog, opts: &ProxyOptions, stats: &ProxyStats) {
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
        }
        Err(e) => {
            stats.sync_errors.inc();
            tracing::error!("full sync failed (retrying in 1s): {e}");
        }
    }
}

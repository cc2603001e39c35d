//! The proxy's life: list services and endpoints from etcd, full sync,
//! then watch and partially sync the services that changed (coalescing
//! bursts), with a periodic full sync. etcd outages leave the rules as they
//! are; a bad object is logged with its field and the last good version of
//! it stays in effect.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use ipnet::IpNet;
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
    /// This node's name (`nodeName` of local endpoints).
    pub node: String,
    /// Pod networks; read from flannel's config when not given.
    pub cluster_cidr: Vec<IpNet>,
    /// Full sync period.
    pub sync_period: Duration,
    /// Events arriving within this window are synced together.
    pub min_sync_period: Duration,
}

/// Counters the proxy exposes (metrics, status).
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub syncs_full: std::sync::atomic::AtomicU64,
    pub syncs_partial: std::sync::atomic::AtomicU64,
    pub sync_errors: std::sync::atomic::AtomicU64,
    pub etcd_reconnects: std::sync::atomic::AtomicU64,
    pub services: std::sync::atomic::AtomicU64,
    pub ports: std::sync::atomic::AtomicU64,
    pub last_sync_micros: std::sync::atomic::AtomicU64,
    pub ready: std::sync::atomic::AtomicBool,
}

/// Hooks the caller observes syncs through (metrics, readiness).
pub trait SyncObserver: Send + Sync {
    fn synced(&self, report: &SyncReport);
}

impl ProxyStats {
    fn record(&self, r: &SyncReport, services: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if r.full {
            self.syncs_full.fetch_add(1, Relaxed);
        } else {
            self.syncs_partial.fetch_add(1, Relaxed);
        }
        self.services.store(services as u64, Relaxed);
        self.ports.store(r.ports as u64, Relaxed);
        self.last_sync_micros
            .store((r.render + r.apply).as_micros() as u64, Relaxed);
        self.ready.store(true, Relaxed);
    }
}

/// Reads the pod networks from flannel's config (`Network`, `IPv6Network`).
async fn flannel_networks(store: &Store, flannel_prefix: &str) -> Vec<IpNet> {
    let key = format!("{}/config", flannel_prefix.trim_end_matches('/'));
    let mut client = store.client();
    let Ok(resp) = client.get(key.clone(), None).await else {
        return Vec::new();
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
    use std::sync::atomic::Ordering::Relaxed;
    let mut syncer: Option<Syncer> = None;
    let mut catalog = Catalog::default();
    loop {
        // (Re)connect and list.
        let client = match connect(&opts.etcd).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("etcd: {e}; retrying in 1s (rules stay in place)");
                stats.etcd_reconnects.fetch_add(1, Relaxed);
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut store = Store::new(client, &opts.prefix);
        let listing = match store.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing services: {e}; retrying in 1s");
                stats.etcd_reconnects.fetch_add(1, Relaxed);
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
                syncer.insert(Syncer::new(opts.mode, v4, v6))
            }
        };
        let mut fresh = Catalog::default();
        for (key, obj) in listing.objects {
            // Keep the last good version of an object that went bad.
            if let (Err(_), KeyKind::Service(id)) = (&obj, store.classify(&key)) {
                if let Some(s) = catalog.services.get(&id) {
                    fresh.services.insert(id, s.clone());
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
        let mut client = store.client();
        let mut stream = match client.watch(store.root(), Some(wopts)).await {
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
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => break "watch closed by etcd".to_string(),
                        Err(e) => break format!("watch: {e}"),
                    };
                    if resp.compact_revision() > 0 {
                        break format!("watch revision compacted at {}", resp.compact_revision());
                    }
                    if resp.canceled() {
                        break format!("watch cancelled: {}", resp.cancel_reason());
                    }
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
                                    "partial sync: {} service(s), {} port(s) written, {} bytes, {:?}",
                                    services.len(), r.written, r.bytes, r.render + r.apply
                                );
                            }
                            Err(e) => {
                                stats.sync_errors.fetch_add(1, Relaxed);
                                tracing::error!("partial sync failed (full sync next): {e}");
                            }
                        }
                    }
                }
            }
        };
        stats.etcd_reconnects.fetch_add(1, Relaxed);
        tracing::warn!("{reason}; re-listing (rules stay in place)");
        sleep(Duration::from_millis(200)).await;
    }
}

fn full_sync(syncer: &mut Syncer, catalog: &Catalog, opts: &ProxyOptions, stats: &ProxyStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let plans = catalog.plan_all(&opts.node);
    let n = plans.len();
    match syncer.full(plans) {
        Ok(r) => {
            stats.record(&r, catalog.services.len());
            tracing::info!(
                "full sync: {} services, {n} ports, {} bytes of rules, render {:?}, apply {:?}",
                catalog.services.len(),
                r.bytes,
                r.render,
                r.apply
            );
        }
        Err(e) => {
            stats.sync_errors.fetch_add(1, Relaxed);
            tracing::error!("full sync failed (retrying in 1s): {e}");
        }
    }
}

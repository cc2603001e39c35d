//! The proxy's Prometheus metrics (`weft_proxy_*` on `/metrics`, and
//! kube-proxy's `kubeproxy_*` names where they mean the same, see
//! [`super::kube_proxy_metrics`]) and its readiness flag, recorded after
//! each sync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::conntrack::ConntrackStats;
use super::kube_proxy_metrics::KubeProxyMetrics;
use super::sync::{ProxyMode, SyncReport};

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
    /// Full syncs after the rules were found removed from outside.
    pub rules_restored: Counter,
    pub sync_seconds: Histogram,
    /// Stale connection-tracking entries deleted, and cleanups that failed.
    pub conntrack: ConntrackStats,
    /// The same facts under kube-proxy's names.
    pub kube_proxy: KubeProxyMetrics,
    /// Set after the first successful full sync.
    pub ready: Arc<AtomicBool>,
    pub registry: Arc<Mutex<Registry>>,
}

impl ProxyStats {
    /// The metrics of a proxy in `mode` (kube-proxy's failure counter is
    /// per mode).
    pub fn new(mode: ProxyMode) -> Self {
        let s = ProxyStats {
            services: Gauge::default(),
            service_ports: Gauge::default(),
            syncs_full: Counter::default(),
            syncs_partial: Counter::default(),
            rules_synced: Counter::default(),
            sync_errors: Counter::default(),
            etcd_reconnects: Counter::default(),
            rules_restored: Counter::default(),
            sync_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
            conntrack: ConntrackStats::default(),
            kube_proxy: KubeProxyMetrics::default(),
            ready: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(Mutex::new(Registry::default())),
        };
        if let Ok(mut root) = s.registry.lock() {
            s.kube_proxy.register(&mut root, mode);
            let r = root.sub_registry_with_prefix("weft_proxy");
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
                "rules_restored",
                "Full syncs after the rules were found removed from outside (checked each second)",
                s.rules_restored.clone(),
            );
            r.register(
                "sync_duration_seconds",
                "Time to render and apply a sync",
                s.sync_seconds.clone(),
            );
            r.register(
                "conntrack_entries_deleted",
                "Stale UDP/SCTP conntrack entries deleted after syncs, by protocol",
                s.conntrack.deleted.clone(),
            );
            r.register(
                "conntrack_cleanup_errors",
                "Conntrack cleanups that failed (retried after the next sync)",
                s.conntrack.errors.clone(),
            );
            weft_firewall::fallback::register(r);
        }
        s
    }

    /// A sync the firewall refused.
    pub(super) fn sync_failed(&self, mode: ProxyMode) {
        self.sync_errors.inc();
        self.kube_proxy.sync_failed(mode);
    }

    pub(super) fn record(&self, r: &SyncReport, services: usize) {
        if r.full {
            self.syncs_full.inc();
        } else {
            self.syncs_partial.inc();
        }
        self.rules_synced.inc_by(r.written as u64);
        self.services.set(services as i64);
        self.service_ports.set(r.ports as i64);
        let seconds = (r.render + r.apply).as_secs_f64();
        self.sync_seconds.observe(seconds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.kube_proxy.synced(r.full, seconds, now);
        if r.full {
            self.ready.store(true, Ordering::Relaxed);
        }
    }
}

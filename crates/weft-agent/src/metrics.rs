//! The agent's Prometheus metrics, served on the health endpoint.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct AgentMetrics {
    /// Remote leases in the desired state.
    pub leases: Gauge,
    /// Duration of kernel passes (full and incremental).
    pub reconcile_seconds: Histogram,
    /// Kernel operations the kernel refused.
    pub netlink_errors: Counter,
    /// Watch restarts and re-lists after etcd trouble.
    pub etcd_reconnects: Counter,
    /// Firewall rule sets (re)applied.
    pub rules_synced: Counter,
    /// Set once the first full pass is done.
    pub ready: Arc<AtomicBool>,
    pub registry: Arc<Mutex<Registry>>,
}

static METRICS: OnceLock<AgentMetrics> = OnceLock::new();

/// The process's metrics (registered on first use).
pub fn get() -> &'static AgentMetrics {
    METRICS.get_or_init(|| {
        let m = AgentMetrics {
            leases: Gauge::default(),
            reconcile_seconds: Histogram::new(
                weft_telemetry::geometric_buckets(0.0001, 4.0, 10).into_iter(),
            ),
            netlink_errors: Counter::default(),
            etcd_reconnects: Counter::default(),
            rules_synced: Counter::default(),
            ready: Arc::new(AtomicBool::new(false)),
            registry: Arc::new(Mutex::new(Registry::with_prefix("weft_agent"))),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "leases",
                "Remote leases programmed into the kernel",
                m.leases.clone(),
            );
            r.register(
                "reconcile_duration_seconds",
                "Time to apply a full or incremental pass to the kernel",
                m.reconcile_seconds.clone(),
            );
            r.register(
                "netlink_errors",
                "Kernel operations refused by netlink",
                m.netlink_errors.clone(),
            );
            r.register(
                "etcd_reconnects",
                "Watch restarts and re-lists after etcd errors",
                m.etcd_reconnects.clone(),
            );
            r.register(
                "rules_synced",
                "Masquerade/forward rule sets (re)applied",
                m.rules_synced.clone(),
            );
        }
        m
    })
}

//! The agent's Prometheus metrics, served on the health endpoint.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The label of a refused lease: why it was left out.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

pub struct AgentMetrics {
    /// Remote leases in the desired state.
    pub leases: Gauge,
    /// Remote leases left out now (subnet outside the network, wrong
    /// length, taken, or a public address that is not unicast).
    pub leases_refused: Gauge,
    /// Refusals told (once per lease value), by reason.
    pub leases_refused_total: Family<Reason, Counter>,
    /// udp backend: datagrams dropped because their source is no peer's
    /// public address.
    pub udp_foreign_datagrams: Counter,
    /// Duration of kernel passes (full and incremental).
    pub reconcile_seconds: Histogram,
    /// Kernel operations the kernel refused.
    pub netlink_errors: Counter,
    /// Watch restarts and re-lists after etcd trouble.
    pub etcd_reconnects: Counter,
    /// Firewall rule sets (re)applied.
    pub rules_synced: Counter,
    /// extension backend: SubnetAddCommand / SubnetRemoveCommand runs that failed.
    pub extension_command_failures: Counter,
    /// ipsec backend: charon requests that failed (or charon not starting).
    pub ipsec_failures: Counter,
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
            leases_refused: Gauge::default(),
            leases_refused_total: Family::default(),
            udp_foreign_datagrams: Counter::default(),
            reconcile_seconds: Histogram::new(
                weft_telemetry::geometric_buckets(0.0001, 4.0, 10).into_iter(),
            ),
            netlink_errors: Counter::default(),
            etcd_reconnects: Counter::default(),
            rules_synced: Counter::default(),
            extension_command_failures: Counter::default(),
            ipsec_failures: Counter::default(),
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
                "leases_refused",
                "Remote leases left out because they fail the network config's checks",
                m.leases_refused.clone(),
            );
            r.register(
                "lease_refusals",
                "Remote lease values refused, by reason (each value counted once)",
                m.leases_refused_total.clone(),
            );
            r.register(
                "udp_foreign_datagrams",
                "udp backend: datagrams dropped because their source is no lease's PublicIP",
                m.udp_foreign_datagrams.clone(),
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
            r.register(
                "extension_command_failures",
                "extension backend: SubnetAddCommand and SubnetRemoveCommand runs that failed",
                m.extension_command_failures.clone(),
            );
            r.register(
                "ipsec_failures",
                "ipsec backend: requests to charon that failed after retries, or charon not starting",
                m.ipsec_failures.clone(),
            );
            weft_firewall::fallback::register(&mut r);
        }
        m
    })
}

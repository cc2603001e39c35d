//! kube-proxy's own metric names (`kubeproxy_*`, from the pinned
//! Kubernetes' pkg/proxy/metrics), exported beside weft's `weft_proxy_*`
//! wherever weft measures the same thing, with the same types, labels and
//! buckets: dashboards and alerts written for kube-proxy keep working
//! after the swap. What kube-proxy measures and weft does not (the ipvs
//! metrics, the topology and traffic-distribution counters) is not
//! exported under its name.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::sync::ProxyMode;

/// kube-proxy's `ip_family` label; weft's proxy programs IPv4 and IPv6
/// in one sync, reported as IPv4 (the primary family) as a single-stack
/// kube-proxy would.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IpFamily {
    ip_family: &'static str,
}

const PRIMARY: IpFamily = IpFamily { ip_family: "IPv4" };

fn sync_histogram() -> Histogram {
    // kube-proxy: metrics.ExponentialBuckets(0.001, 2, 15)
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// kube-proxy's network programming buckets: 0.25 s, 0.5 s, each second
/// to 59 s, each 5 s to 115 s, each 30 s to 5 min.
fn programming_histogram() -> Histogram {
    let mut b = vec![0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    Histogram::new(b.into_iter())
}

/// The `kubeproxy_*` metrics weft keeps.
pub struct KubeProxyMetrics {
    network_programming: Family<IpFamily, Histogram>,
    sync: Family<IpFamily, Histogram>,
    sync_full: Family<IpFamily, Histogram>,
    sync_partial: Family<IpFamily, Histogram>,
    last_sync: Family<IpFamily, Gauge<f64, AtomicU64>>,
    service_changes: Counter,
    endpoint_changes: Counter,
    iptables_restore_failures: Family<IpFamily, Counter>,
    nftables_sync_failures: Family<IpFamily, Counter>,
}

impl Default for KubeProxyMetrics {
    fn default() -> Self {
        KubeProxyMetrics {
            network_programming: Family::new_with_constructor(programming_histogram),
            sync: Family::new_with_constructor(sync_histogram),
            sync_full: Family::new_with_constructor(sync_histogram),
            sync_partial: Family::new_with_constructor(sync_histogram),
            last_sync: Family::default(),
            service_changes: Counter::default(),
            endpoint_changes: Counter::default(),
            iptables_restore_failures: Family::default(),
            nftables_sync_failures: Family::default(),
        }
    }
}

impl KubeProxyMetrics {
    /// Registers under `kubeproxy_` in `root` (an unprefixed registry).
    pub fn register(&self, root: &mut Registry, mode: ProxyMode) {
        let r = root.sub_registry_with_prefix("kubeproxy");
        r.register(
            "network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            self.network_programming.clone(),
        );
        r.register(
            "sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            self.sync.clone(),
        );
        r.register(
            "sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            self.sync_full.clone(),
        );
        r.register(
            "sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            self.sync_partial.clone(),
        );
        r.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            self.last_sync.clone(),
        );
        r.register(
            "sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            self.service_changes.clone(),
        );
        r.register(
            "sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            self.endpoint_changes.clone(),
        );
        // as kube-proxy, each mode's failure counter only in that mode
        match mode {
            ProxyMode::Iptables => r.register(
                "sync_proxy_rules_iptables_restore_failures",
                "Cumulative proxy iptables restore failures",
                self.iptables_restore_failures.clone(),
            ),
            ProxyMode::Nftables => r.register(
                "sync_proxy_rules_nftables_sync_failures",
                "Cumulative proxy nftables sync failures",
                self.nftables_sync_failures.clone(),
            ),
        }
        // kube-proxy shows the families before the first sync, at zero
        let _ = self.sync.get_or_create(&PRIMARY);
        let _ = self.sync_full.get_or_create(&PRIMARY);
        let _ = self.sync_partial.get_or_create(&PRIMARY);
        let _ = self.iptables_restore_failures.get_or_create(&PRIMARY);
        let _ = self.nftables_sync_failures.get_or_create(&PRIMARY);
    }

    /// A sync that reached the kernel, `seconds` long, at `now` (Unix time).
    pub fn synced(&self, full: bool, seconds: f64, now: f64) {
        self.sync.get_or_create(&PRIMARY).observe(seconds);
        let kind = if full {
            &self.sync_full
        } else {
            &self.sync_partial
        };
        kind.get_or_create(&PRIMARY).observe(seconds);
        self.last_sync.get_or_create(&PRIMARY).set(now);
    }

    /// A sync the firewall refused.
    pub fn sync_failed(&self, mode: ProxyMode) {
        let family = match mode {
            ProxyMode::Iptables => &self.iptables_restore_failures,
            ProxyMode::Nftables => &self.nftables_sync_failures,
        };
        family.get_or_create(&PRIMARY).inc();
    }

    /// An endpoint change in the kernel, `seconds` after the change that
    /// triggered it (its EndpointSlice's trigger time).
    pub fn network_programmed(&self, seconds: f64) {
        self.network_programming
            .get_or_create(&PRIMARY)
            .observe(seconds);
    }

    pub fn service_changed(&self) {
        self.service_changes.inc();
    }

    pub fn endpoints_changed(&self) {
        self.endpoint_changes.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &KubeProxyMetrics, mode: ProxyMode) -> String {
        let mut root = Registry::default();
        m.register(&mut root, mode);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &root).expect("encode");
        out
    }

    #[test]
    fn kube_proxy_names_types_and_labels() {
        let m = KubeProxyMetrics::default();
        m.synced(true, 0.02, 1_700_000_000.0);
        m.service_changed();
        m.endpoints_changed();
        m.endpoints_changed();
        m.sync_failed(ProxyMode::Nftables);
        let t = text(&m, ProxyMode::Nftables);
        for line in [
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1700000000",
            "kubeproxy_sync_proxy_rules_service_changes_total 1",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total 2",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family=\"IPv4\"} 1",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 0",
        ] {
            assert!(t.contains(line), "no {line:?} in\n{t}");
        }
        assert!(!t.contains("iptables_restore_failures"));
    }
}

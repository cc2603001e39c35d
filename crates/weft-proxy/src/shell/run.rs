//! The proxy's life: a source (weft's etcd store or the Kubernetes API,
//! [`super::source`]) reports Services and endpoints; every snapshot it
//! sends is a full sync, single changes are partial syncs of the Services
//! they touch (coalescing bursts), with a periodic full sync. While the
//! source is away, the rules stay as they are.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ipnet::IpNet;
use tokio::time::{sleep_until, Instant};

use super::conntrack::{Cleaner, Scope};
use super::health::{ProxyHealth, ServiceHealth};
use super::metrics::ProxyStats;
use super::options::{ProxyOptions, RulesOptions, SyncTiming};
use super::source::Change;
use super::start::start;
use super::sync::{ProxyMode, Syncer};
use crate::plan::catalog::Catalog;
use crate::plan::conntrack::Frontends;
use crate::spec::{Object, ServiceName};

/// The iptables programs of the chosen backend (nftables mode: unused).
async fn firewall(rules: RulesOptions) -> anyhow::Result<weft_firewall::Iptables> {
    Ok(match rules.mode {
        ProxyMode::Iptables => {
            let choice = rules.iptables_backend;
            let ipt = tokio::task::spawn_blocking(move || weft_firewall::backend::detect(choice))
                .await??;
            tracing::info!("iptables backend: {ipt}");
            ipt
        }
        ProxyMode::Nftables => weft_firewall::Iptables::plain(weft_firewall::Backend::Nft),
    })
}

/// Runs until the future is dropped; returns only on a fatal error.
pub async fn run(opts: ProxyOptions, stats: Arc<ProxyStats>) -> anyhow::Result<()> {
    let iptables = firewall(opts.rules).await?;
    let started = start(&opts.source, &opts.node).await?;
    let nets = &started.networks;
    let v4 = nets.iter().find(|n| matches!(n, IpNet::V4(_))).copied();
    let v6 = nets.iter().find(|n| matches!(n, IpNet::V6(_))).copied();
    tracing::info!(
        "proxy mode {:?}, node {:?} {:?}, cluster networks {:?}",
        opts.rules.mode,
        opts.node.name,
        started.host.node_ips,
        nets
    );
    let syncer = Syncer::new(opts.rules.mode, iptables, v4, v6, &started.host);
    let health = ProxyHealth::default();
    if let Some(addr) = opts.healthz {
        health
            .clone()
            .serve(addr)
            .await
            .with_context(|| format!("--healthz-bind-address {addr}"))?;
    }
    let mut proxy = Proxy {
        conntrack: Cleaner::new(opts.conntrack_cleanup, stats.conntrack.clone()),
        services: ServiceHealth::new(health.clone(), started.host.node_port_ips.clone()),
        health,
        syncer,
        catalog: Catalog::default(),
        node: opts.node.name,
        stats,
        triggers: TriggerTimes::new(),
    };
    proxy.serve(started.changes, opts.timing).await
}

/// The sync loop's state.
struct Proxy {
    syncer: Syncer,
    catalog: Catalog,
    /// This node's name (local endpoints).
    node: String,
    stats: Arc<ProxyStats>,
    health: ProxyHealth,
    /// The health-check node ports of `externalTrafficPolicy: Local`.
    services: ServiceHealth,
    /// Deletes the conntrack entries each sync leaves stale.
    conntrack: Cleaner,
    /// Endpoint changes waiting to reach the kernel, for kube-proxy's
    /// network programming latency.
    triggers: TriggerTimes,
}

/// When the changes behind each service's pending EndpointSlice updates
/// happened, as kube-proxy keeps them: only changes after the proxy
/// started, none for removed endpoints (a deleted slice's trigger time is
/// its last update's).
struct TriggerTimes {
    started: std::time::SystemTime,
    pending: std::collections::BTreeMap<ServiceName, Vec<std::time::SystemTime>>,
}

impl TriggerTimes {
    fn new() -> TriggerTimes {
        TriggerTimes {
            started: std::time::SystemTime::now(),
            pending: Default::default(),
        }
    }

    fn note(&mut self, id: &ServiceName, at: Option<std::time::SystemTime>) {
        if let Some(at) = at.filter(|at| *at > self.started) {
            self.pending.entry(id.clone()).or_default().push(at);
        }
    }

    fn forget(&mut self, id: &ServiceName) {
        self.pending.remove(id);
    }

    /// After a sync that reached the kernel: the seconds from each pending
    /// change until `now`.
    fn programmed(&mut self, now: std::time::SystemTime) -> Vec<f64> {
        std::mem::take(&mut self.pending)
            .into_values()
            .flatten()
            .map(|at| now.duration_since(at).unwrap_or_default().as_secs_f64())
            .collect()
    }
}

/// When the loop acts next.
struct Schedule {
    timing: SyncTiming,
    /// Nothing is synced before the source's first snapshot.
    listed: bool,
    next_full: Instant,
    /// Services changed since the last sync, and when they are synced.
    dirty: BTreeSet<ServiceName>,
    flush_at: Option<Instant>,
    /// When the rules are next checked for removal from outside.
    canary_at: Instant,
    /// When a failed sync is retried (a full sync, each second).
    retry_at: Option<Instant>,
    /// The last restore after the rules were found removed.
    restored_at: Option<Instant>,
}

/// The most queued changes taken before the loop looks at its timers.
const DRAIN_AT_ONCE: usize = 1024;

/// How often the rules are checked for removal from outside (see
/// [`super::canary`]).
const CANARY_PERIOD: Duration = Duration::from_millis(250);

/// The least time between two restores after outside removals.
const RESTORE_GAP: Duration = Duration::from_secs(5);

impl Schedule {
    fn full_done(&mut self) {
        self.retry_at = None;
        self.dirty.clear();
        self.flush_at = None;
        self.next_full = Instant::now() + self.timing.period;
    }

    fn changed(&mut self, id: ServiceName) {
        if self.listed {
            self.dirty.insert(id);
            if self.flush_at.is_none() {
                self.flush_at = Some(Instant::now() + self.timing.min_period);
            }
        }
    }
}

impl Proxy {
    async fn serve(
        &mut self,
        mut changes: tokio::sync::mpsc::Receiver<Change>,
        timing: SyncTiming,
    ) -> anyhow::Result<()> {
        let mut s = Schedule {
            timing,
            listed: false,
            next_full: Instant::now() + timing.period,
            dirty: BTreeSet::new(),
            flush_at: None,
            canary_at: Instant::now() + CANARY_PERIOD,
            retry_at: None,
            restored_at: None,
        };
        loop {
            let retry = (s.listed && self.syncer.needs_full).then(|| {
                *s.retry_at
                    .get_or_insert(Instant::now() + Duration::from_secs(1))
            });
            let wake = [Some(s.next_full), s.flush_at, retry, Some(s.canary_at)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(s.next_full);
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else {
                        anyhow::bail!("the service source stopped");
                    };
                    self.take(change, &mut s);
                    // what else is queued joins this change's sync: a burst
                    // (a rollout's slices) is one transaction, not one each
                    for _ in 0..DRAIN_AT_ONCE {
                        let Ok(change) = changes.try_recv() else { break };
                        self.take(change, &mut s);
                    }
                    // a sync already due (no --min-sync-period) runs now,
                    // not one trip through the timer later
                    if s.flush_at.is_some_and(|t| Instant::now() >= t) {
                        self.wake(&mut s);
                    }
                }
                _ = sleep_until(wake) => self.wake(&mut s),
            }
        }
    }

    /// One change from the source: into the catalog, and a sync scheduled.
    fn take(&mut self, change: Change, s: &mut Schedule) {
        let catalog = &mut self.catalog;
        let kube_proxy = &self.stats.kube_proxy;
        let id = match change {
            Change::Snapshot(fresh, kept) => {
                catalog.replace(fresh, &kept);
                return self.listed(s);
            }
            Change::ServicesListed(fresh, kept) => {
                catalog.replace_services(fresh, &kept);
                return self.listed(s);
            }
            Change::SlicesListed(fresh) => {
                catalog.slices = fresh;
                return self.listed(s);
            }
            Change::Relisting => {
                self.stats.etcd_reconnects.inc();
                return;
            }
            Change::Put(obj) => {
                match &obj {
                    Object::Service(_) => kube_proxy.service_changed(),
                    Object::Endpoints(_) => kube_proxy.endpoints_changed(),
                }
                catalog.put(obj)
            }
            Change::Service(svc) => {
                kube_proxy.service_changed();
                catalog.put_service(svc)
            }
            Change::Slice(key, set, trigger) => {
                for id in catalog.put_slice(key, set) {
                    self.slices_changed(id, trigger, s);
                }
                return;
            }
            Change::RemoveSlice(key) => {
                if let Some(id) = catalog.remove_slice(&key) {
                    self.slices_changed(id, None, s);
                }
                return;
            }
            Change::RemoveService(id) => {
                kube_proxy.service_changed();
                catalog.remove_service(&id);
                id
            }
            Change::RemoveEndpoints(id) => {
                kube_proxy.endpoints_changed();
                self.triggers.forget(&id);
                catalog.remove_endpoints(&id);
                id
            }
        };
        s.changed(id);
    }

    /// A service's endpoints changed (an EndpointSlice of it put or gone).
    fn slices_changed(&mut self, id: ServiceName, trigger: Option<SystemTime>, s: &mut Schedule) {
        self.stats.kube_proxy.endpoints_changed();
        if self.catalog.slices(&id).is_empty() {
            self.triggers.forget(&id);
        } else {
            self.triggers.note(&id, trigger);
        }
        s.changed(id);
    }

    /// A listing replaced what the catalog held: everything is synced.
    fn listed(&mut self, s: &mut Schedule) {
        s.listed = true;
        self.full_sync();
        s.full_done();
    }

    /// A timer fired: a retry, the periodic full sync, or the changed
    /// services' partial sync.
    fn wake(&mut self, s: &mut Schedule) {
        // (advanced whenever due, or a past time would wake the loop at once
        // again and again before the first listing)
        if Instant::now() >= s.canary_at {
            s.canary_at = Instant::now() + CANARY_PERIOD;
            // at most one restore per RESTORE_GAP: rules that a full sync
            // cannot put back (a kernel refusing a family's hook) are not
            // rewritten four times a second
            let recent = s.restored_at.is_some_and(|t| t.elapsed() < RESTORE_GAP);
            if s.listed && !self.syncer.needs_full && !recent && self.rules_removed() {
                s.restored_at = Some(Instant::now());
                self.stats.rules_restored.inc();
                self.full_sync();
                s.full_done();
                return;
            }
        }
        let now = Instant::now();
        let retry_due = self.syncer.needs_full && s.retry_at.is_some_and(|t| now >= t);
        if !s.listed {
            if now >= s.next_full {
                s.next_full = now + s.timing.period;
            }
        } else if retry_due || now >= s.next_full {
            self.full_sync();
            s.full_done();
        } else if s.flush_at.is_some_and(|t| Instant::now() >= t) {
            s.flush_at = None;
            let services = std::mem::take(&mut s.dirty);
            if self.partial_sync(&services) {
                self.full_sync();
                s.full_done();
            }
        }
    }

    /// Whether something outside removed the rules (said at warn; a check
    /// that cannot run is logged and taken as "in place").
    fn rules_removed(&mut self) -> bool {
        match self.syncer.rules_intact() {
            Ok(true) => false,
            Ok(false) => {
                tracing::warn!(
                    "the proxy's rules were removed from outside (a firewall reload or flush?): restoring them"
                );
                true
            }
            Err(e) => {
                tracing::debug!("checking the rules: {e}");
                false
            }
        }
    }

    /// After a successful sync (of `changed` only, or of everything): the
    /// proxy is healthy, and the health-check node ports follow the
    /// catalog.
    fn synced(&mut self, changed: Option<&BTreeSet<ServiceName>>) {
        for seconds in self.triggers.programmed(std::time::SystemTime::now()) {
            self.stats.kube_proxy.network_programmed(seconds);
        }
        self.health.synced_now();
        match changed {
            Some(changed) => self
                .services
                .sync_changed(&self.catalog, &self.node, changed),
            None => self.services.sync(&self.catalog, &self.node),
        }
    }

    /// Syncs the changed services; true when that turned out to need a
    /// full sync now (a failed one is retried by the timer instead).
    fn partial_sync(&mut self, services: &BTreeSet<ServiceName>) -> bool {
        let plans = services
            .iter()
            .flat_map(|id| self.catalog.plan(id, &self.node))
            .collect::<Vec<_>>();
        let frontends = Frontends::of(&plans);
        match self.syncer.partial(services, plans) {
            Ok(_) if self.syncer.needs_full => true,
            Ok(r) => {
                self.stats.record(&r, self.catalog.services.len());
                self.conntrack.clean(frontends, Scope::Frontends);
                self.synced(Some(services));
                tracing::debug!(
                    "partial sync: {} service(s), {} port(s) written, {} bytes, render {:?}, apply {:?}",
                    services.len(), r.written, r.bytes, r.render, r.apply
                );
                false
            }
            Err(e) => {
                self.stats.sync_failed(self.syncer.mode());
                tracing::error!("partial sync failed (full sync next): {e}");
                false
            }
        }
    }

    fn full_sync(&mut self) {
        let planning = std::time::Instant::now();
        let plans = self.catalog.plan_all(&self.node);
        let plan = planning.elapsed();
        let n = plans.len();
        let frontends = Frontends::of(&plans);
        match self.syncer.full(plans) {
            Ok(r) => {
                let services = self.catalog.services.len();
                self.stats.record(&r, services);
                tracing::info!(
                    "full sync: {services} services, {n} ports, {} bytes of rules, plan {plan:?}, render {:?}, apply {:?}{}",
                    r.bytes,
                    r.render,
                    r.apply,
                    r.cold_steps
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                );
                // the sync's transient text is freed by now: hand those
                // pages back to the kernel
                weft_kernel::release_free_heap();
                self.conntrack.clean(frontends, Scope::WholeTable);
                self.synced(None);
            }
            Err(e) => {
                self.stats.sync_failed(self.syncer.mode());
                tracing::error!("full sync failed (retrying in 1s): {e}");
            }
        }
    }
}

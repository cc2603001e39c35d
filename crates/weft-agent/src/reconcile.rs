//! Keeps the kernel equal to the desired data plane.
//!
//! Two passes: a full pass dumps what the kernel holds on the device and
//! applies the diff (at start, after a re-list, periodically to repair
//! drift); an incremental pass applies the operations that one batch of
//! lease events produced (see [`Desired`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use weft_core::admission::{Admission, Refusal, Rules, Verdict};
use weft_core::lease::{Lease, LeaseKey};
use weft_core::plan::dataplane::diff;
use weft_core::plan::{Desired, Op, Planner};
use weft_kernel::{KernelError, Netlink, Ownership};

use crate::extension::ExtensionSink;
use crate::ipsec::sink::IpsecSink;
use crate::udp::UdpPeers;
use crate::wireguard::sink::WgSink;

/// Passes with at least this many kernel changes log a progress line.
const PROGRESS_OPS: usize = 1000;
/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub peers: usize,
    pub ops: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

/// Where remote leases go: kernel entries planned by a backend per address
/// family, the udp backend's userspace peer table, WireGuard peers, or the
/// extension backend's commands.
pub struct Sink {
    pub planners: Vec<Planner>,
    pub udp: Option<Arc<UdpPeers>>,
    pub wireguard: Option<WgSink>,
    pub extension: Option<ExtensionSink>,
    pub ipsec: Option<IpsecSink>,
}

pub struct Reconciler {
    nl: Netlink,
    ownership: Ownership,
    sink: Sink,
    own: LeaseKey,
    /// Which remote leases may reach the kernel at all.
    admission: Admission,
    desired: Desired,
    /// Leases already reported as unusable by a backend (to log each once).
    warned: HashSet<LeaseKey>,
    /// A pass failed in part; the next full pass should come soon.
    pub needs_full: bool,
}

impl Reconciler {
    pub fn new(nl: Netlink, sink: Sink, ownership: Ownership, own: LeaseKey, rules: Rules) -> Self {
        Reconciler {
            nl,
            ownership,
            sink,
            own,
            admission: Admission::new(rules, own),
            desired: Desired::default(),
            warned: HashSet::new(),
            needs_full: false,
        }
    }

    /// Replaces every peer with `records` (own lease skipped; leases the
    /// admission refuses left out).
    pub fn reset(&mut self, records: &[Lease]) {
        if let Some(peers) = &self.sink.udp {
            peers.clear();
        }
        if let Some(wg) = &mut self.sink.wireguard {
            wg.begin_reset();
        }
        if let Some(ext) = &mut self.sink.extension {
            ext.begin_reset();
        }
        if let Some(ipsec) = &mut self.sink.ipsec {
            ipsec.begin_reset();
        }
        let verdicts = self.admission.reset(records);
        let mut usable: Vec<(IpNet, weft_core::plan::PeerEntries)> = Vec::new();
        for (rec, verdict) in records.iter().zip(verdicts) {
            match verdict {
                Verdict::Admitted => usable.extend(self.plan(rec)),
                Verdict::Refused { refusal, new } => report_refusal(&rec.key, &refusal, new),
            }
        }
        if let Some(wg) = &mut self.sink.wireguard {
            wg.end_reset();
        }
        if let Some(ext) = &mut self.sink.extension {
            ext.end_reset();
        }
        if let Some(ipsec) = &mut self.sink.ipsec {
            ipsec.end_reset();
        }
        self.desired.reset(usable.into_iter());
        self.count_refused();
    }

    /// Leases the admission refuses now, with why (for status reports).
    pub fn refused(&self) -> impl Iterator<Item = (&LeaseKey, &Refusal)> {
        self.admission.refused()
    }

    fn count_refused(&self) {
        crate::metrics::get()
            .leases_refused
            .set(self.admission.refused_count() as i64);
    }

    /// Kernel entries for a remote lease, per family, keyed by subnet;
    /// nothing for our own lease; unusable leases are logged once each.
    fn plan(&mut self, rec: &Lease) -> Vec<(IpNet, weft_core::plan::PeerEntries)> {
        if rec.key == self.own {
            return Vec::new();
        }
        if let Some(peers) = &self.sink.udp {
            match (rec.key.v4, rec.attrs.backend()) {
                (Some(subnet), "udp") => peers.set(subnet, rec.attrs.public_ip),
                (_, other) => {
                    if self.warned.insert(rec.key) {
                        tracing::warn!(
                            "lease {}: backend {other:?} is not udp; lease ignored",
                            rec.key
                        );
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut problems = Vec::new();
        if let Some(ext) = &mut self.sink.extension {
            if let Err(e) = ext.upsert(rec) {
                problems.push(e.to_string());
            }
        }
        if let Some(ipsec) = &mut self.sink.ipsec {
            if let Err(e) = ipsec.upsert(rec) {
                problems.push(e);
            }
            self.needs_full |= ipsec.take_failed();
        }
        if let Some(wg) = &mut self.sink.wireguard {
            match wg.planner.peers(&rec.key, &rec.attrs) {
                Ok(peers) => {
                    if let Err(why) = wg.apply(rec.key, peers) {
                        problems.push(why);
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        for planner in &self.sink.planners {
            match planner.entries(&rec.key, &rec.attrs) {
                Ok(entries) => out.push((entries.route.dst, entries)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() {
            self.warned.remove(&rec.key);
        } else if self.warned.insert(rec.key) {
            for e in problems {
                tracing::warn!("{e}");
            }
        }
        out
    }

    /// A lease appeared or changed: the operations to apply. A lease the
    /// admission refuses is left out (and what it had programmed removed);
    /// one a backend cannot use is skipped, leaving whatever was
    /// programmed for that subnet before in place.
    pub fn upsert(&mut self, rec: &Lease) -> Vec<Op> {
        if rec.key == self.own {
            return Vec::new();
        }
        let was_admitted = self.admission.is_admitted(&rec.key);
        let ops = match self.admission.put(rec) {
            Verdict::Admitted => self.program(rec),
            Verdict::Refused { refusal, new } => {
                report_refusal(&rec.key, &refusal, new);
                if was_admitted {
                    self.unprogram(&rec.key)
                } else {
                    Vec::new()
                }
            }
        };
        self.count_refused();
        ops
    }

    fn program(&mut self, rec: &Lease) -> Vec<Op> {
        let planned = self.plan(rec);
        let mut ops = Vec::new();
        for (subnet, entries) in planned {
            ops.extend(self.desired.upsert(subnet, entries));
        }
        ops
    }

    /// A lease went away (deleted or expired): the operations to apply,
    /// including those for leases that were waiting for its subnet.
    pub fn remove(&mut self, key: &LeaseKey) -> Vec<Op> {
        let mut ops = if self.admission.is_admitted(key) {
            self.unprogram(key)
        } else {
            Vec::new()
        };
        for waiting in self.admission.remove(key) {
            tracing::info!(
                "lease {}: admitted now that lease {key} is gone",
                waiting.key
            );
            ops.extend(self.program(&waiting));
        }
        self.count_refused();
        ops
    }

    /// The operations that take what `key` programmed out of the kernel.
    fn unprogram(&mut self, key: &LeaseKey) -> Vec<Op> {
        self.warned.remove(key);
        if let (Some(peers), Some(subnet)) = (&self.sink.udp, key.v4) {
            peers.remove(subnet);
        }
        if let Some(wg) = &mut self.sink.wireguard {
            wg.remove(key);
        }
        if let Some(ext) = &mut self.sink.extension {
            ext.remove(key);
        }
        if let Some(ipsec) = &mut self.sink.ipsec {
            ipsec.remove(key);
            self.needs_full |= ipsec.take_failed();
        }
        let mut ops = Vec::new();
        for subnet in [key.v4.map(IpNet::V4), key.v6.map(IpNet::V6)]
            .into_iter()
            .flatten()
        {
            ops.extend(self.desired.remove(subnet));
        }
        ops
    }

    /// Remote leases programmed: kernel entries, or WireGuard peers' leases.
    fn peer_count(&self) -> usize {
        self.desired.peer_count()
            + self.sink.wireguard.as_ref().map_or(0, |w| w.lease_count())
            + self.sink.extension.as_ref().map_or(0, |e| e.lease_count())
            + self.sink.ipsec.as_ref().map_or(0, |e| e.lease_count())
    }

    /// Dumps the kernel, applies the full diff.
    pub fn full_pass(&mut self) -> Result<PassReport, KernelError> {
        let start = Instant::now();
        if let Some(ipsec) = &mut self.sink.ipsec {
            ipsec.sync_kernel()?;
            self.needs_full |= ipsec.take_failed();
        }
        let current = weft_kernel::read_dataplane(&mut self.nl, &self.ownership)?;
        let ops = diff(&current, self.desired.plane());
        drop(current);
        self.execute(ops, start)
    }

    /// What a full pass would change, without changing it: operations that
    /// add missing entries and delete stale ones (for `weft status`).
    pub fn drift(&mut self) -> Result<Vec<Op>, KernelError> {
        let current = weft_kernel::read_dataplane(&mut self.nl, &self.ownership)?;
        Ok(diff(&current, self.desired.plane()))
    }

    /// Applies operations produced by [`Reconciler::upsert`] / [`Reconciler::remove`].
    pub fn incremental_pass(&mut self, ops: Vec<Op>) -> Result<PassReport, KernelError> {
        self.execute(ops, Instant::now())
    }

    fn execute(
        &mut self,
        ops: Vec<weft_core::plan::Op>,
        start: Instant,
    ) -> Result<PassReport, KernelError> {
        let n = ops.len();
        if n >= PROGRESS_OPS {
            tracing::info!(
                changes = n,
                peers = self.peer_count(),
                "programming the kernel"
            );
        }
        let report = weft_kernel::apply(&mut self.nl, &ops)?;
        drop(ops);
        let m = crate::metrics::get();
        m.netlink_errors.inc_by(report.failed.len() as u64);
        m.leases.set(self.peer_count() as i64);
        m.reconcile_seconds.observe(start.elapsed().as_secs_f64());
        for (op, e) in report.failed.iter().take(5) {
            tracing::warn!("kernel refused {op:?}: {e}");
        }
        if !report.failed.is_empty() {
            tracing::warn!(
                failed = report.failed.len(),
                "some kernel operations failed; a full pass will retry them"
            );
            self.needs_full = true;
        }
        Ok(PassReport {
            peers: self.peer_count(),
            ops: n,
            failed: report.failed.len(),
            elapsed: start.elapsed(),
        })
    }
}

/// One warning per refused lease value, and the metric by reason.
fn report_refusal(key: &LeaseKey, refusal: &Refusal, new: bool) {
    if !new {
        return;
    }
    tracing::warn!("lease {key} left out: {refusal}");
    crate::metrics::get()
        .leases_refused_total
        .get_or_create(&crate::metrics::Reason {
            reason: refusal.reason(),
        })
        .inc();
}

//! Keeps the kernel equal to the desired data plane.
//!
//! Two passes: a full pass dumps what the kernel holds on the device and
//! applies the diff (at start, after a re-list, periodically to repair
//! drift); an incremental pass applies the operations that one batch of
//! lease events produced (see [`Desired`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use std::sync::Arc;
use weft_core::lease::LeaseKey;
use weft_core::plan::dataplane::diff;
use weft_core::plan::{Desired, Op, Planner};
use weft_etcd::LeaseRecord;

use weft_kernel::{KernelError, Netlink, Ownership};

use crate::udp::UdpPeers;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub peers: usize,
    pub ops: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

/// Where remote leases go: kernel entries planned by a backend, or the
/// udp backend's userspace peer table.
pub enum Sink {
    Kernel(Planner),
    Udp(Arc<UdpPeers>),
}

pub struct Reconciler {
    nl: Netlink,
    ownership: Ownership,
    sink: Sink,
    own: LeaseKey,
    desired: Desired,
    /// Leases already reported as unusable (to log each once).
    warned: HashSet<LeaseKey>,
    /// A pass failed in part; the next full pass should come soon.
    pub needs_full: bool,
}

impl Reconciler {
    pub fn new(nl: Netlink, sink: Sink, ownership: Ownership, own: LeaseKey) -> Self {
        Reconciler {
            nl,
            ownership,
            sink,
            own,
            desired: Desired::default(),
            warned: HashSet::new(),
            needs_full: false,
        }
    }

    pub fn peer_count(&self) -> usize {
        self.desired.peer_count()
    }

    fn subnet(key: &LeaseKey) -> Option<IpNet> {
        key.v4.map(IpNet::V4)
    }

    /// Replaces every peer with `records` (own lease skipped).
    pub fn reset(&mut self, records: &[LeaseRecord]) {
        if let Sink::Udp(peers) = &self.sink {
            peers.clear();
        }
        let usable: Vec<(IpNet, weft_core::plan::PeerEntries)> = records
            .iter()
            .filter_map(|r| Some((Self::subnet(&r.key)?, self.plan(r)?)))
            .collect();
        self.desired.reset(usable.into_iter());
    }

    /// Kernel entries for a remote lease; `None` for our own lease and for
    /// unusable leases (logged once each).
    fn plan(&mut self, rec: &LeaseRecord) -> Option<weft_core::plan::PeerEntries> {
        if rec.key == self.own {
            return None;
        }
        let planner = match &self.sink {
            Sink::Kernel(p) => p,
            Sink::Udp(peers) => {
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
                return None;
            }
        };
        match planner.entries(&rec.key, &rec.attrs) {
            Ok(entries) => {
                self.warned.remove(&rec.key);
                Some(entries)
            }
            Err(e) => {
                if self.warned.insert(rec.key) {
                    tracing::warn!("{e}");
                }
                None
            }
        }
    }

    /// A lease appeared or changed: the operations to apply. Unusable
    /// leases are skipped, leaving whatever was programmed for that subnet
    /// before in place.
    pub fn upsert(&mut self, rec: &LeaseRecord) -> Vec<Op> {
        let Some(subnet) = Self::subnet(&rec.key) else {
            return Vec::new();
        };
        match self.plan(rec) {
            Some(entries) => self.desired.upsert(subnet, entries),
            None => Vec::new(),
        }
    }

    /// A lease went away (deleted or expired): the operations to apply.
    pub fn remove(&mut self, key: &LeaseKey) -> Vec<Op> {
        self.warned.remove(key);
        if let (Sink::Udp(peers), Some(subnet)) = (&self.sink, key.v4) {
            peers.remove(subnet);
        }
        match Self::subnet(key) {
            Some(s) => self.desired.remove(s),
            None => Vec::new(),
        }
    }

    /// Dumps the kernel, applies the full diff.
    pub fn full_pass(&mut self) -> Result<PassReport, KernelError> {
        let start = Instant::now();
        let current = weft_kernel::read_dataplane(&mut self.nl, &self.ownership)?;
        let ops = diff(&current, self.desired.plane());
        drop(current);
        self.execute(ops, start)
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
        let report = weft_kernel::apply(&mut self.nl, &ops)?;
        drop(ops);
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
            peers: self.desired.peer_count(),
            ops: n,
            failed: report.failed.len(),
            elapsed: start.elapsed(),
        })
    }
}

//! Keeps the kernel equal to the desired data plane.
//!
//! Two passes: a full pass dumps what the kernel holds on the device and
//! applies the diff (at start, after a re-list, periodically to repair
//! drift); an incremental pass applies only the keys one batch of lease
//! events touched, against the cached state of what was applied.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use weft_core::lease::LeaseKey;
use weft_core::plan::dataplane::{diff, diff_keys};
use weft_core::plan::vxlan::VxlanPlanner;
use weft_core::plan::{DataPlane, Desired, Keys};
use weft_etcd::LeaseRecord;
use weft_kernel::{KernelError, Netlink};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub peers: usize,
    pub ops: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

pub struct Reconciler {
    nl: Netlink,
    devices: Vec<u32>,
    planner: VxlanPlanner,
    own: LeaseKey,
    desired: Desired,
    applied: DataPlane,
    /// Leases already reported as unusable (to log each once).
    warned: HashSet<LeaseKey>,
    /// A pass failed in part; the next full pass should come soon.
    pub needs_full: bool,
}

impl Reconciler {
    pub fn new(nl: Netlink, vxlan_index: u32, own: LeaseKey) -> Self {
        Reconciler {
            nl,
            devices: vec![vxlan_index],
            planner: VxlanPlanner {
                ifindex: vxlan_index,
            },
            own,
            desired: Desired::default(),
            applied: DataPlane::default(),
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
        self.desired = Desired::default();
        for r in records {
            self.upsert(r);
        }
    }

    /// A lease appeared or changed. Unusable leases are logged and skipped,
    /// leaving whatever was programmed for that subnet before in place.
    pub fn upsert(&mut self, rec: &LeaseRecord) -> Keys {
        if rec.key == self.own {
            return Keys::default();
        }
        let Some(subnet) = Self::subnet(&rec.key) else {
            return Keys::default();
        };
        match self.planner.entries(&rec.key, &rec.attrs) {
            Ok(entries) => {
                self.warned.remove(&rec.key);
                self.desired.upsert(subnet, entries)
            }
            Err(e) => {
                if self.warned.insert(rec.key) {
                    tracing::warn!("{e}");
                }
                Keys::default()
            }
        }
    }

    /// A lease went away (deleted or expired).
    pub fn remove(&mut self, key: &LeaseKey) -> Keys {
        self.warned.remove(key);
        match Self::subnet(key) {
            Some(s) => self.desired.remove(s),
            None => Keys::default(),
        }
    }

    /// Dumps the kernel, applies the full diff.
    pub fn full_pass(&mut self) -> Result<PassReport, KernelError> {
        let start = Instant::now();
        let current = weft_kernel::read_dataplane(&mut self.nl, &self.devices)?;
        let ops = diff(&current, self.desired.plane());
        self.applied = current;
        self.execute(ops, start)
    }

    /// Applies the changes for `keys` only.
    pub fn incremental_pass(&mut self, keys: &Keys) -> Result<PassReport, KernelError> {
        let start = Instant::now();
        let ops = diff_keys(&self.applied, self.desired.plane(), keys);
        self.execute(ops, start)
    }

    fn execute(
        &mut self,
        ops: Vec<weft_core::plan::Op>,
        start: Instant,
    ) -> Result<PassReport, KernelError> {
        let n = ops.len();
        let report = weft_kernel::apply(&mut self.nl, ops)?;
        for op in &report.applied {
            self.applied.record(op);
        }
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

//! What happens on a lease event, whatever the source: a full listing
//! replaces the desired state and runs a full pass (kernel dumped and
//! diffed); changes become kernel operations applied at once; a timer
//! re-checks the kernel against the leases (drift repair, failed
//! operations retried sooner).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use crate::reconcile::Reconciler;
use crate::source::{Change, Update};
use crate::Never;

const FAILED_PASS_RETRY: Duration = Duration::from_secs(5);

/// Applies `updates` to the kernel until the source fails. `ready` is
/// notified (once) when the first listing is programmed.
pub async fn follow(
    rec: &mut Reconciler,
    mut updates: mpsc::Receiver<Update>,
    source: impl std::future::Future<Output = Result<Never>>,
    ready: Arc<Notify>,
    resync_every: Duration,
) -> Result<Never> {
    tokio::pin!(source);
    let mut next_full = Instant::now() + resync_every;
    let mut synced = false;
    loop {
        tokio::select! {
            // the source first, so that a failed source's error is what is
            // reported; the timer before the updates, so that a steady
            // stream of them cannot put off drift repair
            biased;
            r = &mut source => return r,
            _ = sleep_until(next_full) => {
                let rep = rec.full_pass().context("re-checking the data path")?;
                if rep.ops > 0 {
                    tracing::info!(repaired = rep.ops, "data path had drifted from the leases; repaired");
                }
                weft_kernel::release_free_heap();
                let wait = if rec.needs_full { FAILED_PASS_RETRY } else { resync_every };
                rec.needs_full = false;
                next_full = Instant::now() + wait;
            }
            u = updates.recv() => match u.ok_or_else(|| anyhow!("the lease source stopped"))? {
                Update::All(leases) => {
                    let count = leases.len();
                    rec.reset(&leases);
                    drop(leases);
                    let report = rec.full_pass().context("programming the data path")?;
                    tracing::info!(
                        peers = report.peers,
                        changes = report.ops,
                        failed = report.failed,
                        ms = report.elapsed.as_secs_f64() * 1e3,
                        "data path in sync with {count} leases"
                    );
                    weft_kernel::release_free_heap();
                    next_full = Instant::now() + resync_every;
                    if !synced {
                        synced = true;
                        crate::metrics::get()
                            .ready
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        ready.notify_one();
                    }
                }
                Update::Changes(changes) => {
                    let mut ops = Vec::new();
                    for c in changes {
                        match c {
                            Change::Put(l) => ops.extend(rec.upsert(&l)),
                            Change::Delete(k) => ops.extend(rec.remove(&k)),
                        }
                    }
                    if !ops.is_empty() {
                        let rep = rec.incremental_pass(ops).context("updating the data path")?;
                        tracing::debug!(changes = rep.ops, us = rep.elapsed.as_micros() as u64, "lease events applied");
                        if rep.ops >= weft_kernel::LARGE_PASS_OPS {
                            weft_kernel::release_free_heap();
                        }
                    }
                }
            },
        }
        if rec.needs_full {
            next_full = next_full.min(Instant::now() + FAILED_PASS_RETRY);
        }
    }
}

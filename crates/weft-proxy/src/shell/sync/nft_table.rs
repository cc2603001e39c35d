//! nft mode's partial sync of one table: the changed ports' elements (over
//! netlink when nothing else changes), the shared sets raised in place
//! before they fill up, or the table written again when one has outgrown
//! its kernel hash table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weft_firewall::fallback::{fell_back, FastPath};
use weft_firewall::FirewallError;

use super::SyncReport;
use crate::plan::{take_ports, PortKey, PortPlan};
use crate::render::nft::{NftBatch, NftRenderer, Pool, PortNft, SharedRefs};
use crate::shell::nft_apply::{is_set_full, NftApplier};
use crate::spec::ServiceName;

/// One nft table's rendered ports.
pub(super) struct NftTable {
    pub(super) r: NftRenderer,
    pub(super) ports: BTreeMap<PortKey, PortNft>,
    pub(super) shared: SharedRefs,
}

/// Rewrites the ports of `services` in `t` to `plans`; `active`: whether
/// the table was ever written (else it is created with everything).
pub(super) fn partial(
    apply: &mut NftApplier,
    t: &mut NftTable,
    active: &mut bool,
    services: &BTreeSet<ServiceName>,
    plans: &[PortPlan],
    report: &mut SyncReport,
) -> Result<(usize, Duration), FirewallError> {
    if !*active && plans.is_empty() {
        // Nothing of this family was ever written and nothing is wanted:
        // do not create its table (e.g. IPv6 without IPv6 services).
        return Ok((0, Duration::ZERO));
    }
    let old = take_ports(&mut t.ports, services);
    let mut batch = NftBatch::default();
    // only the pools are compared after the ports are updated (the pairs,
    // 100,000 at 10,000 services, are counted as they change)
    let pools_before = t.shared.pools.clone();
    let mut added = Vec::new();
    for p in plans {
        let before = old.get(&p.key).unwrap_or(PortNft::empty());
        let mut new = t.r.port(p);
        new.keep_slots(before);
        if before != &new {
            report.written += 1;
            t.r.update(&mut batch, &mut t.shared, before, &new);
        }
        t.ports.insert(p.key.clone(), new);
        added.push(p.key.clone());
    }
    for (k, gone) in &old {
        if !t.ports.contains_key(k) {
            t.r.update(&mut batch, &mut t.shared, gone, PortNft::empty());
        }
    }
    let res = if *active {
        send(apply, t, batch, &pools_before, report)
    } else {
        // The table does not exist yet: create it with everything.
        apply.apply(&t.r.full(&t.ports, &mut t.shared))
    };
    match res {
        Ok(x) => {
            *active = true;
            Ok(x)
        }
        Err(e) => {
            // Nothing changed in the kernel: put the old rules back.
            for k in added {
                t.ports.remove(&k);
            }
            t.ports.extend(old);
            // the sets the kernel holds keep the sizes they were made with
            let sizes = std::mem::take(&mut t.shared.sizes);
            t.shared = SharedRefs::of(t.ports.values());
            t.shared.sizes = sizes;
            Err(e)
        }
    }
}

/// Sends the changes `batch` holds to `t`'s table, which exists: its pools
/// created and deleted (`pools_before`: the pools' counts before the
/// changes) and its shared sets' sizes raised first, or the table written
/// again when a set has outgrown its hash table or the kernel keeps sizes.
fn send(
    apply: &mut NftApplier,
    t: &mut NftTable,
    mut batch: NftBatch,
    pools_before: &BTreeMap<Pool, usize>,
    report: &mut SyncReport,
) -> Result<(usize, Duration), FirewallError> {
    t.r.update_pools(&mut batch, pools_before, &mut t.shared);
    match t.r.grow_sets(&mut t.shared) {
        Err(set) => {
            // The set has outgrown its kernel hash table: write the table
            // again, in one transaction, with larger sets.
            tracing::info!(
                "set {set} outgrew the hash table it was made with: the table is written again with larger sets"
            );
            rewrite(apply, t, report)
        }
        Ok(raise) if !raise.is_empty() && !apply.raises_set_sizes => rewrite(apply, t, report),
        Ok(_) if batch.is_empty() => Ok((0, Duration::ZERO)),
        Ok(raise) => match raise_then_apply(apply, &t.r, &raise, batch, report) {
            Err(e) if !raise.is_empty() && is_set_full(&e) => {
                // The kernel kept the sizes (Linux 6.1 does); nothing of the
                // batch was applied.
                fell_back(FastPath::NftSetResize, e);
                apply.raises_set_sizes = false;
                rewrite(apply, t, report)
            }
            r => r,
        },
    }
}

/// Writes `t`'s table again in one transaction (its shared sets made for
/// what they hold).
fn rewrite(
    apply: &mut NftApplier,
    t: &mut NftTable,
    report: &mut SyncReport,
) -> Result<(usize, Duration), FirewallError> {
    report.full = true;
    apply.apply(&t.r.full(&t.ports, &mut t.shared))
}

/// Applies `raise` (shared sets' sizes raised, [`NftRenderer::grow_sets`];
/// empty when none is) as a transaction of its own, then `batch`.
fn raise_then_apply(
    apply: &mut NftApplier,
    r: &NftRenderer,
    raise: &str,
    batch: NftBatch,
    report: &mut SyncReport,
) -> Result<(usize, Duration), FirewallError> {
    let (mut bytes, mut took) = (0, Duration::ZERO);
    if !raise.is_empty() {
        tracing::info!(
            "shared sets' sizes raised in place: {}",
            raise.trim_end().replace('\n', "; ")
        );
        (bytes, took) = apply.apply(raise)?;
    }
    let (sent, t, netlink) = apply.apply_batch(r, batch)?;
    report.netlink |= netlink;
    Ok((bytes + sent, took + t))
}

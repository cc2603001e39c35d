//! After every sync, the connection-tracking entries it left stale are
//! deleted (the decision is [`crate::plan::conntrack`]'s): a UDP client
//! that keeps its source port then reaches a live endpoint with its next
//! datagram instead of the one its entry still DNATs to.
//!
//! A full sync checks every UDP and SCTP entry of each family (one dump
//! per protocol, filtered in the kernel by protocol, so TCP entries never
//! cross into user space). A partial sync checks only the frontends of
//! the Services it wrote, one kernel-filtered dump each, unless there are
//! so many that one protocol-wide dump is cheaper. A failure is one
//! warning; its frontends are checked again after the next sync.

use std::collections::BTreeSet;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use weft_kernel::{Conntrack, DumpFilter, Flow, KernelError, IPPROTO_SCTP, IPPROTO_UDP};

use crate::plan::conntrack::{Frontend, Frontends, TrackedFlow};
use crate::spec::Protocol;

/// Above this many frontends in a family, one dump per protocol replaces
/// the per-frontend dumps (each filtered dump walks the kernel's whole
/// table; the protocol-wide one walks it once and sends more).
const FILTERED_DUMPS_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

/// What the cleaner reports on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ConntrackStats {
    /// `weft_proxy_conntrack_entries_deleted_total{protocol}`.
    pub deleted: Family<ProtocolLabel, Counter>,
    /// `weft_proxy_conntrack_cleanup_errors_total`.
    pub errors: Counter,
}

/// How much of the table one cleanup looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every entry of the frontends' protocols (after a full sync).
    WholeTable,
    /// Only entries sent to the frontends (after a partial sync).
    Frontends,
}

pub struct Cleaner {
    enabled: bool,
    socket: Option<Conntrack>,
    /// Frontends whose cleanup failed, checked again next time.
    pending: Option<Frontends>,
    stats: ConntrackStats,
}

fn kernel_protocol(p: Protocol) -> u8 {
    match p {
        Protocol::Sctp => IPPROTO_SCTP,
        _ => IPPROTO_UDP,
    }
}

fn tracked(f: &Flow) -> Option<TrackedFlow> {
    let protocol = match f.protocol {
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        _ => return None,
    };
    Some(TrackedFlow {
        protocol,
        orig_dst: f.orig_dst,
        reply_src: f.reply_src,
    })
}

impl Cleaner {
    /// `enabled: false` leaves conntrack alone (`--conntrack-cleanup=false`).
    pub fn new(enabled: bool, stats: ConntrackStats) -> Cleaner {
        Cleaner {
            enabled,
            socket: None,
            pending: None,
            stats,
        }
    }

    /// Deletes the stale entries of `frontends` (and of any earlier
    /// cleanup that failed). Never fails: an error is a warning, and the
    /// frontends are kept for the next call.
    pub fn clean(&mut self, frontends: Frontends, scope: Scope) {
        if !self.enabled {
            return;
        }
        let (frontends, scope) = match self.pending.take() {
            Some(mut earlier) => {
                earlier.extend(frontends);
                (earlier, Scope::WholeTable)
            }
            None => (frontends, scope),
        };
        if frontends.is_empty() {
            return;
        }
        if let Err(e) = self.try_clean(&frontends, scope) {
            self.stats.errors.inc();
            self.socket = None;
            self.pending = Some(frontends);
            tracing::warn!("conntrack cleanup failed (retried after the next sync): {e}");
        }
    }

    fn try_clean(&mut self, frontends: &Frontends, scope: Scope) -> Result<(), KernelError> {
        let socket = match &mut self.socket {
            Some(s) => s,
            None => self.socket.insert(Conntrack::open()?),
        };
        for ipv6 in [false, true] {
            let wanted = frontends.frontends(ipv6);
            if wanted.is_empty() {
                continue;
            }
            let filters = dump_filters(frontends, &wanted, ipv6, scope);
            let mut stale: Vec<Flow> = Vec::new();
            for filter in &filters {
                let flows = socket.dump(filter)?;
                stale.extend(
                    flows
                        .into_iter()
                        .filter(|f| tracked(f).is_some_and(|t| frontends.is_stale(&t))),
                );
            }
            for f in &stale {
                tracing::debug!(
                    "conntrack: deleting {} {} -> {} (answered by {}, no serving endpoint of that Service port)",
                    if f.protocol == IPPROTO_SCTP { "sctp" } else { "udp" },
                    f.orig_src,
                    f.orig_dst,
                    f.reply_src
                );
            }
            for (protocol, name) in [(IPPROTO_UDP, "udp"), (IPPROTO_SCTP, "sctp")] {
                let these: Vec<Flow> = stale
                    .iter()
                    .filter(|f| f.protocol == protocol)
                    .copied()
                    .collect();
                if these.is_empty() {
                    continue;
                }
                let report = socket.delete(&these)?;
                self.stats
                    .deleted
                    .get_or_create(&ProtocolLabel {
                        protocol: name.into(),
                    })
                    .inc_by(report.deleted as u64);
            }
        }
        Ok(())
    }
}

/// The dumps that cover `wanted`: one per frontend, or one per protocol
/// for the whole table or many frontends.
fn dump_filters(
    frontends: &Frontends,
    wanted: &BTreeSet<Frontend>,
    ipv6: bool,
    scope: Scope,
) -> Vec<DumpFilter> {
    if scope == Scope::WholeTable || wanted.len() > FILTERED_DUMPS_MAX {
        return frontends
            .protocols(ipv6)
            .into_iter()
            .map(|p| DumpFilter {
                ipv6,
                protocol: kernel_protocol(p),
                dst_ip: None,
                dst_port: None,
            })
            .collect();
    }
    wanted
        .iter()
        .map(|f| DumpFilter {
            ipv6,
            protocol: kernel_protocol(f.protocol),
            dst_ip: f.ip,
            dst_port: Some(f.port),
        })
        .collect()
}

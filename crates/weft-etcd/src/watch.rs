//! Watching `<prefix>/subnets/` from a revision.

use etcd_client::{EventType, WatchOptions, WatchStream};
use weft_core::lease::{LeaseError, LeaseKey};

use crate::error::{describe, EtcdError};
use crate::failover::Etcd;
use crate::registry::{parse_record, LeaseRecord};

/// One change to the lease table.
#[derive(Debug)]
pub enum LeaseEvent {
    Put(LeaseRecord),
    Delete(LeaseKey),
    /// A key that is not a valid lease was written; it is ignored.
    Invalid(LeaseError),
}

/// Why a watch ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The start revision was compacted away: re-list, then watch again.
    #[error("watch revision {0} was compacted")]
    Compacted(i64),
    #[error("watch stream: {0}")]
    Stream(String),
    /// No member would open the watch.
    #[error(transparent)]
    Open(#[from] EtcdError),
}

/// An open watch, on one member of the cluster. When the stream breaks,
/// the member is reported failing, so that the watch re-opened from
/// [`LeaseWatch::revision`] goes to another member first.
pub struct LeaseWatch {
    stream: WatchStream,
    etcd: Etcd,
    member: usize,
    prefix: String,
    /// The revision up to which events have been delivered.
    pub revision: i64,
}

impl LeaseWatch {
    /// Starts watching `subnets_prefix` at `from_revision` (inclusive).
    pub async fn start(
        etcd: &Etcd,
        subnets_prefix: &str,
        from_revision: i64,
    ) -> Result<LeaseWatch, WatchError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_progress_notify();
        let (stream, member) = etcd
            .call_on(&format!("watching {subnets_prefix}"), |mut c| {
                let (prefix, opts) = (subnets_prefix.to_string(), opts.clone());
                async move { c.watch(prefix, Some(opts)).await }
            })
            .await?;
        Ok(LeaseWatch {
            stream,
            etcd: etcd.clone(),
            member,
            prefix: subnets_prefix.to_string(),
            revision: from_revision - 1,
        })
    }

    fn broken(&self, reason: String) -> WatchError {
        WatchError::Stream(self.etcd.stream_broken(self.member, &reason))
    }

    /// The next batch of events (may be empty for progress notifications).
    pub async fn next(&mut self) -> Result<Vec<LeaseEvent>, WatchError> {
        let resp = match self.stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(self.broken("closed by the server".into())),
            Err(e) => return Err(self.broken(describe(&e))),
        };
        if resp.compact_revision() > 0 {
            return Err(WatchError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            let reason = resp.cancel_reason();
            let reason = reason.strip_prefix("etcdserver: ").unwrap_or(reason);
            return Err(self.broken(format!("cancelled by the server: {reason}")));
        }
        if let Some(h) = resp.header() {
            self.revision = self.revision.max(h.revision());
        }
        let mut out = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            self.revision = self.revision.max(kv.mod_revision());
            match ev.event_type() {
                EventType::Put => match parse_record(
                    &self.prefix,
                    kv.key(),
                    kv.value(),
                    kv.lease(),
                    kv.mod_revision(),
                ) {
                    Ok(r) => out.push(LeaseEvent::Put(r)),
                    Err(e) => out.push(LeaseEvent::Invalid(e)),
                },
                EventType::Delete => {
                    let full = String::from_utf8_lossy(kv.key());
                    let short = full.strip_prefix(&self.prefix).unwrap_or(&full);
                    match short.parse::<LeaseKey>() {
                        Ok(k) => out.push(LeaseEvent::Delete(k)),
                        Err(e) => out.push(LeaseEvent::Invalid(e)),
                    }
                }
            }
        }
        Ok(out)
    }
}

//! Watching `<prefix>/subnets/` from a revision.

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use weft_core::lease::{LeaseError, LeaseKey};

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
}

/// An open watch.
pub struct LeaseWatch {
    stream: WatchStream,
    prefix: String,
    /// The revision up to which events have been delivered.
    pub revision: i64,
}

impl LeaseWatch {
    /// Starts watching `subnets_prefix` at `from_revision` (inclusive).
    pub async fn start(
        client: &mut Client,
        subnets_prefix: &str,
        from_revision: i64,
    ) -> Result<LeaseWatch, WatchError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_progress_notify();
        let stream = client
            .watch(subnets_prefix.to_string(), Some(opts))
            .await
            .map_err(|e| WatchError::Stream(e.to_string()))?;
        Ok(LeaseWatch {
            stream,
            prefix: subnets_prefix.to_string(),
            revision: from_revision - 1,
        })
    }

    /// The next batch of events (may be empty for progress notifications).
    pub async fn next(&mut self) -> Result<Vec<LeaseEvent>, WatchError> {
        let resp = self
            .stream
            .message()
            .await
            .map_err(|e| WatchError::Stream(e.to_string()))?
            .ok_or_else(|| WatchError::Stream("closed by server".into()))?;
        if resp.compact_revision() > 0 {
            return Err(WatchError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Err(WatchError::Stream(format!(
                "cancelled by server: {}",
                resp.cancel_reason()
            )));
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

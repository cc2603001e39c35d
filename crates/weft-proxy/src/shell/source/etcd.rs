//! weft's own store in etcd as a source: list the prefix, send a
//! snapshot, watch from the listing's revision; on a broken or compacted
//! watch, re-list. A bad object is logged with its field and the last good
//! version of it stays in effect (the sync loop keeps it: this source
//! holds no copy of the objects).

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc::Sender;
use tokio::time::sleep;

use super::Change;
use crate::plan::catalog::{Catalog, Kept};
use crate::shell::store::{KeyKind, Store};

/// Runs until the receiver is gone.
pub async fn run(mut store: Store, tx: Sender<Change>) {
    loop {
        let listing = match store.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing services: {e}; retrying in 1s");
                if tx.send(Change::Relisting).await.is_err() {
                    return;
                }
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut fresh = Catalog::default();
        let mut kept = Kept::default();
        for (key, obj) in listing.objects {
            match obj {
                Ok(o) => {
                    fresh.put(o);
                }
                Err(e) => {
                    tracing::error!("ignoring {key}: {e}");
                    // the last good version of an object that went bad stays
                    match store.classify(&key) {
                        KeyKind::Service(id) => kept.services.push(id),
                        KeyKind::Endpoints(id) => kept.endpoints.push(id),
                        KeyKind::Other => {}
                    }
                }
            }
        }
        if tx.send(Change::Snapshot(fresh, kept)).await.is_err() {
            return;
        }

        // Watch from the listing's revision.
        let wopts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(listing.revision + 1)
            .with_progress_notify();
        let watch = store
            .etcd()
            .call_on(&format!("watching {}", store.root()), |mut c| {
                let (root, wopts) = (store.root(), wopts.clone());
                async move { c.watch(root, Some(wopts)).await }
            })
            .await;
        let (mut stream, member) = match watch {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("watching services: {e}; re-listing in 1s");
                sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let reason = loop {
            // a broken stream says the member is in trouble: the next
            // watch goes to another one first
            let lost = |why: String| store.etcd().stream_broken(member, &why);
            let resp = match stream.message().await {
                Ok(Some(r)) if r.compact_revision() > 0 => {
                    break format!("watch revision compacted at {}", r.compact_revision());
                }
                Ok(Some(r)) if r.canceled() => {
                    break lost(format!("watch cancelled: {}", r.cancel_reason()));
                }
                Ok(Some(r)) => r,
                Ok(None) => break lost("watch closed by the server".into()),
                Err(e) => break lost(format!("watch: {}", weft_etcd::describe(&e))),
            };
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let kind = store.classify(&key);
                let change = match (ev.event_type(), kind) {
                    (_, KeyKind::Other) => continue,
                    (EventType::Put, _) => match store.parse_value(&key, kv.value()) {
                        Ok(obj) => Change::Put(obj),
                        Err(e) => {
                            tracing::error!("ignoring {key}: {e}");
                            continue;
                        }
                    },
                    (EventType::Delete, KeyKind::Service(id)) => Change::RemoveService(id),
                    (EventType::Delete, KeyKind::Endpoints(id)) => Change::RemoveEndpoints(id),
                };
                if tx.send(change).await.is_err() {
                    return;
                }
            }
        };
        tracing::warn!("{reason}; re-listing (rules stay in place)");
        if tx.send(Change::Relisting).await.is_err() {
            return;
        }
        sleep(Duration::from_millis(200)).await;
    }
}

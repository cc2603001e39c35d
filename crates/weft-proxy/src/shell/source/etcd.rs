//! weft's own store in etcd as a source: list the prefix, send a
//! snapshot, watch from the listing's revision; on a broken or compacted
//! watch, re-list. A bad object is logged with its field and the last good
//! version of it stays in effect.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc::Sender;
use tokio::time::sleep;

use super::Change;
use crate::plan::catalog::Catalog;
use crate::shell::store::{KeyKind, Store};
use crate::spec::{Object, SpecError};

/// Runs until the receiver is gone.
pub async fn run(mut store: Store, tx: Sender<Change>) {
    // what the sync loop has: the last good version of every object
    let mut mirror = Catalog::default();
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
        for (key, obj) in listing.objects {
            // Keep the last good version of an object that went bad.
            if obj.is_err() {
                match store.classify(&key) {
                    KeyKind::Service(id) => {
                        if let Some(s) = mirror.services.get(&id) {
                            fresh.services.insert(id, s.clone());
                        }
                    }
                    KeyKind::Endpoints(id) => {
                        if let Some(e) = mirror.endpoints.get(&id) {
                            fresh.endpoints.insert(id, e.clone());
                        }
                    }
                    KeyKind::Other => {}
                }
            }
            load(&mut fresh, &key, obj);
        }
        mirror = fresh;
        if tx.send(Change::Snapshot(mirror.clone())).await.is_err() {
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
                        Ok(obj) => {
                            mirror.put(obj.clone());
                            Change::Put(obj)
                        }
                        Err(e) => {
                            tracing::error!("ignoring {key}: {e}");
                            continue;
                        }
                    },
                    (EventType::Delete, KeyKind::Service(id)) => {
                        mirror.remove_service(&id);
                        Change::RemoveService(id)
                    }
                    (EventType::Delete, KeyKind::Endpoints(id)) => {
                        mirror.remove_endpoints(&id);
                        Change::RemoveEndpoints(id)
                    }
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

fn load(catalog: &mut Catalog, key: &str, obj: Result<Object, SpecError>) {
    match obj {
        Ok(o) => {
            catalog.put(o);
        }
        Err(e) => tracing::error!("ignoring {key}: {e}"),
    }
}

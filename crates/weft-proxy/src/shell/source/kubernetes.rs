//! The Kubernetes API as a source: Services and `discovery.k8s.io/v1`
//! EndpointSlices watched the way kube-proxy watches them — list, then
//! watch from the list's resourceVersion with bookmarks, a fresh list when
//! the version is gone (`410 Gone`), reconnects with backoff (retrying
//! within 5 s, [`weft_kube::Retry`]), and kube-proxy's label selector,
//! which leaves out objects of another service proxy and the slices of
//! headless Services.
//!
//! EndpointSlices, where the volume is (a 250,000-endpoint cluster's
//! listing; every endpoint change), are listed and watched in protobuf
//! ([`weft_kube::follow`], [`crate::spec::proto_slice`]), as kube-proxy
//! asks for them; Services through kube-runtime's watcher, listed from
//! the API server's watch cache (`resourceVersion=0`) as client-go's
//! informers list.
//!
//! API objects go through the same validation as weft's own store, so a
//! bad one is one logged line naming the field and is skipped (the last
//! good version stays). A Service's slices are kept together
//! ([`super::slices`]) and merged per port by the planner. ExternalName
//! Services need no rules and are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service as ApiService};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::Sender;

use super::slices::Slices;
use super::Change;
use crate::plan::catalog::Catalog;
use crate::spec::proto_slice::{ProtoSlice, SliceKind};
use crate::spec::{parse_object, Object, Service, ServiceName, SpecError};
use weft_kube::follow::{self, Collection};

/// kube-proxy's selector for both watches.
pub const LABEL_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// The proxy's flags for the connection, in error messages.
const FLAGS: weft_kube::FlagNames = weft_kube::FlagNames {
    kubeconfig: "--kubeconfig",
    url: "--master",
    alternative: " or --etcd-endpoints",
};

/// How to reach the API server: `--kubeconfig` and/or `--master`, else the
/// in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>, master: Option<&str>) -> anyhow::Result<Client> {
    weft_kube::client(kubeconfig, master, FLAGS).await
}

/// The InternalIPs of Node `name` (kube-proxy's node addresses), one per
/// family; ExternalIPs when it has no internal one.
pub async fn node_addresses(client: &Client, name: &str) -> anyhow::Result<Vec<IpAddr>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("reading the Node: {}", words(&e)))?;
    let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
    let mut out: Vec<IpAddr> = Vec::new();
    for kind in ["InternalIP", "ExternalIP"] {
        for a in addresses.iter().filter(|a| a.type_ == kind) {
            if let Ok(ip) = a.address.parse::<IpAddr>() {
                if !out.iter().any(|o| o.is_ipv6() == ip.is_ipv6()) {
                    out.push(ip);
                }
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!("it has no InternalIP or ExternalIP address");
    }
    Ok(out)
}

pub use weft_kube::words;
use weft_kube::Retry;

/// One watched kind: what is live, what a (re)listing is building, and
/// whether the first listing is complete.
#[derive(Default)]
struct Side<T> {
    live: T,
    building: Option<T>,
    synced: bool,
}

#[derive(Default)]
struct State {
    services: Side<BTreeMap<ServiceName, Arc<Service>>>,
    slices: Side<Slices>,
}

impl State {
    fn snapshot(&self) -> Catalog {
        let mut c = Catalog {
            services: self.services.live.clone(),
            ..Catalog::default()
        };
        c.endpoints = self.slices.live.all();
        c
    }

    fn synced(&self) -> bool {
        self.services.synced && self.slices.synced
    }
}

/// Every EndpointSlice kube-proxy would see.
const SLICES: Collection = Collection {
    path: "/apis/discovery.k8s.io/v1/endpointslices",
    what: "EndpointSlices",
    labels: LABEL_SELECTOR,
};

/// Runs until the receiver is gone.
pub async fn run(client: Client, tx: Sender<Change>) {
    // listed from the watch cache, as client-go's informers
    let config = watcher::Config::default()
        .labels(LABEL_SELECTOR)
        .any_semantic();
    let services: Api<ApiService> = Api::all(client.clone());
    let mut service_events = watcher(services, config).backoff(Retry::default()).boxed();
    let mut slice_events = follow::spawn::<SliceKind>(client, SLICES);
    let mut state = State::default();
    let mut failing = false;
    loop {
        let changes = tokio::select! {
            ev = service_events.next() => match ev {
                None => return,
                Some(Ok(ev)) => on_service(&mut state, ev),
                Some(Err(e)) => { report(&mut failing, "Services", &words(&e)); continue }
            },
            ev = slice_events.recv() => match ev {
                None => return,
                Some(Ok(ev)) => on_slice(&mut state, ev),
                Some(Err(e)) => { report(&mut failing, "EndpointSlices", &e); continue }
            },
        };
        if failing && !changes.is_empty() {
            tracing::info!("Kubernetes API answering again");
            failing = false;
        }
        for c in changes {
            if tx.send(c).await.is_err() {
                return;
            }
        }
    }
}

fn report(failing: &mut bool, what: &str, e: &str) {
    if !*failing {
        tracing::warn!("watching {what}: {e}; retrying with backoff (rules stay in place)");
        *failing = true;
    } else {
        tracing::debug!("watching {what}: {e}");
    }
}

fn service_id(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ServiceName {
    ServiceName::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// An API object as JSON the spec parser reads, `kind` set (the client
/// does not always carry it).
fn api_json(obj: &impl serde::Serialize, kind: &str, origin: &str) -> Result<Value, SpecError> {
    let mut v = serde_json::to_value(obj).map_err(|e| SpecError {
        object: origin.into(),
        field: "(object)".into(),
        message: e.to_string(),
    })?;
    v["kind"] = Value::from(kind);
    Ok(v)
}

/// What the rule engine sees of an API Service: `None` when it needs no
/// rules (ExternalName).
fn convert_service(svc: &ApiService) -> Result<Option<Service>, SpecError> {
    let origin = format!("Service {}", service_id(&svc.metadata));
    let v = api_json(svc, "Service", &origin)?;
    if v.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(None);
    }
    match parse_object(&v, &origin)? {
        Object::Service(s) => Ok(Some(s)),
        Object::Endpoints(_) => Ok(None),
    }
}

fn on_service(state: &mut State, ev: Event<ApiService>) -> Vec<Change> {
    let side = &mut state.services;
    match ev {
        Event::Init => {
            if side.synced {
                tracing::info!("re-listing Services");
            }
            side.building = Some(BTreeMap::new());
            if side.synced {
                vec![Change::Relisting]
            } else {
                Vec::new()
            }
        }
        Event::InitApply(svc) => {
            let id = service_id(&svc.metadata);
            let kept = side.live.get(&id).cloned();
            if let Some(b) = side.building.as_mut() {
                match convert_service(&svc) {
                    Ok(Some(s)) => {
                        b.insert(id, Arc::new(s));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!("ignoring {e}");
                        if let Some(s) = kept {
                            b.insert(id, s);
                        }
                    }
                }
            }
            Vec::new()
        }
        Event::InitDone => {
            if let Some(b) = side.building.take() {
                side.live = b;
            }
            side.synced = true;
            if state.synced() {
                vec![Change::Snapshot(state.snapshot())]
            } else {
                Vec::new()
            }
        }
        Event::Apply(svc) => {
            let id = service_id(&svc.metadata);
            let changes = match convert_service(&svc) {
                Ok(Some(s)) => {
                    let s = Arc::new(s);
                    side.live.insert(id, s.clone());
                    vec![Change::Service(s)]
                }
                Ok(None) => {
                    side.live.remove(&id);
                    vec![Change::RemoveService(id)]
                }
                Err(e) => {
                    tracing::error!("ignoring {e}");
                    Vec::new()
                }
            };
            // before both first listings are complete, the snapshot that
            // completes them carries the change
            if state.synced() {
                changes
            } else {
                Vec::new()
            }
        }
        Event::Delete(svc) => {
            let id = service_id(&svc.metadata);
            side.live.remove(&id);
            if state.synced() {
                vec![Change::RemoveService(id)]
            } else {
                Vec::new()
            }
        }
    }
}

/// The slice's trigger time; absent or unreadable (untrusted) is none.
fn trigger_time(slice: &ProtoSlice) -> Option<std::time::SystemTime> {
    let at: jiff::Timestamp = slice.trigger_time()?.parse().ok()?;
    Some(std::time::SystemTime::from(at))
}

fn on_slice(state: &mut State, ev: follow::Event<ProtoSlice>) -> Vec<Change> {
    use follow::Event;
    let side = &mut state.slices;
    let mut trigger = None;
    let touched = match ev {
        Event::Init => {
            if side.synced {
                tracing::info!("re-listing EndpointSlices");
            }
            side.building = Some(Slices::default());
            return if side.synced {
                vec![Change::Relisting]
            } else {
                Vec::new()
            };
        }
        Event::InitApply(slice) => {
            let (ns, name) = slice.key();
            if let Some(b) = side.building.as_mut() {
                match slice.endpoints() {
                    Ok(Some(set)) => {
                        b.put(&ns, &name, set);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!("ignoring {e}"),
                }
            }
            return Vec::new();
        }
        Event::InitDone => {
            if let Some(b) = side.building.take() {
                side.live = b;
            }
            side.synced = true;
            return if state.synced() {
                vec![Change::Snapshot(state.snapshot())]
            } else {
                Vec::new()
            };
        }
        Event::Apply(slice) => {
            let (ns, name) = slice.key();
            trigger = trigger_time(&slice);
            match slice.endpoints() {
                Ok(Some(set)) => side.live.put(&ns, &name, set),
                Ok(None) => side.live.remove(&ns, &name).into_iter().collect(),
                Err(e) => {
                    tracing::error!("ignoring {e}");
                    Vec::new()
                }
            }
        }
        Event::Delete(slice) => {
            let (ns, name) = slice.key();
            side.live.remove(&ns, &name).into_iter().collect()
        }
    };
    if !state.synced() {
        return Vec::new();
    }
    touched
        .into_iter()
        .map(|id| match state.slices.live.of(&id) {
            Some(slices) => Change::Slices(id, slices, trigger),
            None => Change::RemoveEndpoints(id),
        })
        .collect()
}

//! The Kubernetes API as a source: Services and `discovery.k8s.io/v1`
//! EndpointSlices watched the way kube-proxy watches them — list, then
//! watch from the list's resourceVersion with bookmarks, a fresh list when
//! the version is gone (`410 Gone`), reconnects with backoff (retrying
//! within 5 s, [`weft_kube::Retry`]), and kube-proxy's label selector,
//! which leaves out objects of another service proxy and the slices of
//! headless Services.
//!
//! Both are listed and watched in protobuf ([`weft_kube::follow`],
//! [`crate::spec::proto_slice`], [`crate::spec::proto_service`]), as
//! kube-proxy asks for them, listed from the API server's watch cache
//! (`resourceVersion=0`) as client-go's informers list. EndpointSlices are
//! where the volume is (a 250,000-endpoint cluster's listing; every
//! endpoint change); 5,000 Services through the JSON watch took a quarter
//! of a 250,000-endpoint cold start.
//!
//! API objects go through the same validation as weft's own store, so a
//! bad one is one logged line naming the field and is skipped (the last
//! good version stays). A Service's slices are kept together
//! ([`crate::plan::slices`]) and merged per port by the planner. ExternalName
//! Services need no rules and are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::sync::mpsc::Sender;

use super::Change;
use crate::plan::catalog::{Catalog, Kept};
use crate::plan::slices::{SliceKey, Slices};
use crate::spec::proto_service::{ProtoService, ServiceKind};
use crate::spec::proto_slice::{ProtoSlice, SliceKind};
use crate::spec::{Service, ServiceName};
use weft_kube::follow::{self, Collection, Event};

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

/// One watched kind: what the source holds until it hands its first
/// listing over, what a (re)listing is building, and whether the first
/// listing is complete.
#[derive(Default)]
struct Side<T> {
    held: T,
    building: Option<T>,
    synced: bool,
}

#[derive(Default)]
struct State {
    services: Side<BTreeMap<ServiceName, Arc<Service>>>,
    /// Services the listing in progress found invalid: each keeps its last
    /// good version.
    invalid_services: Vec<ServiceName>,
    slices: Side<Slices>,
    /// Both first listings went to the sync loop, whose catalog holds
    /// everything from then on: the source only forwards changes.
    handed_over: bool,
}

impl State {
    fn synced(&self) -> bool {
        self.services.synced && self.slices.synced
    }

    /// Everything the source holds, once both first listings are complete.
    fn hand_over(&mut self) -> Vec<Change> {
        if self.handed_over || !self.synced() {
            return Vec::new();
        }
        self.handed_over = true;
        let catalog = Catalog {
            services: std::mem::take(&mut self.services.held),
            slices: std::mem::take(&mut self.slices.held),
        };
        vec![Change::Snapshot(catalog, Kept::default())]
    }

    /// A change goes to the sync loop after the hand-over; before it, into
    /// what the source holds (the snapshot carries it).
    fn forward(&mut self, change: Change) -> Vec<Change> {
        if self.handed_over {
            return vec![change];
        }
        match change {
            Change::Service(s) => {
                self.services.held.insert(s.id.clone(), s);
            }
            Change::RemoveService(id) => {
                self.services.held.remove(&id);
            }
            Change::Slice(key, set, _) => {
                self.slices.held.put(key, set);
            }
            Change::RemoveSlice(key) => {
                self.slices.held.remove(&key);
            }
            _ => {}
        }
        Vec::new()
    }
}

/// A (re)listing starts: counted when it is not the first.
fn relisting(what: &str, synced: bool) -> Vec<Change> {
    if !synced {
        return Vec::new();
    }
    tracing::info!("re-listing {what}");
    vec![Change::Relisting]
}

/// Every Service kube-proxy would see.
const SERVICES: Collection = Collection {
    path: "/api/v1/services",
    what: "Services",
    labels: LABEL_SELECTOR,
};

/// Every EndpointSlice kube-proxy would see.
const SLICES: Collection = Collection {
    path: "/apis/discovery.k8s.io/v1/endpointslices",
    what: "EndpointSlices",
    labels: LABEL_SELECTOR,
};

/// Runs until the receiver is gone.
pub async fn run(client: Client, tx: Sender<Change>) {
    let mut service_events = follow::spawn::<ServiceKind>(client.clone(), SERVICES);
    let mut slice_events = follow::spawn::<SliceKind>(client, SLICES);
    let mut state = State::default();
    let mut failing = false;
    loop {
        let changes = tokio::select! {
            ev = service_events.recv() => match ev {
                None => return,
                Some(Ok(ev)) => on_service(&mut state, ev),
                Some(Err(e)) => { report(&mut failing, "Services", &e); continue }
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

fn on_service(state: &mut State, ev: Event<ProtoService>) -> Vec<Change> {
    let side = &mut state.services;
    match ev {
        Event::Init => {
            side.building = Some(BTreeMap::new());
            state.invalid_services.clear();
            relisting("Services", side.synced)
        }
        Event::InitApply(svc) => {
            let id = svc.id();
            if let Some(b) = side.building.as_mut() {
                match svc.service() {
                    Ok(Some(s)) => {
                        b.insert(id, Arc::new(s));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!("ignoring {e}");
                        state.invalid_services.push(id);
                    }
                }
            }
            Vec::new()
        }
        Event::InitDone => {
            side.synced = true;
            let Some(mut fresh) = side.building.take() else {
                return state.hand_over();
            };
            let kept = std::mem::take(&mut state.invalid_services);
            if state.handed_over {
                return vec![Change::ServicesListed(fresh, kept)];
            }
            for id in kept {
                if let Some(s) = side.held.remove(&id) {
                    fresh.insert(id, s);
                }
            }
            side.held = fresh;
            state.hand_over()
        }
        Event::Apply(svc) => {
            let change = match svc.service() {
                Ok(Some(s)) => Change::Service(Arc::new(s)),
                Ok(None) => Change::RemoveService(svc.id()),
                Err(e) => {
                    tracing::error!("ignoring {e}");
                    return Vec::new();
                }
            };
            state.forward(change)
        }
        Event::Delete(svc) => state.forward(Change::RemoveService(svc.id())),
    }
}

/// The slice's trigger time; absent or unreadable (untrusted) is none.
fn trigger_time(slice: &ProtoSlice) -> Option<std::time::SystemTime> {
    let at: jiff::Timestamp = slice.trigger_time()?.parse().ok()?;
    Some(std::time::SystemTime::from(at))
}

fn on_slice(state: &mut State, ev: Event<ProtoSlice>) -> Vec<Change> {
    let side = &mut state.slices;
    match ev {
        Event::Init => {
            side.building = Some(Slices::default());
            relisting("EndpointSlices", side.synced)
        }
        Event::InitApply(slice) => {
            if let Some(b) = side.building.as_mut() {
                match slice.endpoints() {
                    Ok(Some(set)) => {
                        b.put(slice_key(&slice), set);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!("ignoring {e}"),
                }
            }
            Vec::new()
        }
        Event::InitDone => {
            side.synced = true;
            let Some(fresh) = side.building.take() else {
                return state.hand_over();
            };
            if state.handed_over {
                return vec![Change::SlicesListed(fresh)];
            }
            side.held = fresh;
            state.hand_over()
        }
        Event::Apply(slice) => {
            let key = slice_key(&slice);
            let change = match slice.endpoints() {
                Ok(Some(set)) => Change::Slice(key, set, trigger_time(&slice)),
                Ok(None) => Change::RemoveSlice(key),
                Err(e) => {
                    tracing::error!("ignoring {e}");
                    return Vec::new();
                }
            };
            state.forward(change)
        }
        Event::Delete(slice) => state.forward(Change::RemoveSlice(slice_key(&slice))),
    }
}

fn slice_key(slice: &ProtoSlice) -> SliceKey {
    let (namespace, name) = slice.key();
    SliceKey::new(&namespace, &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::proto_service::{ServiceMeta, ServicePort as ProtoPort, ServiceSpec};
    use crate::spec::proto_slice::{self, ProtoEndpoint, SliceMeta};

    fn service(name: &str, protocol: &str) -> ProtoService {
        ProtoService {
            metadata: Some(ServiceMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.254.0.10".into()),
                ports: vec![ProtoPort {
                    port: Some(80),
                    protocol: Some(protocol.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn slice(name: &str, service: &str, ip: &str) -> ProtoSlice {
        ProtoSlice {
            metadata: Some(SliceMeta {
                name: name.into(),
                namespace: "default".into(),
                labels: [("kubernetes.io/service-name".into(), service.into())].into(),
                ..Default::default()
            }),
            endpoints: vec![ProtoEndpoint {
                addresses: [ip.into()].into(),
                ..Default::default()
            }],
            ports: vec![proto_slice::ProtoPort {
                name: Some(String::new()),
                protocol: Some("TCP".into()),
                port: Some(8080),
            }],
            address_type: Some("IPv4".into()),
        }
    }

    fn id(name: &str) -> ServiceName {
        ServiceName::new("default", name)
    }

    #[test]
    fn the_first_listings_are_handed_over_whole_and_the_source_keeps_nothing() {
        let mut st = State::default();
        assert!(on_service(&mut st, Event::Init).is_empty());
        assert!(on_service(&mut st, Event::InitApply(service("web", "TCP"))).is_empty());
        assert!(on_service(&mut st, Event::InitDone).is_empty());
        // before the slices are listed, a change waits in the source
        assert!(on_service(&mut st, Event::Apply(service("api", "TCP"))).is_empty());
        assert!(on_slice(&mut st, Event::Init).is_empty());
        assert!(on_slice(
            &mut st,
            Event::InitApply(slice("web-1", "web", "100.64.1.2"))
        )
        .is_empty());
        let [Change::Snapshot(catalog, kept)] = &on_slice(&mut st, Event::InitDone)[..] else {
            panic!("one snapshot");
        };
        assert_eq!(catalog.services.len(), 2);
        assert_eq!(catalog.slices(&id("web")).len(), 1);
        assert_eq!(kept, &Kept::default());
        assert!(st.services.held.is_empty() && st.slices.held.services() == 0);

        // afterwards each change is forwarded as it comes
        let changes = on_slice(&mut st, Event::Apply(slice("web-1", "web", "100.64.1.3")));
        assert!(matches!(&changes[..], [Change::Slice(key, set, None)]
            if key == &id("web-1") && set.endpoints.len() == 1));
        let changes = on_slice(&mut st, Event::Delete(slice("web-1", "web", "100.64.1.3")));
        assert!(matches!(&changes[..], [Change::RemoveSlice(key)] if key == &id("web-1")));
        assert_eq!(st.slices.held.services(), 0);
    }

    #[test]
    fn a_relisting_names_the_services_it_found_invalid() {
        let mut st = State::default();
        for ev in [
            Event::Init,
            Event::InitApply(service("web", "TCP")),
            Event::InitDone,
        ] {
            on_service(&mut st, ev);
        }
        on_slice(&mut st, Event::Init);
        assert_eq!(on_slice(&mut st, Event::InitDone).len(), 1);

        assert!(matches!(
            &on_service(&mut st, Event::Init)[..],
            [Change::Relisting]
        ));
        on_service(&mut st, Event::InitApply(service("web", "NOPE")));
        on_service(&mut st, Event::InitApply(service("api", "UDP")));
        let [Change::ServicesListed(fresh, kept)] = &on_service(&mut st, Event::InitDone)[..]
        else {
            panic!("one re-listing");
        };
        assert_eq!(fresh.keys().collect::<Vec<_>>(), [&id("api")]);
        assert_eq!(kept, &[id("web")]);

        assert!(matches!(
            &on_slice(&mut st, Event::Init)[..],
            [Change::Relisting]
        ));
        on_slice(
            &mut st,
            Event::InitApply(slice("api-1", "api", "100.64.2.2")),
        );
        let [Change::SlicesListed(fresh)] = &on_slice(&mut st, Event::InitDone)[..] else {
            panic!("one re-listing");
        };
        assert_eq!(fresh.of(&id("api")).len(), 1);
    }
}

//! The Services and EndpointSlices the proxy scenarios write through a
//! real kube-apiserver (namespace `bench`): Service i with cluster IP
//! [`cluster_ip`]`(i)` and one slice `svc-i-1`, loaded in bulk, and
//! endpoints replaced by merge patches, each write timed.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_lab::{in_netns, ApiServer};

use crate::runtime;

pub(crate) fn service_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {
            "clusterIP": cluster_ip(i).to_string(),
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    })
}

/// Service i's address in 10.254.0.0/16 (the lab's service range).
pub(crate) fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 254, 0, 0)) + 10 + i as u32)
}

pub(crate) fn slice_json(i: usize, endpoints: usize) -> serde_json::Value {
    let eps: Vec<serde_json::Value> = (0..endpoints)
        .map(|j| {
            let ip = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i * endpoints + j) as u32 + 2,
            );
            serde_json::json!({
                "addresses": [ip.to_string()],
                "conditions": {"ready": true},
                "nodeName": format!("node{}", (i * endpoints + j) % 50),
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("svc-{i}-1"), "namespace": "bench",
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    })
}

/// When the last EndpointSlice write of a load was sent, and when the API
/// server answered it (committed to etcd). A Service's rules need its
/// endpoints, so that write starts the clock of an added Service.
#[derive(Clone, Copy)]
pub(crate) struct Written {
    pub(crate) sent: Instant,
    pub(crate) acked: Instant,
}

/// Creates Services (and their slices) `range` through the API, 64 requests
/// in flight.
pub(crate) fn load(
    api: &ApiServer,
    range: std::ops::Range<usize>,
    endpoints: usize,
) -> Result<Written> {
    let kubeconfig = api.admin_kubeconfig()?;
    in_netns(&api.host.ns, move || -> Result<Written> {
        runtime()?.block_on(async move {
            let client = weft_proxy::shell::source::kubernetes::client(Some(&kubeconfig), None).await?;
            let ns: kube::Api<Namespace> = kube::Api::all(client.clone());
            let bench: Namespace = serde_json::from_value(
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
            )?;
            let pp = kube::api::PostParams::default();
            if ns.get_opt("bench").await?.is_none() {
                ns.create(&pp, &bench).await?;
            }
            let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "bench");
            let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "bench");
            let results: Vec<Result<Written>> = futures::stream::iter(range)
                .map(|i| {
                    let (services, slices, pp) = (services.clone(), slices.clone(), pp.clone());
                    async move {
                        let s: Service = serde_json::from_value(service_json(i))?;
                        services.create(&pp, &s).await?;
                        let e: EndpointSlice = serde_json::from_value(slice_json(i, endpoints))?;
                        let sent = Instant::now();
                        slices.create(&pp, &e).await?;
                        Ok(Written { sent, acked: Instant::now() })
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            let written = results.into_iter().collect::<Result<Vec<Written>>>()?;
            Ok(written
                .into_iter()
                .max_by_key(|w| w.sent)
                .unwrap_or(Written { sent: Instant::now(), acked: Instant::now() }))
        })
    })?
}

/// Service i's endpoints (as [`slice_json`] makes them) with the first
/// one's address replaced by `ip`.
pub(crate) fn endpoints_with_first(i: usize, endpoints: usize, ip: Ipv4Addr) -> serde_json::Value {
    let mut eps = slice_json(i, endpoints)["endpoints"].clone();
    eps[0]["addresses"] = serde_json::json!([ip.to_string()]);
    eps
}

/// Replaces the first endpoint of service i's slice with `ip`.
pub(crate) fn change_endpoint(
    api: &ApiServer,
    i: usize,
    endpoints: usize,
    ip: Ipv4Addr,
) -> Result<Written> {
    patch_endpoints(
        api,
        &format!("svc-{i}-1"),
        endpoints_with_first(i, endpoints, ip),
    )
}

/// Merge-patches slice `name`'s endpoints (a merge patch replaces the
/// whole list).
pub(crate) fn patch_endpoints(
    api: &ApiServer,
    name: &str,
    eps: serde_json::Value,
) -> Result<Written> {
    let kubeconfig = api.admin_kubeconfig()?;
    let name = name.to_string();
    in_netns(&api.host.ns, move || -> Result<Written> {
        runtime()?.block_on(async move {
            let client =
                weft_proxy::shell::source::kubernetes::client(Some(&kubeconfig), None).await?;
            let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "bench");
            let patch = serde_json::json!({"endpoints": eps});
            let sent = Instant::now();
            slices
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await?;
            Ok(Written {
                sent,
                acked: Instant::now(),
            })
        })
    })?
}

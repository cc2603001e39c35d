//! Where Services and endpoints come from. A source lists everything, then
//! watches, and reports to the sync loop ([`super::run`]) as [`Change`]s
//! over a channel: a [`Change::Snapshot`] after every (re)listing, single
//! object changes in between. While a source cannot reach its store it
//! sends nothing, so the rules in the kernel stay as they are.
//!
//! - [`etcd`]: weft's own store (`weft service`), for hosts without
//!   Kubernetes;
//! - [`kubernetes`]: Services and EndpointSlices from the API server, the
//!   way kube-proxy watches them; [`slices`] merges a Service's slices.

pub mod etcd;
pub mod kubernetes;
pub mod slices;

use crate::plan::catalog::Catalog;
use crate::spec::{EndpointSet, Object, Service, ServiceName};

#[derive(Debug)]
pub enum Change {
    /// Everything the source holds, after a first listing or a re-listing.
    Snapshot(Catalog),
    /// An object was added or changed (already validated).
    Put(Object),
    /// A Service was added or changed (shared with the source).
    Service(std::sync::Arc<Service>),
    /// A service's EndpointSlices changed: all of them now, and when the
    /// change was triggered (the slice's
    /// `endpoints.kubernetes.io/last-change-trigger-time`, if it says).
    Slices(
        ServiceName,
        Vec<std::sync::Arc<EndpointSet>>,
        Option<std::time::SystemTime>,
    ),
    RemoveService(ServiceName),
    RemoveEndpoints(ServiceName),
    /// The source lost its watch and re-lists (counted in the metrics).
    Relisting,
}

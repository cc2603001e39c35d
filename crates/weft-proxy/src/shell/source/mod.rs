//! Where Services and endpoints come from. A source lists everything, then
//! watches, and reports to the sync loop ([`super::run`]) as [`Change`]s
//! over a channel: its first listing whole ([`Change::Snapshot`]), then
//! single object changes and re-listings. The sync loop's catalog holds
//! the only copy of what is known: a source keeps nothing once it has
//! handed its first listing over. While a source cannot reach its store
//! it sends nothing, so the rules in the kernel stay as they are.
//!
//! - [`etcd`]: weft's own store (`weft service`), for hosts without
//!   Kubernetes;
//! - [`kubernetes`]: Services and EndpointSlices from the API server, the
//!   way kube-proxy watches them.

pub mod etcd;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::plan::catalog::{Catalog, Kept};
use crate::plan::slices::{SliceKey, Slices};
use crate::spec::{EndpointSet, Object, Service, ServiceName};

#[derive(Debug)]
pub enum Change {
    /// Everything, after a first listing or a re-listing of weft's store;
    /// the objects it found invalid keep their last good version.
    Snapshot(Catalog, Kept),
    /// The API server's Services re-listed (the invalid ones kept).
    ServicesListed(BTreeMap<ServiceName, Arc<Service>>, Vec<ServiceName>),
    /// The API server's EndpointSlices re-listed.
    SlicesListed(Slices),
    /// An object of weft's store was added or changed (already validated).
    Put(Object),
    /// A Service was added or changed.
    Service(Arc<Service>),
    /// An EndpointSlice was added or changed, and when the change was
    /// triggered (the slice's
    /// `endpoints.kubernetes.io/last-change-trigger-time`, if it says).
    Slice(SliceKey, EndpointSet, Option<SystemTime>),
    RemoveSlice(SliceKey),
    RemoveService(ServiceName),
    /// weft's store: a service's endpoint set was deleted.
    RemoveEndpoints(ServiceName),
    /// The source lost its watch and re-lists (counted in the metrics).
    Relisting,
}

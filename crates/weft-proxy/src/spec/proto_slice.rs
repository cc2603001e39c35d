//! An EndpointSlice as the Kubernetes API sends it in protobuf
//! (`discovery.k8s.io/v1`, [`weft_core::kube_proto`]), read for the
//! proxy: only the fields the rules use are declared, the rest
//! (managedFields, hints, zones, target references: most of the bytes)
//! is skipped by the decoder. kube-proxy asks for protobuf too.
//!
//! Against the JSON the API server would send, a listing is a third of
//! the bytes and is encoded by the server in a fraction of the time, and
//! decoding needs no text parsing: under endpoint churn the JSON watch
//! (its parsing and the objects it built) was the largest part of the
//! proxy's CPU after the kernel's own. The typed fields then go through
//! the same checks as weft's own store ([`EndpointSet::from_fields`]); the
//! bytes are untrusted (fuzz target `proto_slice`).

use std::collections::BTreeMap;

use prost::Message;
use weft_core::kube_proto::{self, ProtoKind};

use super::endpoints::{EndpointFields, PortFields, SliceHead, SERVICE_NAME_LABEL};
use super::leaf::Leaf;
use super::{EndpointSet, SpecError};

mod wire_endpoint;
pub use super::leaf::WireText;
pub use wire_endpoint::ProtoEndpoint;

/// The annotation the EndpointSlice controller sets to the time of the
/// change (a Pod's or the Service's) that led to the slice's update.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// `discovery.k8s.io/v1` EndpointSlice, as far as the proxy reads it
/// (field numbers: k8s.io/api discovery/v1 generated.proto).
#[derive(Clone, PartialEq, Message)]
pub struct ProtoSlice {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<SliceMeta>,
    #[prost(message, repeated, tag = "2")]
    pub endpoints: Vec<ProtoEndpoint>,
    #[prost(message, repeated, tag = "3")]
    pub ports: Vec<ProtoPort>,
    #[prost(string, optional, tag = "4")]
    pub address_type: Option<String>,
}

/// The metadata fields the watch and the rules use.
#[derive(Clone, PartialEq, Message)]
pub struct SliceMeta {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(string, tag = "6")]
    pub resource_version: String,
    #[prost(btree_map = "string, string", tag = "11")]
    pub labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Conditions {
    #[prost(bool, optional, tag = "1")]
    pub ready: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub serving: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub terminating: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoPort {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub protocol: Option<String>,
    #[prost(int32, optional, tag = "3")]
    pub port: Option<i32>,
}

/// The EndpointSlice kind, for the protobuf stream decoders.
pub struct SliceKind;

impl ProtoKind for SliceKind {
    type Item = ProtoSlice;
    const KIND: &'static str = "EndpointSlice";
    /// 500,000 slices: five times the Services Kubernetes is tested to.
    const MAX_ITEMS: usize = 500_000;
    fn resource_version(item: &ProtoSlice) -> &str {
        item.metadata
            .as_ref()
            .map_or("", |m| m.resource_version.as_str())
    }
}

impl ProtoSlice {
    /// `namespace`, `name`.
    pub fn key(&self) -> (String, String) {
        let m = self.metadata.as_ref();
        (
            m.map(|m| m.namespace.clone()).unwrap_or_default(),
            m.map(|m| m.name.clone()).unwrap_or_default(),
        )
    }

    /// The trigger time annotation's text, when there is one.
    pub fn trigger_time(&self) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .get(TRIGGER_TIME)
            .map(String::as_str)
    }

    /// The slice as weft's endpoint set, checked by the spec parser's
    /// rules ([`EndpointSet::from_fields`], as for weft's own store);
    /// `None` for slices kube-proxy ignores (no Service label, FQDN
    /// addresses).
    pub fn endpoints(&self) -> Result<Option<EndpointSet>, SpecError> {
        let Some(m) = self.metadata.as_ref() else {
            return Ok(None);
        };
        let Some(service) = m.labels.get(SERVICE_NAME_LABEL) else {
            return Ok(None);
        };
        if self.address_type.as_deref() == Some("FQDN") {
            return Ok(None);
        }
        let namespace = if m.namespace.is_empty() {
            "default"
        } else {
            m.namespace.as_str()
        };
        let head = SliceHead {
            service,
            from_label: true,
            namespace,
            address_type: self.address_type.as_deref().map(Leaf::Str),
        };
        let f = head.fields(&format!("EndpointSlice {namespace}/{}", m.name));
        let endpoints: Vec<EndpointFields> = self
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref();
                EndpointFields {
                    addresses: Some(Leaf::Texts(&e.addresses)),
                    ready: c.and_then(|c| c.ready).map(Leaf::Bool),
                    serving: c.and_then(|c| c.serving).map(Leaf::Bool),
                    terminating: c.and_then(|c| c.terminating).map(Leaf::Bool),
                    node_name: e.node_name.as_ref().map(Leaf::Node),
                }
            })
            .collect();
        let ports: Vec<PortFields> = self
            .ports
            .iter()
            .map(|p| PortFields {
                name: p.name.as_deref().map(Leaf::Str),
                protocol: p.protocol.as_deref().map(Leaf::Str),
                port: p.port.map(|n| Leaf::Int(n.into())),
            })
            .collect();
        EndpointSet::from_fields(&f, &head, &endpoints, &ports).map(Some)
    }
}

/// One enveloped EndpointSlice as the API server sends it, decoded and
/// checked as the proxy's watch does (for the fuzz target and tests): the
/// error is one line.
pub fn parse_proto_slice(bytes: &[u8]) -> Result<Option<EndpointSet>, String> {
    match kube_proto::decode_object::<SliceKind>(bytes)? {
        kube_proto::Object::Item(slice) => slice.endpoints().map_err(|e| e.to_string()),
        kube_proto::Object::Status(s) => Err(format!("a Status: {}", s.message)),
    }
}

#[cfg(test)]
pub(crate) mod tests;

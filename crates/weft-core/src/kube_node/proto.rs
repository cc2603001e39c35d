//! Nodes as the API server sends them in protobuf ([`crate::kube_proto`]):
//! only the fields the agent reads are declared (name, resourceVersion,
//! annotations, pod ranges); the rest of each Node (status,
//! managedFields: most of its bytes) is skipped while decoding.

use std::collections::BTreeMap;

use prost::Message;

use super::annotations::NodeView;
use crate::kube_proto::{self, ProtoKind};

pub use crate::kube_proto::{ListItem, Object, Status, WatchEvent, MAX_FRAME, MAX_LIST_BYTES};

/// Nodes one list may hold (Kubernetes is tested to 5,000).
pub const MAX_LIST_ITEMS: usize = 100_000;

/// The Node kind, for the protobuf stream decoders.
pub struct NodeKind;

impl ProtoKind for NodeKind {
    type Item = Node;
    const KIND: &'static str = "Node";
    const MAX_ITEMS: usize = MAX_LIST_ITEMS;
    fn resource_version(item: &Node) -> &str {
        item.resource_version()
    }
}

/// A NodeList decoded while it arrives.
pub type ListDecoder = kube_proto::ListDecoder<NodeKind>;
/// A Node watch decoded while it arrives.
pub type WatchDecoder = kube_proto::WatchDecoder<NodeKind>;

/// Decodes one enveloped object: a Node or a Status.
pub fn decode_object(bytes: &[u8]) -> Result<Object<Node>, String> {
    kube_proto::decode_object::<NodeKind>(bytes)
}

#[derive(Clone, PartialEq, Message)]
pub struct Node {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<NodeSpec>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ObjectMeta {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub resource_version: String,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeSpec {
    #[prost(string, tag = "1")]
    pub pod_cidr: String,
    #[prost(string, repeated, tag = "7")]
    pub pod_cidrs: Vec<String>,
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

impl Node {
    pub fn name(&self) -> &str {
        self.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    pub fn resource_version(&self) -> &str {
        self.metadata
            .as_ref()
            .map_or("", |m| m.resource_version.as_str())
    }

    pub fn view(&self) -> NodeView<'_> {
        NodeView {
            name: self.name(),
            annotations: self
                .metadata
                .as_ref()
                .map_or(&NO_ANNOTATIONS, |m| &m.annotations),
            pod_cidr: self
                .spec
                .as_ref()
                .map(|s| s.pod_cidr.as_str())
                .filter(|c| !c.is_empty()),
            pod_cidrs: self.spec.as_ref().map_or(&[], |s| s.pod_cidrs.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests;

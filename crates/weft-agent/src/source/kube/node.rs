//! The parts of a Node the agent reads: name, resourceVersion,
//! annotations and pod ranges. Everything else in the object (status,
//! images, managedFields — most of its bytes) is skipped while parsing,
//! so a watch over thousands of Nodes keeps no more than this per event.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use weft_core::kube_node::annotations::NodeView;

/// A Node as a lease holder.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseNode {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodRanges,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodRanges {
    #[serde(rename = "podCIDR", default)]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = SlimMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        resource_version: m.resource_version,
        annotations: m.annotations,
        ..ObjectMeta::default()
    })
}

impl From<weft_core::kube_node::proto::Node> for LeaseNode {
    fn from(n: weft_core::kube_node::proto::Node) -> Self {
        let meta = n.metadata.unwrap_or_default();
        let spec = n.spec.unwrap_or_default();
        let some = |s: String| Some(s).filter(|s| !s.is_empty());
        LeaseNode {
            metadata: ObjectMeta {
                name: some(meta.name),
                resource_version: some(meta.resource_version),
                annotations: Some(meta.annotations).filter(|a| !a.is_empty()),
                ..ObjectMeta::default()
            },
            spec: PodRanges {
                pod_cidr: some(spec.pod_cidr),
                pod_cidrs: spec.pod_cidrs,
            },
        }
    }
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

impl LeaseNode {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    pub fn view(&self) -> NodeView<'_> {
        NodeView {
            name: self.name(),
            annotations: self
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&NO_ANNOTATIONS),
            pod_cidr: self.spec.pod_cidr.as_deref(),
            pod_cidrs: &self.spec.pod_cidrs,
        }
    }
}

impl k8s_openapi::Resource for LeaseNode {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Node";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "nodes";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::Metadata for LeaseNode {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_name_version_annotations_and_ranges_only() {
        let json = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","resourceVersion":"42",
            "labels":{"a":"b"},"annotations":{"x/y":"z"},"managedFields":[{"manager":"kubelet"}]},
            "spec":{"podCIDR":"172.30.1.0/24","podCIDRs":["172.30.1.0/24"],"taints":[]},
            "status":{"images":[{"names":["big"]}]}}"#;
        let n: LeaseNode = serde_json::from_str(json).expect("node");
        assert_eq!(n.name(), "n1");
        assert_eq!(n.metadata.resource_version.as_deref(), Some("42"));
        assert!(n.metadata.labels.is_none() && n.metadata.managed_fields.is_none());
        assert_eq!(
            n.view().annotations.get("x/y").map(String::as_str),
            Some("z")
        );
        assert_eq!(n.spec.pod_cidrs, vec!["172.30.1.0/24"]);
        // a Node with no annotations, no spec at all
        let bare: LeaseNode = serde_json::from_str(r#"{"metadata":{"name":"n2"}}"#).expect("bare");
        assert!(bare.view().annotations.is_empty());
    }
}

//! An EndpointSlice as the Kubernetes API sends it, read for the proxy:
//! only the fields the rules need, decoded straight from the JSON.
//!
//! k8s-openapi's `EndpointSlice` decodes every field (managedFields, hints,
//! zones, target references) into typed values that the proxy then wrote
//! back to JSON for [`crate::spec`] to check: under endpoint churn that
//! round trip was a fifth of the proxy's CPU. Here only the fields the
//! rules use are kept, their leaves as JSON values, the rest is skipped
//! while parsing; each slice becomes JSON for the spec parser only when it
//! is converted, so a listing's page holds no more than those leaves (as
//! whole JSON values, a 250,000-endpoint listing peaked 20 MiB higher).
//! The spec parser checks them as it checks weft's own store (the bytes
//! are untrusted: fuzz target `watched_slice`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::endpoints::SERVICE_NAME_LABEL;
use super::{parse_object, EndpointSet, Object, SpecError};

/// The annotation the EndpointSlice controller sets to the time of the
/// change (a Pod's or the Service's) that led to the slice's update.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// `discovery.k8s.io/v1` EndpointSlice, as far as the proxy reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSlice {
    pub metadata: SliceMeta,
    #[serde(default)]
    pub address_type: Value,
    pub endpoints: Option<Vec<ApiEndpoint>>,
    pub ports: Option<Vec<ApiPort>>,
}

/// An endpoint's fields the rules use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    #[serde(default)]
    pub addresses: Value,
    pub conditions: Option<ApiConditions>,
    #[serde(default)]
    pub node_name: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiConditions {
    #[serde(default)]
    pub ready: Value,
    #[serde(default)]
    pub serving: Value,
    #[serde(default)]
    pub terminating: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiPort {
    #[serde(default)]
    pub name: Value,
    #[serde(default)]
    pub protocol: Value,
    #[serde(default)]
    pub port: Value,
}

/// A JSON object of the fields that are set.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let set = fields.into_iter().filter(|(_, v)| !v.is_null());
    Value::Object(set.map(|(k, v)| (k.to_string(), v)).collect())
}

impl ApiEndpoint {
    fn into_value(self) -> Value {
        let conditions = self.conditions.map_or(Value::Null, |c| {
            object([
                ("ready", c.ready),
                ("serving", c.serving),
                ("terminating", c.terminating),
            ])
        });
        object([
            ("addresses", self.addresses),
            ("conditions", conditions),
            ("nodeName", self.node_name),
        ])
    }
}

impl ApiPort {
    fn into_value(self) -> Value {
        object([
            ("name", self.name),
            ("protocol", self.protocol),
            ("port", self.port),
        ])
    }
}

/// The metadata fields the watch and the rules use; managedFields and the
/// rest are skipped without being built.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub uid: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        deserialize_with = "trigger_annotation",
        rename = "annotations"
    )]
    pub trigger_time: Option<String>,
}

/// Of the annotations, only the trigger time is kept.
fn trigger_annotation<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let all = Option::<BTreeMap<String, String>>::deserialize(d)?;
    Ok(all.and_then(|mut a| a.remove(TRIGGER_TIME)))
}

impl ApiSlice {
    /// `namespace`, `name`.
    pub fn key(&self) -> (String, String) {
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// The slice as weft's endpoint set, checked by the spec parser;
    /// `None` for slices kube-proxy ignores (no Service label, FQDN
    /// addresses).
    pub fn into_endpoints(self) -> Result<Option<EndpointSet>, SpecError> {
        let labels = self.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).is_none()
            || self.address_type.as_str() == Some("FQDN")
        {
            return Ok(None);
        }
        let origin = format!(
            "EndpointSlice {}/{}",
            self.metadata.namespace.as_deref().unwrap_or(""),
            self.metadata.name.as_deref().unwrap_or("")
        );
        let mut meta = Map::new();
        let m = self.metadata;
        for (key, value) in [("name", m.name), ("namespace", m.namespace)] {
            if let Some(v) = value {
                meta.insert(key.into(), Value::String(v));
            }
        }
        if let Some(labels) = m.labels {
            let labels = labels.into_iter().map(|(k, v)| (k, Value::String(v)));
            meta.insert("labels".into(), Value::Object(labels.collect()));
        }
        let mut v = Map::new();
        v.insert("kind".into(), "EndpointSlice".into());
        v.insert("metadata".into(), Value::Object(meta));
        let endpoints = self.endpoints.map_or(Value::Null, |list| {
            Value::Array(list.into_iter().map(ApiEndpoint::into_value).collect())
        });
        let ports = self.ports.map_or(Value::Null, |list| {
            Value::Array(list.into_iter().map(ApiPort::into_value).collect())
        });
        for (key, value) in [
            ("addressType", self.address_type),
            ("endpoints", endpoints),
            ("ports", ports),
        ] {
            if !value.is_null() {
                v.insert(key.into(), value);
            }
        }
        match parse_object(&Value::Object(v), &origin)? {
            Object::Endpoints(e) => Ok(Some(e)),
            Object::Service(_) => Ok(None),
        }
    }
}

/// An API server's JSON for one EndpointSlice, decoded and checked as the
/// proxy's watch does (for the fuzz target and tests): the error is one
/// line.
pub fn parse_api_slice(json: &[u8]) -> Result<Option<EndpointSet>, String> {
    let slice: ApiSlice = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    slice.into_endpoints().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: &str = r#"{
      "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
      "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "42",
        "labels": {"kubernetes.io/service-name": "web"},
        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-05T10:00:00Z",
                        "other": "x"},
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                           "fieldsType": "FieldsV1", "fieldsV1": {"f:endpoints": {}}}]},
      "addressType": "IPv4",
      "endpoints": [
        {"addresses": ["172.30.1.2"], "conditions": {"ready": true}, "nodeName": "n1",
         "zone": "a", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}},
        {"addresses": ["172.30.1.3"], "conditions": {"ready": false, "serving": true,
         "terminating": true}, "hints": {"forZones": [{"name": "a"}]}}
      ],
      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]
    }"#;

    #[test]
    fn watch_fields_kept_and_the_rest_dropped() {
        let s: ApiSlice = serde_json::from_str(SLICE).expect("parses");
        assert_eq!(s.key(), ("shop".to_string(), "web-abc".to_string()));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(
            s.metadata.trigger_time.as_deref(),
            Some("2026-12-05T10:00:00Z")
        );
    }

    #[test]
    fn ignored_and_bad_slices() {
        let fqdn = SLICE.replace("\"IPv4\"", "\"FQDN\"");
        assert_eq!(parse_api_slice(fqdn.as_bytes()), Ok(None));
        let unlabeled = SLICE.replace("kubernetes.io/service-name", "app");
        assert_eq!(parse_api_slice(unlabeled.as_bytes()), Ok(None));
        let bad = SLICE.replace("172.30.1.3", "not-an-ip");
        let e = parse_api_slice(bad.as_bytes()).expect_err("bad address");
        assert!(
            e.contains("endpoints[1].addresses[0]") && !e.contains('\n'),
            "{e}"
        );
        let e = parse_api_slice(b"{\"metadata\": 3}").expect_err("bad metadata");
        assert!(!e.contains('\n'), "{e}");
    }
}

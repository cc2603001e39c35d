//! An EndpointSlice as the Kubernetes API sends it, read for the proxy:
//! only the fields the rules need, decoded straight from the JSON and
//! checked field by field by the spec parser's own rules.
//!
//! k8s-openapi's `EndpointSlice` decodes every field (managedFields, hints,
//! zones, target references) into typed values that the proxy then wrote
//! back to JSON for [`crate::spec`] to check: under endpoint churn that
//! round trip was a fifth of the proxy's CPU. Here only the fields the
//! rules use are kept, their leaves as JSON values, the rest is skipped
//! while parsing, so a listing's page holds no more than those leaves (as
//! whole JSON values, a 250,000-endpoint listing peaked 20 MiB higher).
//! The leaves go to the spec parser's checks without being assembled
//! into a JSON object first (that assembly was a fifth of the proxy's CPU
//! under churn); the checks are the ones weft's own store gets (the bytes
//! are untrusted: fuzz target `watched_slice`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::endpoints::{EndpointFields, PortFields, SliceHead, SERVICE_NAME_LABEL};
use super::{EndpointSet, SpecError};

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

    /// The slice as weft's endpoint set, checked by the spec parser's
    /// rules ([`EndpointSet::from_fields`], as for weft's own store);
    /// `None` for slices kube-proxy ignores (no Service label, FQDN
    /// addresses).
    pub fn into_endpoints(self) -> Result<Option<EndpointSet>, SpecError> {
        let m = &self.metadata;
        let Some(service) = m.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            return Ok(None);
        };
        if self.address_type.as_str() == Some("FQDN") {
            return Ok(None);
        }
        let head = SliceHead {
            service,
            from_label: true,
            namespace: m.namespace.as_deref().unwrap_or("default"),
            address_type: Some(&self.address_type),
        };
        let origin = format!(
            "EndpointSlice {}/{}",
            head.namespace,
            m.name.as_deref().unwrap_or("")
        );
        let f = head.fields(&origin);
        let endpoints: Vec<EndpointFields> = self
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let c = e.conditions.as_ref();
                EndpointFields {
                    addresses: Some(&e.addresses),
                    ready: c.map(|c| &c.ready),
                    serving: c.map(|c| &c.serving),
                    terminating: c.map(|c| &c.terminating),
                    node_name: Some(&e.node_name),
                }
            })
            .collect();
        let ports: Vec<PortFields> = self
            .ports
            .iter()
            .flatten()
            .map(|p| PortFields {
                name: Some(&p.name),
                protocol: Some(&p.protocol),
                port: Some(&p.port),
            })
            .collect();
        EndpointSet::from_fields(&f, &head, &endpoints, &ports).map(Some)
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

    /// The lean path checks a slice as the JSON path (weft's store) does:
    /// the same endpoint set, or the same one-line error.
    #[test]
    fn the_lean_path_checks_as_the_json_path_does() {
        use crate::spec::{parse_object, Object};
        let cases = [
            ("", ""),
            ("172.30.1.3", "not-an-ip"),
            ("172.30.1.3", "172.30.1.2"),
            ("\"IPv4\"", "\"IPv5\""),
            ("\"port\": 8080", "\"port\": 70000"),
            ("\"protocol\": \"TCP\"", "\"protocol\": \"ICMP\""),
            ("\"ready\": true", "\"ready\": \"yes\""),
            ("\"nodeName\": \"n1\"", "\"nodeName\": 7"),
            ("\"namespace\": \"shop\"", "\"namespace\": \"Shop\""),
            ("[\"172.30.1.2\"]", "[]"),
            ("\"name\": \"http\"", "\"name\": \"-x\""),
        ];
        for (from, to) in cases {
            let text = SLICE.replace(from, to);
            let lean = parse_api_slice(text.as_bytes());
            let v: Value = serde_json::from_str(&text).expect("json");
            let json = match parse_object(&v, "test") {
                Ok(Object::Endpoints(e)) => Ok(Some(e)),
                Ok(Object::Service(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            assert_eq!(lean, json, "{from} -> {to}");
        }
    }
}

//! A Service as the Kubernetes API sends it in protobuf (`v1`,
//! [`weft_core::kube_proto`]), read for the proxy as EndpointSlices are
//! ([`super::proto_slice`]): only the fields the rules use are declared,
//! the rest (managedFields, selector, conditions, …) is skipped by the
//! decoder.
//!
//! The fields are then put in the JSON shape of weft's own store and go
//! through the same checks ([`Service::from_value`]), so a bad Service is
//! the same one-line error on both paths. Against the JSON watch through
//! `k8s-openapi` (JSON text, then typed structs, then a JSON tree for the
//! checks) a 5,000-Service listing costs a fraction of the time. The
//! bytes are untrusted (fuzz target `proto_service`).

use prost::Message;
use serde_json::{json, Map, Value};
use weft_core::kube_proto::{self, ProtoKind};

use super::{Service, ServiceName, SpecError};

/// `v1` Service, as far as the proxy reads it (field numbers: k8s.io/api
/// core/v1 generated.proto).
#[derive(Clone, PartialEq, Message)]
pub struct ProtoService {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ServiceMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<ServiceSpec>,
    #[prost(message, optional, tag = "3")]
    pub status: Option<ServiceStatus>,
}

/// The metadata fields the watch and the rules use.
#[derive(Clone, PartialEq, Message)]
pub struct ServiceMeta {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(string, tag = "6")]
    pub resource_version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ServiceSpec {
    #[prost(message, repeated, tag = "1")]
    pub ports: Vec<ServicePort>,
    #[prost(string, optional, tag = "3")]
    pub cluster_ip: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub r#type: Option<String>,
    #[prost(string, repeated, tag = "5")]
    pub external_ips: Vec<String>,
    #[prost(string, optional, tag = "7")]
    pub session_affinity: Option<String>,
    #[prost(string, repeated, tag = "9")]
    pub load_balancer_source_ranges: Vec<String>,
    #[prost(string, optional, tag = "11")]
    pub external_traffic_policy: Option<String>,
    #[prost(int32, optional, tag = "12")]
    pub health_check_node_port: Option<i32>,
    #[prost(message, optional, tag = "14")]
    pub session_affinity_config: Option<AffinityConfig>,
    #[prost(string, optional, tag = "22")]
    pub internal_traffic_policy: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ServicePort {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub protocol: Option<String>,
    #[prost(int32, optional, tag = "3")]
    pub port: Option<i32>,
    #[prost(message, optional, tag = "4")]
    pub target_port: Option<IntOrString>,
    #[prost(int32, optional, tag = "5")]
    pub node_port: Option<i32>,
}

/// `intstr.IntOrString`: type 0 is the number, 1 the text.
#[derive(Clone, PartialEq, Message)]
pub struct IntOrString {
    #[prost(int64, optional, tag = "1")]
    pub r#type: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    pub int_val: Option<i32>,
    #[prost(string, optional, tag = "3")]
    pub str_val: Option<String>,
}

/// `sessionAffinityConfig`; its `clientIP`.
#[derive(Clone, PartialEq, Message)]
pub struct AffinityConfig {
    #[prost(message, optional, tag = "1")]
    pub client_ip: Option<ClientIpConfig>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClientIpConfig {
    #[prost(int32, optional, tag = "1")]
    pub timeout_seconds: Option<i32>,
}

/// `status.loadBalancer`.
#[derive(Clone, PartialEq, Message)]
pub struct ServiceStatus {
    #[prost(message, optional, tag = "1")]
    pub load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LoadBalancerStatus {
    #[prost(message, repeated, tag = "1")]
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LoadBalancerIngress {
    #[prost(string, optional, tag = "1")]
    pub ip: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub ip_mode: Option<String>,
}

/// The Service kind, for the protobuf stream decoders.
pub struct ServiceKind;

impl ProtoKind for ServiceKind {
    type Item = ProtoService;
    const KIND: &'static str = "Service";
    /// 100,000 Services: ten times the Services Kubernetes is tested to.
    const MAX_ITEMS: usize = 100_000;
    fn resource_version(item: &ProtoService) -> &str {
        item.metadata
            .as_ref()
            .map_or("", |m| m.resource_version.as_str())
    }
}

impl ProtoService {
    /// `namespace/name` (namespace `default` when absent).
    pub fn id(&self) -> ServiceName {
        let m = self.metadata.as_ref();
        let namespace = m.map_or("", |m| m.namespace.as_str());
        ServiceName::new(
            if namespace.is_empty() {
                "default"
            } else {
                namespace
            },
            m.map_or("", |m| m.name.as_str()),
        )
    }

    /// What the rules see of the Service, checked by the spec parser's
    /// rules; `None` when it needs no rules (ExternalName).
    pub fn service(&self) -> Result<Option<Service>, SpecError> {
        let kind = self.spec.as_ref().and_then(|s| s.r#type.as_deref());
        if kind == Some("ExternalName") {
            return Ok(None);
        }
        let origin = format!("Service {}", self.id());
        Service::from_value(&self.to_value(), &origin).map(Some)
    }

    /// The fields the proxy reads, as the API server's JSON has them.
    fn to_value(&self) -> Value {
        let mut v = Map::new();
        v.insert("kind".into(), "Service".into());
        if let Some(m) = &self.metadata {
            let mut meta = Map::new();
            put_text(&mut meta, "name", &m.name);
            put_text(&mut meta, "namespace", &m.namespace);
            v.insert("metadata".into(), meta.into());
        }
        if let Some(spec) = &self.spec {
            v.insert("spec".into(), spec.to_value());
        }
        let ingress = self
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .map(|lb| &lb.ingress[..])
            .unwrap_or_default();
        if !ingress.is_empty() {
            let ingress: Vec<Value> = ingress.iter().map(LoadBalancerIngress::to_value).collect();
            v.insert(
                "status".into(),
                json!({"loadBalancer": {"ingress": ingress}}),
            );
        }
        v.into()
    }
}

impl ServiceSpec {
    fn to_value(&self) -> Value {
        let mut s = Map::new();
        let ports: Vec<Value> = self.ports.iter().map(ServicePort::to_value).collect();
        s.insert("ports".into(), ports.into());
        put(&mut s, "clusterIP", &self.cluster_ip);
        put(&mut s, "type", &self.r#type);
        put_list(&mut s, "externalIPs", &self.external_ips);
        put(&mut s, "sessionAffinity", &self.session_affinity);
        put_list(
            &mut s,
            "loadBalancerSourceRanges",
            &self.load_balancer_source_ranges,
        );
        put(
            &mut s,
            "externalTrafficPolicy",
            &self.external_traffic_policy,
        );
        put(&mut s, "healthCheckNodePort", &self.health_check_node_port);
        let timeout = self
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        if let Some(t) = timeout {
            s.insert(
                "sessionAffinityConfig".into(),
                json!({"clientIP": {"timeoutSeconds": t}}),
            );
        }
        put(
            &mut s,
            "internalTrafficPolicy",
            &self.internal_traffic_policy,
        );
        s.into()
    }
}

impl ServicePort {
    fn to_value(&self) -> Value {
        let mut p = Map::new();
        put(&mut p, "name", &self.name);
        put(&mut p, "protocol", &self.protocol);
        // required, never left out
        if let Some(port) = self.port {
            p.insert("port".into(), port.into());
        }
        if let Some(t) = &self.target_port {
            let value = match t.r#type {
                Some(1) => t.str_val.clone().unwrap_or_default().into(),
                _ => t.int_val.unwrap_or_default().into(),
            };
            p.insert("targetPort".into(), value);
        }
        put(&mut p, "nodePort", &self.node_port);
        p.into()
    }
}

impl LoadBalancerIngress {
    fn to_value(&self) -> Value {
        let mut i = Map::new();
        put(&mut i, "ip", &self.ip);
        put(&mut i, "ipMode", &self.ip_mode);
        i.into()
    }
}

/// A field the JSON leaves out when it is empty or zero (`omitempty`):
/// the API server's protobuf sends such fields of its Go structs
/// (`nodePort: 0`, `type: ""`) where its JSON has nothing.
fn put<T: Clone + Default + PartialEq + Into<Value>>(
    m: &mut Map<String, Value>,
    key: &str,
    v: &Option<T>,
) {
    if let Some(v) = v.as_ref().filter(|v| **v != T::default()) {
        m.insert(key.into(), v.clone().into());
    }
}

fn put_text(m: &mut Map<String, Value>, key: &str, v: &str) {
    if !v.is_empty() {
        m.insert(key.into(), v.into());
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, v: &[String]) {
    if !v.is_empty() {
        m.insert(key.into(), v.into());
    }
}

/// One enveloped Service as the API server sends it, decoded and checked
/// as the proxy's watch does (for the fuzz target and tests): the error is
/// one line.
pub fn parse_proto_service(bytes: &[u8]) -> Result<Option<Service>, String> {
    match kube_proto::decode_object::<ServiceKind>(bytes)? {
        kube_proto::Object::Item(svc) => svc.service().map_err(|e| e.to_string()),
        kube_proto::Object::Status(s) => Err(format!("a Status: {}", s.message)),
    }
}

#[cfg(test)]
mod tests;

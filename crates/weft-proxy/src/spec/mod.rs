//! Service and endpoint definitions: the documented JSON schema (a subset of
//! Kubernetes' `v1/Service` and `discovery.k8s.io/v1/EndpointSlice`), read
//! from etcd values or from YAML/JSON files, validated field by field.
//!
//! Everything here is pure: text in, typed values or a one-line error naming
//! the field out.

mod endpoints;
mod fields;
mod leaf;
pub mod proto_service;
pub mod proto_slice;
mod service;
mod shared_text;

pub use endpoints::{node_name, Endpoint, EndpointPort, EndpointSet, NodeName};
pub use service::{Protocol, Service, ServicePort, ServiceType, TargetPort};

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use shared_text::TextTable;

/// A spec that cannot be used, with the field at fault. Displayed on one
/// line: control characters from the input are escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}: {}", one_line(object), one_line(field), one_line(message))]
pub struct SpecError {
    /// `Service default/web`, `file services.yaml document 2`, …
    pub object: String,
    /// `spec.ports[0].port`
    pub field: String,
    pub message: String,
}

fn one_line(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars().flat_map(char::escape_default).collect()
    } else {
        s.to_string()
    }
}

/// `namespace/name` of a service (and of its endpoint set).
///
/// Shared text (`Arc<str>`): the name keys the source's slices, the
/// catalog's maps, the endpoint sets and every rendered port, so a copy
/// is a reference count, not two allocations (at 10,000 Services under
/// churn the copies of `String` pairs held several MiB).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceName {
    /// Parses `ns/name` or `name` (namespace `default`), validating both.
    pub fn parse(text: &str) -> Result<ServiceName, SpecError> {
        let (namespace, name) = match text.split_once('/') {
            Some((ns, n)) => (ns, n),
            None => ("default", text),
        };
        let err = |field: &str, message: String| SpecError {
            object: format!("service {text:?}"),
            field: field.into(),
            message,
        };
        fields::check_dns_label(namespace).map_err(|m| err("metadata.namespace", m))?;
        fields::check_dns_label(name).map_err(|m| err("metadata.name", m))?;
        Ok(ServiceName::new(namespace, name))
    }

    /// `namespace/name` as given (not validated); the namespace's text is
    /// the one copy every service of that namespace shares.
    pub fn new(namespace: &str, name: &str) -> ServiceName {
        static NAMESPACES: TextTable = TextTable::new();
        ServiceName {
            namespace: NAMESPACES.get(namespace),
            name: name.into(),
        }
    }
}

/// A port's name (`http`, or empty for a Service's only port): one
/// shared copy of each, as a cluster's Services name their ports with a
/// few words (each Service, EndpointSlice and rendered port held its own
/// copy before).
pub type PortName = Arc<str>;

/// The one shared copy of port name `name`.
pub fn port_name(name: &str) -> PortName {
    static PORT_NAMES: TextTable = TextTable::new();
    PORT_NAMES.get(name)
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One object read from a file or from etcd.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Service(Service),
    Endpoints(EndpointSet),
}

/// Parses one object from a JSON value, dispatching on `kind`.
pub fn parse_object(v: &Value, origin: &str) -> Result<Object, SpecError> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    match kind {
        "Service" => Service::from_value(v, origin).map(Object::Service),
        "EndpointSlice" => EndpointSet::from_value(v, origin).map(Object::Endpoints),
        other => Err(SpecError {
            object: origin.into(),
            field: "kind".into(),
            message: format!("{other:?} is not Service or EndpointSlice"),
        }),
    }
}

/// Parses a YAML or JSON text holding one or more objects: multiple YAML
/// documents, a JSON array, or a `kind: List` with `items`. Every object is
/// validated; the first bad one fails the whole file.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Object>, SpecError> {
    let values = fields::documents(text, origin)?;
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let at = if values.len() > 1 {
            format!("{origin} object {}", i + 1)
        } else {
            origin.to_string()
        };
        out.push(parse_object(v, &at)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

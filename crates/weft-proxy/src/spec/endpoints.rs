//! `EndpointSlice`: the addresses behind a service, their readiness and node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::fields::{check_dns_label, metadata, Fields};
use super::service::Protocol;
use super::{ServiceName, SpecError};

/// The label naming the service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// `conditions.ready` (default true).
    pub ready: bool,
    /// `conditions.serving` (default true): answers even while terminating.
    pub serving: bool,
    /// `conditions.terminating` (default false).
    pub terminating: bool,
    /// The node the endpoint runs on (traffic policy Local).
    pub node: Option<NodeName>,
}

impl Endpoint {
    /// A ready (so serving, not terminating) endpoint.
    pub fn ready(ip: IpAddr, node: Option<&str>) -> Endpoint {
        Endpoint {
            ip,
            ready: true,
            serving: true,
            terminating: false,
            node: node.map(node_name),
        }
    }
}

/// A node's name, shared by every endpoint on that node (100,000
/// endpoints name a few hundred nodes).
pub type NodeName = Arc<str>;

/// The one shared copy of node name `name`.
pub fn node_name(name: &str) -> NodeName {
    static NAMES: Mutex<BTreeSet<NodeName>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    // names of nodes that left are forgotten before the set grows on
    if names.len() >= 1024 && names.len().is_power_of_two() {
        names.retain(|n| Arc::strong_count(n) > 1);
    }
    let n: NodeName = name.into();
    names.insert(n.clone());
    n
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Matches the service port of the same name.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One EndpointSlice: endpoints of one service (weft's own store keeps one
/// per service; Kubernetes may split a service's endpoints over several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSet {
    pub service: ServiceName,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

impl EndpointSet {
    /// Validates a `kind: EndpointSlice` object.
    pub fn from_value(v: &Value, origin: &str) -> Result<EndpointSet, SpecError> {
        let (meta, slice_name, namespace) = metadata(v);
        let label = meta
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .and_then(Value::as_str);
        let service = label.unwrap_or(slice_name);
        let f = Fields {
            object: if service.is_empty() {
                format!("{origin}: EndpointSlice")
            } else {
                format!("EndpointSlice {namespace}/{service}")
            },
        };
        f.str(meta.and_then(|m| m.get("name")), "metadata.name")?;
        f.str(meta.and_then(|m| m.get("namespace")), "metadata.namespace")?;
        let service_field = if label.is_some() {
            "metadata.labels[kubernetes.io/service-name]"
        } else {
            "metadata.name"
        };
        check_dns_label(service).map_err(|m| f.err(service_field, m))?;
        check_dns_label(namespace).map_err(|m| f.err("metadata.namespace", m))?;

        let family = match f.str(v.get("addressType"), "addressType")? {
            None => None,
            Some("IPv4") => Some(false),
            Some("IPv6") => Some(true),
            Some(o) => return Err(f.err("addressType", format!("{o:?} is not IPv4 or IPv6"))),
        };
        let mut endpoints = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, e) in f.list(v.get("endpoints"), "endpoints")?.iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            f.map(e, &format!("endpoints[{i}]"))?;
            let addrs = f.list(e.get("addresses"), &at("addresses"))?;
            if addrs.is_empty() {
                return Err(f.err(&at("addresses"), "at least one address is required"));
            }
            let condition = |name: &str, default: bool| {
                f.bool(
                    e.get("conditions").and_then(|c| c.get(name)),
                    &at(&format!("conditions.{name}")),
                )
                .map(|v| v.unwrap_or(default))
            };
            let ready = condition("ready", true)?;
            let serving = condition("serving", true)?;
            let terminating = condition("terminating", false)?;
            let node = f.str(e.get("nodeName"), &at("nodeName"))?.map(node_name);
            for (j, a) in addrs.iter().enumerate() {
                let path = at(&format!("addresses[{j}]"));
                let s = f.str(Some(a), &path)?.unwrap_or("");
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| f.err(&path, format!("{s:?} is not an IP address")))?;
                if let Some(v6) = family {
                    if ip.is_ipv6() != v6 {
                        return Err(f.err(&path, format!("{ip} does not match addressType")));
                    }
                }
                if !seen.insert(ip) {
                    return Err(f.err(&path, format!("{ip} is listed twice")));
                }
                endpoints.push(Endpoint {
                    ip,
                    ready,
                    serving,
                    terminating,
                    node: node.clone(),
                });
            }
        }
        let mut ports = Vec::new();
        let mut names = BTreeSet::new();
        for (i, p) in f.list(v.get("ports"), "ports")?.iter().enumerate() {
            let at = |field: &str| format!("ports[{i}].{field}");
            f.map(p, &format!("ports[{i}]"))?;
            let name = f.str(p.get("name"), &at("name"))?.unwrap_or("").to_string();
            if !name.is_empty() {
                check_dns_label(&name).map_err(|m| f.err(&at("name"), m))?;
            }
            let protocol = match f.str(p.get("protocol"), &at("protocol"))? {
                None => Protocol::Tcp,
                Some(s) => Protocol::parse(s).ok_or_else(|| {
                    f.err(&at("protocol"), format!("{s:?} is not TCP, UDP or SCTP"))
                })?,
            };
            if !names.insert((name.clone(), protocol)) {
                return Err(f.err(&at("name"), format!("{name:?}/{protocol} is listed twice")));
            }
            let port = f
                .int(p.get("port"), &at("port"), 1, 65535)?
                .ok_or_else(|| f.err(&at("port"), "missing"))? as u16;
            ports.push(EndpointPort {
                name,
                protocol,
                port,
            });
        }
        Ok(EndpointSet {
            service: ServiceName {
                namespace: namespace.into(),
                name: service.into(),
            },
            endpoints,
            ports,
        })
    }

    /// The canonical JSON stored in etcd (parses back to an equal value).
    pub fn to_value(&self) -> Value {
        let v6 = self.endpoints.first().is_some_and(|e| e.ip.is_ipv6());
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|e| {
                let mut o = json!({
                    "addresses": [e.ip.to_string()],
                    "conditions": {
                        "ready": e.ready,
                        "serving": e.serving,
                        "terminating": e.terminating,
                    },
                });
                if let Some(n) = &e.node {
                    o["nodeName"] = json!(&**n);
                }
                o
            })
            .collect();
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "protocol": p.protocol.upper(), "port": p.port}))
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.service.name,
                "namespace": self.service.namespace,
                "labels": {SERVICE_NAME_LABEL: self.service.name},
            },
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "endpoints": endpoints,
            "ports": ports,
        })
    }
}

//! `EndpointSlice`: the addresses behind a service, their readiness and node.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::fields::{check_dns_label, metadata, Fields};
use super::leaf::{leaf_bool, leaf_int, leaf_str, Items, Leaf};
use super::service::Protocol;
pub use super::shared_text::{node_name, NodeName};
use super::{port_name, PortName, ServiceName, SpecError};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// Matches the service port of the same name.
    pub name: PortName,
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

/// The fields of one endpoint, wherever they were read from (a JSON
/// object, or the API watch's protobuf slice): each one `None` when
/// absent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EndpointFields<'v> {
    pub addresses: Option<Leaf<'v>>,
    pub ready: Option<Leaf<'v>>,
    pub serving: Option<Leaf<'v>>,
    pub terminating: Option<Leaf<'v>>,
    pub node_name: Option<Leaf<'v>>,
}

/// The fields of one port, wherever they were read from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PortFields<'v> {
    pub name: Option<Leaf<'v>>,
    pub protocol: Option<Leaf<'v>>,
    pub port: Option<Leaf<'v>>,
}

/// Who a slice belongs to: its Service (the label, or else the slice's
/// name) and namespace, and its address type.
pub(crate) struct SliceHead<'v> {
    pub service: &'v str,
    pub from_label: bool,
    pub namespace: &'v str,
    pub address_type: Option<Leaf<'v>>,
}

impl SliceHead<'_> {
    /// Errors name the slice's Service, or `origin` without one.
    pub(crate) fn fields(&self, origin: &str) -> Fields {
        Fields {
            object: if self.service.is_empty() {
                format!("{origin}: EndpointSlice")
            } else {
                format!("EndpointSlice {}/{}", self.namespace, self.service)
            },
        }
    }
}

impl EndpointSet {
    /// Validates a `kind: EndpointSlice` object.
    pub fn from_value(v: &Value, origin: &str) -> Result<EndpointSet, SpecError> {
        let (meta, slice_name, namespace) = metadata(v);
        let label = meta
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .and_then(Value::as_str);
        let head = SliceHead {
            service: label.unwrap_or(slice_name),
            from_label: label.is_some(),
            namespace,
            address_type: v.get("addressType").map(Leaf::Json),
        };
        let f = head.fields(origin);
        f.str(meta.and_then(|m| m.get("name")), "metadata.name")?;
        f.str(meta.and_then(|m| m.get("namespace")), "metadata.namespace")?;
        let endpoints = f.list(v.get("endpoints"), "endpoints")?;
        let ports = f.list(v.get("ports"), "ports")?;
        for (i, e) in endpoints.iter().enumerate() {
            f.map(e, &format!("endpoints[{i}]"))?;
        }
        for (i, p) in ports.iter().enumerate() {
            f.map(p, &format!("ports[{i}]"))?;
        }
        let endpoints: Vec<EndpointFields> = endpoints
            .iter()
            .map(|e| {
                let conditions = e.get("conditions");
                let condition = |name: &str| conditions.and_then(|c| c.get(name)).map(Leaf::Json);
                EndpointFields {
                    addresses: e.get("addresses").map(Leaf::Json),
                    ready: condition("ready"),
                    serving: condition("serving"),
                    terminating: condition("terminating"),
                    node_name: e.get("nodeName").map(Leaf::Json),
                }
            })
            .collect();
        let ports: Vec<PortFields> = ports
            .iter()
            .map(|p| PortFields {
                name: p.get("name").map(Leaf::Json),
                protocol: p.get("protocol").map(Leaf::Json),
                port: p.get("port").map(Leaf::Json),
            })
            .collect();
        EndpointSet::from_fields(&f, &head, &endpoints, &ports)
    }

    /// Validates a slice's fields, however they were read; `f` names it.
    pub(crate) fn from_fields(
        f: &Fields,
        head: &SliceHead<'_>,
        endpoint_fields: &[EndpointFields<'_>],
        port_fields: &[PortFields<'_>],
    ) -> Result<EndpointSet, SpecError> {
        let service_field = if head.from_label {
            "metadata.labels[kubernetes.io/service-name]"
        } else {
            "metadata.name"
        };
        check_dns_label(head.service).map_err(|m| f.err(service_field, m))?;
        check_dns_label(head.namespace).map_err(|m| f.err("metadata.namespace", m))?;
        let family = match at(leaf_str(f, head.address_type), || "addressType".into())? {
            None => None,
            Some("IPv4") => Some(false),
            Some("IPv6") => Some(true),
            Some(o) => return Err(f.err("addressType", format!("{o:?} is not IPv4 or IPv6"))),
        };
        // sized to the slice (an endpoint has one address): the sets are
        // kept, and doubling from empty left 16 slots for 10 endpoints
        let mut endpoints = Vec::with_capacity(endpoint_fields.len());
        let mut seen = BTreeSet::new();
        for (i, e) in endpoint_fields.iter().enumerate() {
            read_endpoint(f, i, e, family, &mut seen, &mut endpoints)?;
        }
        endpoints.shrink_to_fit();
        let mut ports = Vec::with_capacity(port_fields.len());
        let mut names = BTreeSet::new();
        for (i, p) in port_fields.iter().enumerate() {
            let port = read_port(f, i, p)?;
            if !names.insert((port.name.clone(), port.protocol)) {
                let (name, protocol) = (&port.name, port.protocol);
                return Err(f.err(
                    &format!("ports[{i}].name"),
                    format!("{name:?}/{protocol} is listed twice"),
                ));
            }
            ports.push(port);
        }
        Ok(EndpointSet {
            service: ServiceName::new(head.namespace, head.service),
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
            .map(|p| json!({"name": &*p.name, "protocol": p.protocol.upper(), "port": p.port}))
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": &*self.service.name,
                "namespace": &*self.service.namespace,
                "labels": {SERVICE_NAME_LABEL: &*self.service.name},
            },
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "endpoints": endpoints,
            "ports": ports,
        })
    }
}

/// `r`, its error naming the field `path()`: the path is only written
/// when a check fails (a slice of 10 endpoints checks some 60 fields).
fn at<T>(r: Result<T, SpecError>, path: impl FnOnce() -> String) -> Result<T, SpecError> {
    r.map_err(|mut e| {
        e.field = path();
        e
    })
}

/// Checks endpoint `i` and appends one [`Endpoint`] per address.
fn read_endpoint(
    f: &Fields,
    i: usize,
    e: &EndpointFields<'_>,
    family: Option<bool>,
    seen: &mut BTreeSet<IpAddr>,
    out: &mut Vec<Endpoint>,
) -> Result<(), SpecError> {
    let path = |field: &str| format!("endpoints[{i}].{field}");
    let addrs = at(Items::read(f, e.addresses), || path("addresses"))?;
    if addrs.len() == 0 {
        return Err(f.err(&path("addresses"), "at least one address is required"));
    }
    let condition = |v: Option<Leaf>, name: &str, default: bool| {
        at(leaf_bool(f, v), || path(&format!("conditions.{name}"))).map(|v| v.unwrap_or(default))
    };
    let ready = condition(e.ready, "ready", true)?;
    let serving = condition(e.serving, "serving", true)?;
    let terminating = condition(e.terminating, "terminating", false)?;
    let node = match e.node_name {
        Some(Leaf::Node(shared)) => Some(shared.clone()),
        text => at(leaf_str(f, text), || path("nodeName"))?.map(node_name),
    };
    for j in 0..addrs.len() {
        let address = || path(&format!("addresses[{j}]"));
        let s = at(leaf_str(f, addrs.get(j)), address)?.unwrap_or("");
        let ip: IpAddr = s
            .parse()
            .map_err(|_| f.err(&address(), format!("{s:?} is not an IP address")))?;
        if let Some(v6) = family {
            if ip.is_ipv6() != v6 {
                return Err(f.err(&address(), format!("{ip} does not match addressType")));
            }
        }
        if !seen.insert(ip) {
            return Err(f.err(&address(), format!("{ip} is listed twice")));
        }
        out.push(Endpoint {
            ip,
            ready,
            serving,
            terminating,
            node: node.clone(),
        });
    }
    Ok(())
}

/// Checks port `i`.
fn read_port(f: &Fields, i: usize, p: &PortFields<'_>) -> Result<EndpointPort, SpecError> {
    let path = |field: &str| format!("ports[{i}].{field}");
    let name = at(leaf_str(f, p.name), || path("name"))?.unwrap_or("");
    if !name.is_empty() {
        check_dns_label(name).map_err(|m| f.err(&path("name"), m))?;
    }
    let protocol = match at(leaf_str(f, p.protocol), || path("protocol"))? {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s)
            .ok_or_else(|| f.err(&path("protocol"), format!("{s:?} is not TCP, UDP or SCTP")))?,
    };
    let port = at(leaf_int(f, p.port, 1, 65535), || path("port"))?
        .ok_or_else(|| f.err(&path("port"), "missing"))? as u16;
    Ok(EndpointPort {
        name: port_name(name),
        protocol,
        port,
    })
}

//! `Service`: virtual IP, ports, node ports, affinity and traffic policies.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use super::fields::{check_dns_label, metadata, Fields};
use super::{port_name, PortName, ServiceName, SpecError};

/// Default ClientIP affinity timeout (Kubernetes' 3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower-case, as iptables and nft spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Upper-case, as Kubernetes spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.upper())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    /// A NodePort service whose load balancer's addresses (its status'
    /// VIP-mode ingress IPs) the node also serves.
    LoadBalancer,
}

impl ServiceType {
    pub fn name(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }

    /// Has node ports (kube-proxy's NodePort and LoadBalancer types).
    pub fn node_ports(self) -> bool {
        self != ServiceType::ClusterIP
    }
}

/// Where endpoints listen: a number, or a named container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// May be empty when the service has a single port.
    pub name: PortName,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: TargetPort,
    /// Set for NodePort services (allocated by `weft service` when absent).
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: ServiceName,
    pub kind: ServiceType,
    /// `None` for a headless service (`clusterIP: None`) or one not yet
    /// allocated; the proxy programs nothing for it.
    pub cluster_ip: Option<IpAddr>,
    /// `clusterIP: None` was given explicitly.
    pub headless: bool,
    pub ports: Vec<ServicePort>,
    /// ClientIP session affinity timeout, when affinity is on.
    pub affinity_seconds: Option<u32>,
    /// `spec.externalIPs`: addresses routed to the node that it serves as
    /// the service.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` in VIP mode (kube-proxy ignores
    /// `ipMode: Proxy` ones, which the load balancer does not pass through).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges`: who may use the load balancer's IPs.
    pub source_ranges: Vec<IpNet>,
    /// `spec.healthCheckNodePort` of a LoadBalancer service with
    /// `externalTrafficPolicy: Local`, where the node answers whether it
    /// has local endpoints.
    pub health_check_node_port: Option<u16>,
    /// `externalTrafficPolicy: Local` (on a service reachable from outside:
    /// NodePort, LoadBalancer or with external IPs).
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
}

fn policy(f: &Fields, v: Option<&Value>, path: &str) -> Result<bool, SpecError> {
    match f.str(v, path)? {
        None | Some("Cluster") => Ok(false),
        Some("Local") => Ok(true),
        Some(o) => Err(f.err(path, format!("{o:?} is not Cluster or Local"))),
    }
}

/// `spec.type`.
fn service_type(f: &Fields, spec: &Map<String, Value>) -> Result<ServiceType, SpecError> {
    Ok(match f.str(spec.get("type"), "spec.type")? {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some(o) => {
            return Err(f.err(
                "spec.type",
                format!("{o:?} is not supported (ClusterIP, NodePort or LoadBalancer)"),
            ))
        }
    })
}

/// `spec.clusterIP`: the address, and whether the service is headless.
fn cluster_ip(f: &Fields, spec: &Map<String, Value>) -> Result<(Option<IpAddr>, bool), SpecError> {
    Ok(match f.str(spec.get("clusterIP"), "spec.clusterIP")? {
        None | Some("") => (None, false),
        Some("None") => (None, true),
        Some(s) => (
            Some(
                s.parse::<IpAddr>()
                    .map_err(|_| f.err("spec.clusterIP", format!("{s:?} is not an IP address")))?,
            ),
            false,
        ),
    })
}

/// `spec.ports`: names unique (required when several), port and protocol
/// pairs unique, node ports only where the type has them.
fn service_ports(
    f: &Fields,
    spec: &Map<String, Value>,
    kind: ServiceType,
    headless: bool,
) -> Result<Vec<ServicePort>, SpecError> {
    let raw_ports = f.list(spec.get("ports"), "spec.ports")?;
    if raw_ports.is_empty() && !headless {
        return Err(f.err("spec.ports", "at least one port is required"));
    }
    let mut ports: Vec<ServicePort> = Vec::with_capacity(raw_ports.len());
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, p) in raw_ports.iter().enumerate() {
        let at = |field: &str| format!("spec.ports[{i}].{field}");
        let port = service_port(f, p, i, kind)?;
        if port.name.is_empty() && raw_ports.len() > 1 {
            return Err(f.err(&at("name"), "required when a service has several ports"));
        }
        if !names.insert(port.name.clone()) {
            return Err(f.err(&at("name"), format!("{:?} is used twice", port.name)));
        }
        if !seen.insert((port.port, port.protocol)) {
            return Err(f.err(
                &at("port"),
                format!("{}/{} is used twice", port.port, port.protocol),
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// One entry of `spec.ports`.
fn service_port(
    f: &Fields,
    p: &Value,
    i: usize,
    kind: ServiceType,
) -> Result<ServicePort, SpecError> {
    let at = |field: &str| format!("spec.ports[{i}].{field}");
    f.map(p, &format!("spec.ports[{i}]"))?;
    let name = f.str(p.get("name"), &at("name"))?.unwrap_or("");
    if !name.is_empty() {
        check_dns_label(name).map_err(|m| f.err(&at("name"), m))?;
    }
    let protocol = match f.str(p.get("protocol"), &at("protocol"))? {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s)
            .ok_or_else(|| f.err(&at("protocol"), format!("{s:?} is not TCP, UDP or SCTP")))?,
    };
    let port = f
        .int(p.get("port"), &at("port"), 1, 65535)?
        .ok_or_else(|| f.err(&at("port"), "missing"))? as u16;
    let target_port = match p.get("targetPort") {
        None | Some(Value::Null) => TargetPort::Number(port),
        Some(Value::String(s)) => match s.parse::<u16>() {
            Ok(n) if n > 0 => TargetPort::Number(n),
            _ => {
                check_dns_label(s).map_err(|m| f.err(&at("targetPort"), m))?;
                TargetPort::Name(s.clone())
            }
        },
        other => TargetPort::Number(f.int(other, &at("targetPort"), 1, 65535)?.unwrap_or(0) as u16),
    };
    let node_port = f
        .int(p.get("nodePort"), &at("nodePort"), 1, 65535)?
        .map(|n| n as u16);
    if node_port.is_some() && !kind.node_ports() {
        return Err(f.err(
            &at("nodePort"),
            "only a NodePort or LoadBalancer service has node ports",
        ));
    }
    Ok(ServicePort {
        name: port_name(name),
        protocol,
        port,
        target_port,
        node_port,
    })
}

/// `spec.sessionAffinity` and its timeout.
fn affinity(f: &Fields, spec: &Map<String, Value>) -> Result<Option<u32>, SpecError> {
    match f.str(spec.get("sessionAffinity"), "spec.sessionAffinity")? {
        None | Some("None") => Ok(None),
        Some("ClientIP") => {
            let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            let t = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"));
            Ok(Some(
                f.int(t, path, 1, 86400)?
                    .unwrap_or(DEFAULT_AFFINITY_SECONDS as i64) as u32,
            ))
        }
        Some(o) => Err(f.err(
            "spec.sessionAffinity",
            format!("{o:?} is not None or ClientIP"),
        )),
    }
}

/// A list of IP addresses at `path`.
fn ip_list(f: &Fields, path: &str, v: Option<&Value>) -> Result<Vec<IpAddr>, SpecError> {
    f.list(v, path)?
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let at = format!("{path}[{i}]");
            let s = f.str(Some(a), &at)?.unwrap_or("");
            s.parse()
                .map_err(|_| f.err(&at, format!("{s:?} is not an IP address")))
        })
        .collect()
}

/// `status.loadBalancer.ingress` IPs in VIP mode (Proxy mode: the load
/// balancer delivers to the node, not to the VIP).
fn load_balancer_ips(f: &Fields, v: &Value) -> Result<Vec<IpAddr>, SpecError> {
    let mut out = Vec::new();
    let ingress = v
        .get("status")
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|l| l.get("ingress"));
    for (i, ing) in f
        .list(ingress, "status.loadBalancer.ingress")?
        .iter()
        .enumerate()
    {
        let at = |field: &str| format!("status.loadBalancer.ingress[{i}].{field}");
        let vip = match f.str(ing.get("ipMode"), &at("ipMode"))? {
            None | Some("VIP") => true,
            Some("Proxy") => false,
            Some(o) => return Err(f.err(&at("ipMode"), format!("{o:?} is not VIP or Proxy"))),
        };
        if let (true, Some(ip)) = (vip, ing.get("ip")) {
            out.extend(ip_list(f, &at("ip"), Some(&json!([ip])))?);
        }
    }
    Ok(out)
}

/// `spec.loadBalancerSourceRanges`.
fn source_ranges(f: &Fields, spec: &Map<String, Value>) -> Result<Vec<IpNet>, SpecError> {
    f.list(
        spec.get("loadBalancerSourceRanges"),
        "spec.loadBalancerSourceRanges",
    )?
    .iter()
    .enumerate()
    .map(|(i, r)| {
        let at = format!("spec.loadBalancerSourceRanges[{i}]");
        let s = f.str(Some(r), &at)?.unwrap_or("").trim();
        s.parse::<IpNet>()
            .map_err(|_| f.err(&at, format!("{s:?} is not a CIDR")))
    })
    .collect()
}

impl Service {
    /// Validates a `kind: Service` object.
    pub fn from_value(v: &Value, origin: &str) -> Result<Service, SpecError> {
        let (meta, name, namespace) = metadata(v);
        let f = Fields {
            object: if name.is_empty() {
                format!("{origin}: Service")
            } else {
                format!("Service {namespace}/{name}")
            },
        };
        f.map(meta.unwrap_or(&Value::Null), "metadata")?;
        f.str(meta.and_then(|m| m.get("name")), "metadata.name")?;
        f.str(meta.and_then(|m| m.get("namespace")), "metadata.namespace")?;
        check_dns_label(name).map_err(|m| f.err("metadata.name", m))?;
        check_dns_label(namespace).map_err(|m| f.err("metadata.namespace", m))?;
        let spec = f
            .map(v.get("spec").unwrap_or(&Value::Null), "spec")?
            .ok_or_else(|| f.err("spec", "missing"))?;
        let kind = service_type(&f, spec)?;
        let (cluster_ip, headless) = cluster_ip(&f, spec)?;
        if headless && kind.node_ports() {
            return Err(f.err(
                "spec.clusterIP",
                format!("a {} service cannot be headless", kind.name()),
            ));
        }
        let ports = service_ports(&f, spec, kind, headless)?;
        let affinity_seconds = affinity(&f, spec)?;
        let external_ips = ip_list(&f, "spec.externalIPs", spec.get("externalIPs"))?;
        let load_balancer_ips = load_balancer_ips(&f, v)?;
        let source_ranges = source_ranges(&f, spec)?;
        let external_local = policy(
            &f,
            spec.get("externalTrafficPolicy"),
            "spec.externalTrafficPolicy",
        )?;
        if external_local && !kind.node_ports() && external_ips.is_empty() {
            return Err(f.err(
                "spec.externalTrafficPolicy",
                "Local applies to services reachable from outside only (NodePort, LoadBalancer or with externalIPs)",
            ));
        }
        let health_check_node_port = match f
            .int(
                spec.get("healthCheckNodePort"),
                "spec.healthCheckNodePort",
                0,
                65535,
            )?
            .filter(|p| *p > 0)
        {
            Some(p) if kind == ServiceType::LoadBalancer && external_local => Some(p as u16),
            _ => None,
        };
        let internal_local = policy(
            &f,
            spec.get("internalTrafficPolicy"),
            "spec.internalTrafficPolicy",
        )?;
        Ok(Service {
            id: ServiceName {
                namespace: namespace.into(),
                name: name.into(),
            },
            kind,
            cluster_ip,
            headless,
            ports,
            affinity_seconds,
            external_ips,
            load_balancer_ips,
            source_ranges,
            health_check_node_port,
            external_local,
            internal_local,
        })
    }

    /// The canonical JSON stored in etcd (parses back to an equal value).
    pub fn to_value(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut o = json!({
                    "name": &*p.name,
                    "protocol": p.protocol.upper(),
                    "port": p.port,
                    "targetPort": match &p.target_port {
                        TargetPort::Number(n) => json!(n),
                        TargetPort::Name(s) => json!(s),
                    },
                });
                if let Some(np) = p.node_port {
                    o["nodePort"] = json!(np);
                }
                o
            })
            .collect();
        let mut spec = json!({
            "type": self.kind.name(),
            "ports": ports,
            "sessionAffinity": if self.affinity_seconds.is_some() { "ClientIP" } else { "None" },
            "internalTrafficPolicy": if self.internal_local { "Local" } else { "Cluster" },
        });
        match (self.cluster_ip, self.headless) {
            (Some(ip), _) => spec["clusterIP"] = json!(ip.to_string()),
            (None, true) => spec["clusterIP"] = json!("None"),
            (None, false) => {}
        }
        if let Some(t) = self.affinity_seconds {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": t}});
        }
        if self.kind.node_ports() || !self.external_ips.is_empty() {
            spec["externalTrafficPolicy"] = json!(if self.external_local {
                "Local"
            } else {
                "Cluster"
            });
        }
        fn texts<T: ToString>(items: &[T]) -> Value {
            items.iter().map(ToString::to_string).collect()
        }
        if !self.external_ips.is_empty() {
            spec["externalIPs"] = texts(&self.external_ips);
        }
        if !self.source_ranges.is_empty() {
            spec["loadBalancerSourceRanges"] = texts(&self.source_ranges);
        }
        if let Some(p) = self.health_check_node_port {
            spec["healthCheckNodePort"] = json!(p);
        }
        let mut out = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": &*self.id.name, "namespace": &*self.id.namespace},
            "spec": spec,
        });
        if !self.load_balancer_ips.is_empty() {
            let ingress: Vec<Value> = self
                .load_balancer_ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                .collect();
            out["status"] = json!({"loadBalancer": {"ingress": ingress}});
        }
        out
    }
}

//! From services and their endpoints to what the node must do for each
//! service port: the virtual IP, node port, policy and the endpoints to
//! balance over (ready ones, marked local when they run on this node).
//!
//! Pure: the renderers turn these plans into rules.

pub mod catalog;
pub mod names;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::spec::{EndpointSet, Protocol, Service, ServiceName, ServiceType, TargetPort};

/// One service port: `ns/name:port` plus protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub service: ServiceName,
    pub port_name: String,
    pub protocol: Protocol,
}

impl PortKey {
    /// kube-proxy's service port name, `ns/name:port` (port may be empty).
    pub fn svc_port_name(&self) -> String {
        format!("{}:{}", self.service, self.port_name)
    }
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.service,
            self.port_name,
            self.protocol.lower()
        )
    }
}

/// One backend of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPlan {
    pub addr: SocketAddr,
    /// Runs on this node (`nodeName` equals the proxy's node name).
    pub local: bool,
    /// Runs on another node (`nodeName` names one). An endpoint can only
    /// reach itself through a service on its own node, so it needs no
    /// hairpin masquerade here.
    pub remote: bool,
}

impl EndpointPlan {
    /// `ip:port` as kube-proxy hashes and comments it (`[ip6]:port`).
    pub fn text(&self) -> String {
        self.addr.to_string()
    }
}

/// Everything the node does for one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    pub key: PortKey,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub affinity_seconds: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    /// Ready endpoints of the cluster IP's family, sorted.
    pub endpoints: Vec<EndpointPlan>,
}

impl PortPlan {
    pub fn v6(&self) -> bool {
        self.cluster_ip.is_ipv6()
    }

    pub fn local_endpoints(&self) -> impl Iterator<Item = &EndpointPlan> {
        self.endpoints.iter().filter(|e| e.local)
    }
}

/// The port plans of one service (none for headless or unallocated ones).
pub fn plan_service(svc: &Service, eps: Option<&EndpointSet>, node: &str) -> Vec<PortPlan> {
    let Some(cluster_ip) = svc.cluster_ip else {
        return Vec::new();
    };
    svc.ports
        .iter()
        .map(|sp| {
            let port = eps.and_then(|set| {
                set.ports
                    .iter()
                    .find(|p| p.name == sp.name && p.protocol == sp.protocol)
                    .map(|p| p.port)
                    // A slice without ports: the service's numeric targetPort.
                    .or(match (&sp.target_port, set.ports.as_slice()) {
                        (TargetPort::Number(n), []) => Some(*n),
                        _ => None,
                    })
            });
            let mut endpoints: Vec<EndpointPlan> = match (eps, port) {
                (Some(set), Some(port)) => set
                    .endpoints
                    .iter()
                    .filter(|e| e.ready && e.ip.is_ipv6() == cluster_ip.is_ipv6())
                    .map(|e| EndpointPlan {
                        addr: SocketAddr::new(e.ip, port),
                        local: e.node.as_deref() == Some(node),
                        remote: e.node.as_deref().is_some_and(|n| n != node),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            endpoints.sort();
            PortPlan {
                key: PortKey {
                    service: svc.id.clone(),
                    port_name: sp.name.clone(),
                    protocol: sp.protocol,
                },
                cluster_ip,
                port: sp.port,
                node_port: if svc.kind == ServiceType::NodePort {
                    sp.node_port
                } else {
                    None
                },
                affinity_seconds: svc.affinity_seconds,
                external_local: svc.external_local,
                internal_local: svc.internal_local,
                endpoints,
            }
        })
        .collect()
}

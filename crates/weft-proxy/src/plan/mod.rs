//! From services and their endpoints to what the node must do for each
//! service port: the virtual IP, node port, policy and the endpoints to
//! balance over (ready ones, marked local when they run on this node).
//!
//! Pure: the renderers turn these plans into rules.

pub mod catalog;
pub mod conntrack;
mod endpoint_text;
pub mod names;
pub mod policy;
pub mod slices;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use self::endpoint_text::EndpointText;
use crate::spec::{port_name, PortName, Protocol, Service, ServiceName, ServiceType};

/// One service port: `ns/name:port` plus protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub service: ServiceName,
    pub port_name: PortName,
    pub protocol: Protocol,
}

impl PortKey {
    /// The least key `service` can have (ports sort by name, then
    /// protocol).
    fn first_of(service: &ServiceName) -> PortKey {
        PortKey {
            service: service.clone(),
            port_name: port_name(""),
            protocol: Protocol::Tcp,
        }
    }

    /// kube-proxy's service port name: `ns/name:port`, or `ns/name` for
    /// an unnamed port.
    pub fn svc_port_name(&self) -> String {
        if self.port_name.is_empty() {
            self.service.to_string()
        } else {
            format!("{}:{}", self.service, self.port_name)
        }
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
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl EndpointPlan {
    /// `ip:port` as kube-proxy hashes and comments it (`[ip6]:port`).
    pub fn text(&self) -> String {
        EndpointText::of(self.addr).as_str().to_string()
    }

    fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
}

/// Everything the node does for one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    pub key: PortKey,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// External IPs and load-balancer IPs of the cluster IP's family.
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    /// Load-balancer source ranges of the family (none: anyone).
    pub source_ranges: Vec<IpNet>,
    pub health_check_node_port: Option<u16>,
    pub affinity_seconds: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    /// Endpoints for the Cluster traffic policy: the ready ones, or when
    /// none is ready anywhere the serving terminating ones (kube-proxy's
    /// fallback), sorted as kube-proxy sorts them (as `ip:port` strings).
    pub endpoints: Vec<EndpointPlan>,
    /// Endpoints for the Local traffic policy: this node's ready ones, or
    /// its serving terminating ones when none is ready.
    pub local: Vec<EndpointPlan>,
    /// Some endpoint, on any node, can serve.
    pub has_endpoints: bool,
    /// Every endpoint of the port, ready or not (kube-proxy counts these
    /// to decide on its large-cluster mode).
    pub all_endpoints: usize,
    /// UDP and SCTP ports: every serving endpoint, on any node, whatever
    /// the traffic policies (flows to others are stale, see
    /// [`conntrack`]); empty for TCP.
    pub serving: Vec<SocketAddr>,
}

impl PortPlan {
    pub fn v6(&self) -> bool {
        self.cluster_ip.is_ipv6()
    }

    /// Reached from outside the cluster (node port, load balancer or
    /// external IPs).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.load_balancer_ips.is_empty()
            || !self.external_ips.is_empty()
    }

    /// Some traffic goes to endpoints on any node.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_local || self.externally_accessible()
    }

    /// Some traffic goes to this node's endpoints only.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_local || (self.external_local && self.externally_accessible())
    }

    /// Endpoints some traffic may reach from this node (each needs its
    /// endpoint chain): the Cluster ones, then Local ones not among them.
    pub fn reachable(&self) -> Vec<&EndpointPlan> {
        let mut out: Vec<&EndpointPlan> = Vec::new();
        if self.uses_cluster_endpoints() {
            out.extend(&self.endpoints);
        }
        if self.uses_local_endpoints() {
            for e in &self.local {
                if !out.iter().any(|o| o.addr == e.addr) {
                    out.push(e);
                }
            }
        }
        out
    }
}

/// A port's endpoints from all slices of its service, as kube-proxy's
/// endpoint-slice cache collects them: slices of the cluster IP's family
/// listing a port of the same name and protocol; an address in two slices
/// once (the non-terminating one wins); sorted as `ip:port` strings.
fn port_endpoints(
    slices: &[slices::Slice],
    sp: &crate::spec::ServicePort,
    v6: bool,
    node: &str,
) -> Vec<EndpointPlan> {
    let mut found: Vec<(EndpointText, EndpointPlan)> = Vec::new();
    for slices::Slice { set, .. } in slices {
        for p in set
            .ports
            .iter()
            .filter(|p| p.name == sp.name && p.protocol == sp.protocol)
        {
            for e in set.endpoints.iter().filter(|e| e.ip.is_ipv6() == v6) {
                let plan = EndpointPlan {
                    addr: SocketAddr::new(e.ip, p.port),
                    local: !node.is_empty() && e.node.as_deref() == Some(node),
                    remote: e.node.as_deref().is_some_and(|n| n != node),
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                };
                found.push((EndpointText::of(plan.addr), plan));
            }
        }
    }
    // by text, as kube-proxy; an address in several slices is the first
    // one seen unless a later one is not terminating (a stable sort keeps
    // them in the order seen)
    found.sort_by_key(|(text, _)| *text);
    let mut out: Vec<EndpointPlan> = Vec::with_capacity(found.len());
    let mut last = None;
    for (text, plan) in found {
        match out.last_mut() {
            Some(kept) if last == Some(text) => {
                if !plan.terminating {
                    *kept = plan;
                }
            }
            _ => {
                out.push(plan);
                last = Some(text);
            }
        }
    }
    out
}

/// The port plans of one service (none for headless or unallocated ones).
pub fn plan_service(svc: &Service, slices: &[slices::Slice], node: &str) -> Vec<PortPlan> {
    let Some(cluster_ip) = svc.cluster_ip else {
        return Vec::new();
    };
    let v6 = cluster_ip.is_ipv6();
    let family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter()
            .copied()
            .filter(|ip| ip.is_ipv6() == v6)
            .collect()
    };
    let mut source_ranges: Vec<IpNet> = svc
        .source_ranges
        .iter()
        .copied()
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .collect();
    // a zero-length prefix lets anyone in, as no ranges do
    if source_ranges.iter().any(|n| n.prefix_len() == 0) {
        source_ranges.clear();
    }
    svc.ports
        .iter()
        .map(|sp| {
            let all = port_endpoints(slices, sp, v6, node);
            let mut plan = PortPlan {
                key: PortKey {
                    service: svc.id.clone(),
                    port_name: sp.name.clone(),
                    protocol: sp.protocol,
                },
                cluster_ip,
                port: sp.port,
                node_port: if svc.kind.node_ports() {
                    sp.node_port
                } else {
                    None
                },
                external_ips: family(&svc.external_ips),
                load_balancer_ips: if svc.kind == ServiceType::LoadBalancer {
                    family(&svc.load_balancer_ips)
                } else {
                    Vec::new()
                },
                source_ranges: source_ranges.clone(),
                health_check_node_port: svc.health_check_node_port,
                affinity_seconds: svc.affinity_seconds,
                external_local: svc.external_local,
                internal_local: svc.internal_local,
                endpoints: Vec::new(),
                local: Vec::new(),
                has_endpoints: false,
                all_endpoints: all.len(),
                serving: if conntrack::cleaned(sp.protocol) {
                    all.iter().filter(|e| e.serving).map(|e| e.addr).collect()
                } else {
                    Vec::new()
                },
            };
            categorize(&mut plan, all);
            plan
        })
        .collect()
}

/// kube-proxy's endpoint categorisation (without topology hints): the
/// Cluster and Local endpoint lists, with the fallback to serving
/// terminating endpoints, and whether any endpoint can serve at all.
fn categorize(p: &mut PortPlan, all: Vec<EndpointPlan>) {
    if all.is_empty() {
        return;
    }
    if p.uses_cluster_endpoints() {
        p.endpoints = all.iter().filter(|e| e.ready).cloned().collect();
        if p.endpoints.is_empty() {
            p.endpoints = all
                .iter()
                .filter(|e| e.serving_terminating())
                .cloned()
                .collect();
        }
        p.has_endpoints = !p.endpoints.is_empty();
    }
    if !p.uses_local_endpoints() {
        return;
    }
    p.has_endpoints |= all.iter().any(|e| e.ready || e.serving_terminating());
    p.local = all.iter().filter(|e| e.local && e.ready).cloned().collect();
    if p.local.is_empty() {
        p.local = all
            .iter()
            .filter(|e| e.local && e.serving_terminating())
            .cloned()
            .collect();
    }
}

/// Takes the ports of `services` out of `map`: each a range of the map,
/// so a change costs its Services' ports, not a walk over the cluster's
/// (that walk was a third of the proxy's CPU under churn at 10,000
/// Services).
pub fn take_ports<V>(
    map: &mut BTreeMap<PortKey, V>,
    services: &BTreeSet<ServiceName>,
) -> BTreeMap<PortKey, V> {
    let mut taken = BTreeMap::new();
    for service in services {
        let keys: Vec<PortKey> = map
            .range(PortKey::first_of(service)..)
            .map(|(k, _)| k)
            .take_while(|k| &k.service == service)
            .cloned()
            .collect();
        for k in keys {
            if let Some(v) = map.remove(&k) {
                taken.insert(k, v);
            }
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_ports_takes_one_service_whatever_its_port_names() {
        let key = |svc: &str, port: &str, protocol| PortKey {
            service: ServiceName::parse(svc).expect("name"),
            port_name: port.into(),
            protocol,
        };
        let mut map: BTreeMap<PortKey, ()> = [
            key("a", "z", Protocol::Sctp),
            key("b", "", Protocol::Tcp),
            key("b", "", Protocol::Udp),
            key("b", "dns", Protocol::Sctp),
            key("ba", "", Protocol::Tcp),
            key("c", "", Protocol::Tcp),
        ]
        .into_iter()
        .map(|k| (k, ()))
        .collect();
        let b = ServiceName::parse("b").expect("name");
        let ports = take_ports(&mut map, &BTreeSet::from([b.clone()]));
        assert_eq!(ports.len(), 3);
        assert!(ports.keys().all(|k| k.service == b));
        assert_eq!(map.len(), 3, "the others stay");
        let none = ServiceName::parse("bb").expect("name");
        assert!(take_ports(&mut map, &BTreeSet::from([none])).is_empty());
    }
}

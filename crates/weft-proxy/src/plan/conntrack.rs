//! Which connection-tracking entries a sync leaves stale, decided as
//! kube-proxy's conntrack reconciler decides (`pkg/proxy/conntrack`,
//! v1.32+): an entry of a UDP or SCTP flow whose original destination is a
//! Service's frontend (cluster IP, external IP or load-balancer IP and its
//! port, or any address at its node port) and whose reply does not come
//! from a serving endpoint of that Service port is stale. A Service port
//! without serving endpoints is left alone, and so are TCP flows (the
//! protocol resets them itself). Traffic policies and terminating states
//! do not matter: a flow to any serving endpoint stays.
//!
//! Pure: the shell dumps the entries (filtered in the kernel by the
//! frontends these [`Frontends`] name) and deletes the stale ones.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::PortPlan;
use crate::spec::Protocol;

/// A tracked flow, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedFlow {
    pub protocol: Protocol,
    /// Where the client sent it (a Service frontend, if ours).
    pub orig_dst: SocketAddr,
    /// Who answers it: after DNAT, the endpoint.
    pub reply_src: SocketAddr,
}

/// A destination whose flows are checked: an address and port, or (node
/// ports) a port on any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub protocol: Protocol,
    pub ip: Option<IpAddr>,
    pub port: u16,
}

type Serving = Arc<BTreeSet<SocketAddr>>;

/// The frontends of some Service ports and their serving endpoints.
#[derive(Debug, Clone, Default)]
pub struct Frontends {
    ips: HashMap<(Protocol, IpAddr, u16), Serving>,
    /// (protocol, port, IPv6): a dual-stack Service's node port has one
    /// endpoint set per family.
    node_ports: HashMap<(Protocol, u16, bool), Serving>,
}

/// Whether the reconciler looks at this protocol's flows.
pub fn cleaned(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Udp | Protocol::Sctp)
}

impl Frontends {
    /// The UDP and SCTP frontends of `plans` that have serving endpoints.
    pub fn of<'a>(plans: impl IntoIterator<Item = &'a PortPlan>) -> Frontends {
        let mut f = Frontends::default();
        for p in plans {
            let protocol = p.key.protocol;
            if !cleaned(protocol) || p.serving.is_empty() {
                continue;
            }
            let serving: Serving = Arc::new(p.serving.iter().copied().collect());
            for ip in [p.cluster_ip]
                .iter()
                .chain(&p.external_ips)
                .chain(&p.load_balancer_ips)
            {
                f.ips.insert((protocol, *ip, p.port), serving.clone());
            }
            if let Some(np) = p.node_port {
                f.node_ports
                    .insert((protocol, np, p.cluster_ip.is_ipv6()), serving.clone());
            }
        }
        f
    }

    /// Adds `other`'s frontends (its endpoints win where both have one).
    pub fn extend(&mut self, other: Frontends) {
        self.ips.extend(other.ips);
        self.node_ports.extend(other.node_ports);
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.node_ports.is_empty()
    }

    /// Whether `flow` goes to one of these frontends but not to one of
    /// its serving endpoints.
    pub fn is_stale(&self, flow: &TrackedFlow) -> bool {
        let dst = flow.orig_dst;
        if let Some(serving) = self.ips.get(&(flow.protocol, dst.ip(), dst.port())) {
            return !serving.contains(&flow.reply_src);
        }
        let key = (flow.protocol, dst.port(), dst.ip().is_ipv6());
        if let Some(serving) = self.node_ports.get(&key) {
            return !serving.contains(&flow.reply_src);
        }
        false
    }

    /// The frontends of one address family, for dumps filtered to them.
    pub fn frontends(&self, ipv6: bool) -> BTreeSet<Frontend> {
        let ips = self
            .ips
            .keys()
            .filter(|(_, ip, _)| ip.is_ipv6() == ipv6)
            .map(|(protocol, ip, port)| Frontend {
                protocol: *protocol,
                ip: Some(*ip),
                port: *port,
            });
        let node_ports =
            self.node_ports
                .keys()
                .filter(|(_, _, v6)| *v6 == ipv6)
                .map(|(protocol, port, _)| Frontend {
                    protocol: *protocol,
                    ip: None,
                    port: *port,
                });
        ips.chain(node_ports).collect()
    }

    /// The protocols with frontends in one family (for a whole-table
    /// check, one dump per protocol).
    pub fn protocols(&self, ipv6: bool) -> BTreeSet<Protocol> {
        let ips = self
            .ips
            .keys()
            .filter(|(_, ip, _)| ip.is_ipv6() == ipv6)
            .map(|k| k.0);
        let node_ports = self.node_ports.keys().filter(|k| k.2 == ipv6).map(|k| k.0);
        ips.chain(node_ports).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::catalog::Catalog;
    use crate::spec::parse_documents;

    const DNS: &str = "kind: Service\nmetadata: {name: dns, namespace: kube-system}\n\
        spec: {type: NodePort, clusterIP: 10.254.0.10, externalIPs: [192.0.2.53],\n\
        ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}, {name: tcp, port: 53, protocol: TCP}]}\n---\n\
        kind: EndpointSlice\nmetadata: {name: dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}\n\
        addressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}, {name: tcp, port: 5353, protocol: TCP}]\n\
        endpoints:\n\
        - {addresses: [100.64.1.2], nodeName: n1, conditions: {ready: true}}\n\
        - {addresses: [100.64.2.2], nodeName: n2, conditions: {ready: false, serving: true, terminating: true}}\n\
        - {addresses: [100.64.3.2], nodeName: n3, conditions: {ready: false, serving: false}}\n";

    fn frontends(yaml: &str) -> Frontends {
        let mut c = Catalog::default();
        for o in parse_documents(yaml, "test").expect("valid") {
            c.put(o);
        }
        Frontends::of(&c.plan_all("n1"))
    }

    fn flow(protocol: Protocol, dst: &str, reply: &str) -> TrackedFlow {
        TrackedFlow {
            protocol,
            orig_dst: dst.parse().expect("dst"),
            reply_src: reply.parse().expect("reply"),
        }
    }

    #[test]
    fn flows_to_gone_or_unserving_endpoints_are_stale_and_serving_ones_stay() {
        let f = frontends(DNS);
        let udp = Protocol::Udp;
        // serving: ready, or terminating but still serving
        assert!(!f.is_stale(&flow(udp, "10.254.0.10:53", "100.64.1.2:5353")));
        assert!(!f.is_stale(&flow(udp, "10.254.0.10:53", "100.64.2.2:5353")));
        // not serving, gone, or never DNATed (answered by the cluster IP)
        assert!(f.is_stale(&flow(udp, "10.254.0.10:53", "100.64.3.2:5353")));
        assert!(f.is_stale(&flow(udp, "10.254.0.10:53", "100.64.9.9:5353")));
        assert!(f.is_stale(&flow(udp, "10.254.0.10:53", "10.254.0.10:53")));
        // external IP and node port on any address
        assert!(f.is_stale(&flow(udp, "192.0.2.53:53", "100.64.9.9:5353")));
        assert!(f.is_stale(&flow(udp, "198.18.0.11:30053", "100.64.9.9:5353")));
        assert!(!f.is_stale(&flow(udp, "198.18.0.11:30053", "100.64.1.2:5353")));
        // TCP, other ports and other addresses are not ours to judge
        assert!(!f.is_stale(&flow(Protocol::Tcp, "10.254.0.10:53", "100.64.9.9:5353")));
        assert!(!f.is_stale(&flow(udp, "10.254.0.10:54", "100.64.9.9:5353")));
        assert!(!f.is_stale(&flow(udp, "10.254.0.11:53", "100.64.9.9:5353")));
        let names: Vec<String> = f
            .frontends(false)
            .iter()
            .map(|x| format!("{:?} {:?}:{}", x.protocol, x.ip, x.port))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(f.protocols(false), BTreeSet::from([Protocol::Udp]));
        assert!(f.frontends(true).is_empty());
    }

    #[test]
    fn a_port_without_serving_endpoints_is_left_alone() {
        let yaml = DNS.split("---").next().expect("service only");
        let f = frontends(yaml);
        assert!(f.is_empty());
        assert!(!f.is_stale(&flow(Protocol::Udp, "10.254.0.10:53", "10.254.0.10:53")));
    }
}

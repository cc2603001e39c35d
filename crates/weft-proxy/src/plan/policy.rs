//! Every decision about a service port's traffic, made once: whether each
//! destination is served (over which endpoints), dropped or rejected,
//! what is masqueraded, and whether load-balancer traffic is filtered by
//! source. The renderers ([`crate::render`]) only write these decisions in
//! their rule language, so both modes (and anything else that needs to
//! know, such as a conntrack cleanup) read the same answer.
//!
//! Pure: kube-proxy's `syncProxyRules` logic, without the rule text.

use std::net::IpAddr;

use ipnet::IpNet;

use super::PortPlan;

/// What the node does with the packets of one kind of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Balanced over the endpoints of the Cluster traffic policy.
    Cluster,
    /// Balanced over this node's endpoints (Local traffic policy).
    Local,
    /// Local traffic policy, but no endpoint on this node: dropped.
    Drop,
    /// No endpoint anywhere: refused with ICMP port unreachable.
    Reject,
}

impl Verdict {
    /// Some endpoint receives the packets.
    pub fn serves(self) -> bool {
        matches!(self, Verdict::Cluster | Verdict::Local)
    }
}

/// How packets to the cluster IP are marked for masquerade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masquerade {
    /// `--masquerade-all`: every packet.
    All,
    /// Packets from outside the pod network (kube-proxy's local-traffic
    /// detector by cluster CIDR).
    FromOutside(IpNet),
    /// No pod network known: none.
    Never,
}

/// The node's settings that shape every port of one address family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePolicy {
    /// The pod network of the family (`--cluster-cidr`): traffic from it
    /// is the cluster's own.
    pub pods: Option<IpNet>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// This node's address of the family: a load balancer whose source
    /// ranges hold it also admits its own IPs as sources (a VIP bound on
    /// the node loops back with the VIP as source).
    pub node_ip: Option<IpAddr>,
}

/// The decisions for one service port on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    /// Packets to the cluster IP.
    pub internal: Verdict,
    /// Packets to the node port, external IPs and load-balancer IPs that
    /// come from neither the pods nor this node (those two always take
    /// the Cluster endpoints).
    pub external: Verdict,
    /// The port has external destinations and some endpoint: their
    /// packets go through an external chain (masquerade, short-circuits,
    /// then `external`).
    pub external_chain: bool,
    /// How packets to the cluster IP are marked for masquerade.
    pub masquerade: Masquerade,
    /// Load-balancer packets must come from the source ranges (the
    /// firewall chain); others are dropped.
    pub source_ranges: bool,
    /// With `source_ranges`: the load-balancer IPs themselves are
    /// admitted as sources (the node's IP is inside a range).
    pub admit_load_balancer_ips: bool,
    /// A balancing chain over the Cluster endpoints exists.
    pub cluster_chain: bool,
    /// A balancing chain over the Local endpoints exists.
    pub local_chain: bool,
}

impl NodePolicy {
    /// How packets to cluster IPs are marked for masquerade.
    pub fn masquerade(&self) -> Masquerade {
        match (self.masquerade_all, self.pods) {
            (true, _) => Masquerade::All,
            (false, Some(net)) => Masquerade::FromOutside(net.trunc()),
            (false, None) => Masquerade::Never,
        }
    }

    /// Every decision for `p` on this node.
    pub fn decide(&self, p: &PortPlan) -> PortPolicy {
        let local_or_drop = if p.local.is_empty() {
            Verdict::Drop
        } else {
            Verdict::Local
        };
        let (internal, external) = if !p.has_endpoints {
            (Verdict::Reject, Verdict::Reject)
        } else {
            (
                if p.internal_local {
                    local_or_drop
                } else {
                    Verdict::Cluster
                },
                if p.external_local {
                    local_or_drop
                } else {
                    Verdict::Cluster
                },
            )
        };
        let source_ranges =
            p.has_endpoints && !p.load_balancer_ips.is_empty() && !p.source_ranges.is_empty();
        PortPolicy {
            internal,
            external,
            external_chain: p.has_endpoints && p.externally_accessible(),
            masquerade: self.masquerade(),
            source_ranges,
            admit_load_balancer_ips: source_ranges
                && self
                    .node_ip
                    .is_some_and(|ip| p.source_ranges.iter().any(|c| c.contains(&ip))),
            cluster_chain: p.uses_cluster_endpoints() && !p.endpoints.is_empty(),
            local_chain: p.uses_local_endpoints() && !p.local.is_empty(),
        }
    }
}

impl PortPolicy {
    /// The external chain follows the Local traffic policy: packets from
    /// the pods and from this node short-circuit to the Cluster endpoints.
    pub fn external_is_local(&self) -> bool {
        matches!(self.external, Verdict::Local | Verdict::Drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::catalog::Catalog;
    use crate::spec::parse_documents;

    fn plan(yaml: &str) -> PortPlan {
        let mut c = Catalog::default();
        for o in parse_documents(yaml, "test").expect("valid") {
            c.put(o);
        }
        c.plan_all("n1").into_iter().next().expect("one port")
    }

    const LOCAL_LB: &str = "kind: Service\nmetadata: {name: s, namespace: d}\n\
        spec: {type: LoadBalancer, clusterIP: 10.0.0.1, externalTrafficPolicy: Local,\n\
        loadBalancerSourceRanges: [192.0.2.0/24], ports: [{port: 80, nodePort: 30080}]}\n\
        status: {loadBalancer: {ingress: [{ip: 198.18.5.5}]}}\n---\n\
        kind: EndpointSlice\nmetadata: {name: s-1, namespace: d, labels: {kubernetes.io/service-name: s}}\n\
        addressType: IPv4\nports: [{port: 8080}]\n\
        endpoints: [{addresses: [100.64.1.2], nodeName: n2, conditions: {ready: true}}]\n";

    #[test]
    fn local_policy_without_local_endpoints_drops_outside_traffic_only() {
        let p = plan(LOCAL_LB);
        let node = NodePolicy {
            pods: Some("100.64.0.0/10".parse().expect("net")),
            masquerade_all: false,
            node_ip: Some("192.0.2.9".parse().expect("ip")),
        };
        let d = node.decide(&p);
        assert_eq!(d.internal, Verdict::Cluster);
        assert_eq!(d.external, Verdict::Drop);
        assert!(d.external_chain && d.external_is_local());
        assert!(d.source_ranges && d.admit_load_balancer_ips);
        assert!(d.cluster_chain && !d.local_chain);
        assert_eq!(
            d.masquerade,
            Masquerade::FromOutside("100.64.0.0/10".parse().expect("net"))
        );
        let all = NodePolicy {
            masquerade_all: true,
            node_ip: Some("198.18.0.1".parse().expect("ip")),
            ..node
        };
        let d = all.decide(&p);
        assert_eq!(d.masquerade, Masquerade::All);
        assert!(!d.admit_load_balancer_ips);
    }

    #[test]
    fn no_endpoints_rejects_everything() {
        let yaml = LOCAL_LB.split("---").next().expect("service");
        let d = NodePolicy::default().decide(&plan(yaml));
        assert_eq!((d.internal, d.external), (Verdict::Reject, Verdict::Reject));
        assert!(!d.external_chain && !d.source_ranges && !d.cluster_chain);
        assert_eq!(d.masquerade, Masquerade::Never);
    }
}

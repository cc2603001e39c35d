//! The ipip backend's plan for one remote lease: a route to the subnet
//! through `flannel.ipip` with the host's public IP as an on-link
//! gateway, which the tunnel uses as the packet's outer destination.
//! With DirectRouting, a host on the local L2 network gets host-gw's
//! plain route instead (flannel's behaviour).

use std::net::IpAddr;

use ipnet::IpNet;

use super::dataplane::NextHop;
use super::desired::PeerEntries;
use super::hostgw::{direct_entries, gateway_entries, on_link, Underlay};
use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};

/// Plans ipip peers (IPv4 only, as flannel's ipip backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipPlanner {
    /// `flannel.ipip`.
    pub ifindex: u32,
    pub nexthops: bool,
    /// DirectRouting's underlay, when on.
    pub direct: Option<Underlay>,
}

impl IpipPlanner {
    pub fn entries(&self, key: &LeaseKey, attrs: &LeaseAttrs) -> Result<PeerEntries, LeaseError> {
        let bad = |field: &'static str, msg: String| LeaseError::Value {
            key: key.to_string(),
            field,
            msg,
        };
        if attrs.backend() != "ipip" {
            return Err(bad(
                "BackendType",
                format!("{:?} is not ipip; lease ignored", attrs.backend()),
            ));
        }
        let subnet = key
            .v4
            .ok_or_else(|| bad("PublicIP", "no IPv4 subnet; lease ignored".into()))?;
        let public = IpAddr::V4(attrs.public_ip);
        if let Some(underlay) = &self.direct {
            if on_link(underlay, public) {
                return direct_entries(key, attrs, underlay, self.nexthops, false);
            }
        }
        let hop = NextHop {
            gateway: public,
            oif: self.ifindex,
            onlink: true,
        };
        Ok(gateway_entries(IpNet::V4(subnet), hop, self.nexthops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::dataplane::RouteVia;

    fn lease(backend: &str, ip: &str) -> LeaseAttrs {
        LeaseAttrs::parse(
            "k",
            format!(r#"{{"PublicIP":"{ip}","BackendType":"{backend}"}}"#).as_bytes(),
        )
        .expect("lease")
    }

    fn key() -> LeaseKey {
        "172.30.5.0-24".parse().expect("key")
    }

    #[test]
    fn tunnel_route_via_the_public_ip_on_link() {
        let p = IpipPlanner {
            ifindex: 7,
            nexthops: false,
            direct: None,
        };
        let e = p
            .entries(&key(), &lease("ipip", "198.18.0.12"))
            .expect("ok");
        assert_eq!(e.route.dst.to_string(), "172.30.5.0/24");
        assert_eq!(
            e.route.via,
            RouteVia::Gateway(NextHop {
                gateway: "198.18.0.12".parse().expect("ip"),
                oif: 7,
                onlink: true
            })
        );
        assert!(e.neigh.is_none() && e.fdb.is_none());
        let e = p.entries(&key(), &lease("vxlan", "198.18.0.12"));
        assert!(e.expect_err("vxlan lease").to_string().contains("not ipip"));
    }

    #[test]
    fn direct_routing_for_hosts_on_the_l2_network() {
        let underlay = Underlay {
            ifindex: 2,
            network: "198.18.0.0/24".parse().expect("net"),
        };
        let p = IpipPlanner {
            ifindex: 7,
            nexthops: true,
            direct: Some(underlay),
        };
        let near = p
            .entries(&key(), &lease("ipip", "198.18.0.12"))
            .expect("ok");
        let far = p
            .entries(&key(), &lease("ipip", "198.19.0.12"))
            .expect("ok");
        assert_eq!(near.nexthop.map(|n| n.hop.oif), Some(2));
        assert_eq!(near.nexthop.map(|n| n.hop.onlink), Some(false));
        assert_eq!(far.nexthop.map(|n| n.hop.oif), Some(7));
        assert_eq!(far.nexthop.map(|n| n.hop.onlink), Some(true));
    }
}

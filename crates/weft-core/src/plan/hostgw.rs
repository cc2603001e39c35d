//! The host-gw backend's plan for one remote lease: a route to the subnet
//! via the host's public IP on the underlay interface. It needs L2
//! adjacency: a remote outside the underlay's own network is refused (a
//! route through a gateway would black-hole the traffic).
//!
//! vxlan's DirectRouting uses the same direct route for remotes on the
//! local L2 network.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::dataplane::{NextHop, NexthopSpec, RouteSpec, RouteVia};
use super::desired::PeerEntries;
use super::vxlan::nexthop_id;
use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};

/// The underlay interface and its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub network: Ipv4Net,
}

/// Plans host-gw peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostGwPlanner {
    pub underlay: Underlay,
    pub nexthops: bool,
}

impl HostGwPlanner {
    pub fn entries(&self, key: &LeaseKey, attrs: &LeaseAttrs) -> Result<PeerEntries, LeaseError> {
        if attrs.backend() != "host-gw" {
            return Err(LeaseError::Value {
                key: key.to_string(),
                field: "BackendType",
                msg: format!("{:?} is not host-gw; lease ignored", attrs.backend()),
            });
        }
        direct_entries(key, attrs, &self.underlay, self.nexthops)
    }
}

/// A direct route to the lease's subnet via its public IP, if that IP is on
/// the underlay's L2 network.
pub fn direct_entries(
    key: &LeaseKey,
    attrs: &LeaseAttrs,
    underlay: &Underlay,
    nexthops: bool,
) -> Result<PeerEntries, LeaseError> {
    let bad = |field: &'static str, msg: String| LeaseError::Value {
        key: key.to_string(),
        field,
        msg,
    };
    let subnet = key
        .v4
        .ok_or_else(|| bad("(key)", "no IPv4 subnet".into()))?;
    if !on_link(underlay, attrs) {
        return Err(bad(
            "PublicIP",
            format!(
                "{} is not on this host's L2 network {}: host-gw needs every host on one L2 segment; lease ignored",
                attrs.public_ip, underlay.network
            ),
        ));
    }
    let hop = NextHop {
        gateway: IpAddr::V4(attrs.public_ip),
        oif: underlay.ifindex,
        onlink: false,
    };
    let nexthop = nexthops.then(|| NexthopSpec {
        id: nexthop_id(subnet),
        hop,
    });
    Ok(PeerEntries {
        route: RouteSpec {
            dst: IpNet::V4(subnet),
            via: match nexthop {
                Some(n) => RouteVia::Nexthop(n.id),
                None => RouteVia::Gateway(hop),
            },
        },
        nexthop,
        neigh: None,
        fdb: None,
    })
}

/// Whether the lease's public IP is directly reachable on the underlay.
pub fn on_link(underlay: &Underlay, attrs: &LeaseAttrs) -> bool {
    underlay.network.contains(&attrs.public_ip) && !attrs.public_ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(json: &str) -> LeaseAttrs {
        LeaseAttrs::parse("k", json.as_bytes()).expect("attrs")
    }

    fn planner() -> HostGwPlanner {
        HostGwPlanner {
            underlay: Underlay {
                ifindex: 2,
                network: "198.18.0.0/24".parse().expect("net"),
            },
            nexthops: false,
        }
    }

    #[test]
    fn route_via_the_public_ip_on_the_underlay() {
        let key: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let e = planner()
            .entries(
                &key,
                &attrs(r#"{"PublicIP":"198.18.0.12","PublicIPv6":null,"BackendType":"host-gw"}"#),
            )
            .expect("entries");
        assert_eq!(
            e.route.via,
            RouteVia::Gateway(NextHop {
                gateway: "198.18.0.12".parse().expect("ip"),
                oif: 2,
                onlink: false
            })
        );
        assert!(e.neigh.is_none() && e.fdb.is_none() && e.nexthop.is_none());
        let with_nh = HostGwPlanner {
            nexthops: true,
            ..planner()
        }
        .entries(
            &key,
            &attrs(r#"{"PublicIP":"198.18.0.12","BackendType":"host-gw"}"#),
        )
        .expect("entries");
        assert_eq!(
            with_nh.route.via,
            RouteVia::Nexthop(nexthop_id("172.30.14.0/24".parse().expect("net")))
        );
    }

    #[test]
    fn remote_off_the_l2_network_is_refused_by_name() {
        let key: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let e = planner()
            .entries(
                &key,
                &attrs(r#"{"PublicIP":"192.0.2.12","BackendType":"host-gw"}"#),
            )
            .expect_err("not adjacent");
        assert!(
            e.to_string()
                .contains("192.0.2.12 is not on this host's L2 network 198.18.0.0/24"),
            "{e}"
        );
        let vx = planner().entries(
            &key,
            &attrs(r#"{"PublicIP":"198.18.0.12","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:01"}}"#),
        );
        assert!(vx.is_err(), "other backends' leases are ignored");
    }
}

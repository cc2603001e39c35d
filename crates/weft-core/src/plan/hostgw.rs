//! The host-gw backend's plan for one remote lease: a route to the subnet
//! via the host's public IP on the underlay interface. It needs L2
//! adjacency: a remote outside the underlay's own network is refused (a
//! route through a gateway would black-hole the traffic).
//!
//! vxlan's DirectRouting uses the same direct route for remotes on the
//! local L2 network.

use std::net::IpAddr;

use ipnet::IpNet;

use super::dataplane::nexthop_id;
use super::dataplane::{NextHop, NexthopSpec, RouteSpec, RouteVia};
use super::desired::PeerEntries;
use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};

/// The underlay interface and its network (of the family being planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub network: IpNet,
}

/// Plans host-gw peers of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostGwPlanner {
    pub underlay: Underlay,
    pub nexthops: bool,
    /// Plan the lease's IPv6 subnet (via PublicIPv6) instead of its IPv4 one.
    pub v6: bool,
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
        direct_entries(key, attrs, &self.underlay, self.nexthops, self.v6)
    }
}

/// The lease's subnet and public address of one family.
pub fn family_of(key: &LeaseKey, attrs: &LeaseAttrs, v6: bool) -> Option<(IpNet, IpAddr)> {
    if v6 {
        Some((IpNet::V6(key.v6?), IpAddr::V6(attrs.public_ipv6?)))
    } else {
        Some((IpNet::V4(key.v4?), IpAddr::V4(attrs.public_ip)))
    }
}

/// A direct route to the lease's subnet via its public IP, if that IP is on
/// the underlay's L2 network.
pub fn direct_entries(
    key: &LeaseKey,
    attrs: &LeaseAttrs,
    underlay: &Underlay,
    nexthops: bool,
    v6: bool,
) -> Result<PeerEntries, LeaseError> {
    let bad = |field: &'static str, msg: String| LeaseError::Value {
        key: key.to_string(),
        field,
        msg,
    };
    let (field, family) = if v6 {
        ("PublicIPv6", "IPv6")
    } else {
        ("PublicIP", "IPv4")
    };
    let (subnet, public) = family_of(key, attrs, v6).ok_or_else(|| {
        bad(
            field,
            format!("no {family} subnet or address; lease ignored"),
        )
    })?;
    if !on_link(underlay, public) {
        return Err(bad(
            field,
            format!(
                "{public} is not on this host's L2 network {}: host-gw needs every host on one L2 segment; lease ignored",
                underlay.network
            ),
        ));
    }
    let hop = NextHop {
        gateway: public,
        oif: underlay.ifindex,
        onlink: false,
    };
    Ok(gateway_entries(subnet, hop, nexthops))
}

/// A route to `subnet` through `hop`: by a nexthop object when the kernel
/// has them (IPv4), else by a plain gateway.
pub fn gateway_entries(subnet: IpNet, hop: NextHop, nexthops: bool) -> PeerEntries {
    let nexthop = match subnet {
        IpNet::V4(s) if nexthops => Some(NexthopSpec {
            id: nexthop_id(s),
            hop,
        }),
        _ => None,
    };
    PeerEntries {
        route: RouteSpec {
            dst: subnet,
            via: match nexthop {
                Some(n) => RouteVia::Nexthop(n.id),
                None => RouteVia::Gateway(hop),
            },
        },
        nexthop,
        neigh: None,
        fdb: None,
    }
}

/// Whether a public IP is directly reachable on the underlay.
pub fn on_link(underlay: &Underlay, public: IpAddr) -> bool {
    underlay.network.contains(&public) && !public.is_unspecified()
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
            v6: false,
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

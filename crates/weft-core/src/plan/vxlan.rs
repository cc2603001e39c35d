//! The vxlan backend's plan for one remote lease: an onlink route to the
//! subnet via its `.0` VTEP address, a permanent neighbour mapping that
//! address to the VTEP MAC, and an FDB entry sending that MAC to the
//! host's public IP. Where the kernel has nexthop objects, the route's
//! gateway lives in a nexthop object whose id is derived from the subnet.

use ipnet::IpNet;

use super::dataplane::{nexthop_id, FdbSpec, NeighSpec, NextHop, NexthopSpec, RouteSpec, RouteVia};
use super::desired::PeerEntries;
use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};

/// The local facts the vxlan plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanPlanner {
    /// Index of the `flannel.<VNI>` device.
    pub ifindex: u32,
    /// Route through nexthop objects (kernel 5.3+) instead of plain gateways.
    pub nexthops: bool,
    /// DirectRouting: remotes on this L2 network get a direct route.
    pub direct: Option<super::hostgw::Underlay>,
    /// Plan the lease's IPv6 subnet (PublicIPv6, BackendV6Data) on
    /// `flannel-v6.<VNI>` instead of its IPv4 one.
    pub v6: bool,
}

impl VxlanPlanner {
    /// Kernel entries for a remote IPv4 lease, or why the lease is unusable.
    pub fn entries(&self, key: &LeaseKey, attrs: &LeaseAttrs) -> Result<PeerEntries, LeaseError> {
        let key_str = key.to_string();
        let bad = |field: &'static str, msg: String| LeaseError::Value {
            key: key_str.clone(),
            field,
            msg,
        };
        if attrs.backend() != "vxlan" {
            return Err(bad(
                "BackendType",
                format!("{:?} is not vxlan; lease ignored", attrs.backend()),
            ));
        }
        let (field, family) = if self.v6 {
            ("PublicIPv6", "IPv6")
        } else {
            ("PublicIP", "IPv4")
        };
        let (subnet, public) = super::hostgw::family_of(key, attrs, self.v6).ok_or_else(|| {
            bad(
                field,
                format!("no {family} subnet or address; lease ignored"),
            )
        })?;
        if public.is_unspecified() {
            return Err(bad(field, format!("{public} cannot be a VTEP")));
        }
        if let Some(underlay) = &self.direct {
            if super::hostgw::on_link(underlay, public) {
                return super::hostgw::direct_entries(key, attrs, underlay, self.nexthops, self.v6);
            }
        }
        let data = attrs.vxlan_data(&key_str, self.v6)?;
        let gateway = subnet.network();
        let hop = NextHop {
            gateway,
            oif: self.ifindex,
            onlink: true,
        };
        let nexthop = match subnet {
            IpNet::V4(s) if self.nexthops => Some(NexthopSpec {
                id: nexthop_id(s),
                hop,
            }),
            _ => None,
        };
        let via = match nexthop {
            Some(n) => RouteVia::Nexthop(n.id),
            None => RouteVia::Gateway(hop),
        };
        Ok(PeerEntries {
            route: RouteSpec { dst: subnet, via },
            nexthop,
            neigh: Some(NeighSpec {
                ifindex: self.ifindex,
                ip: gateway,
                mac: data.vtep_mac,
            }),
            fdb: Some(FdbSpec {
                ifindex: self.ifindex,
                mac: data.vtep_mac,
                dst: public,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_lease_becomes_route_neigh_fdb() {
        let key: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let attrs = LeaseAttrs::parse(
            "k",
            br#"{"PublicIP":"172.20.0.114","BackendType":"vxlan","BackendData":{"VtepMAC":"56:27:7d:1c:08:22"}}"#,
        )
        .expect("attrs");
        let e = VxlanPlanner {
            ifindex: 7,
            nexthops: false,
            direct: None,
            v6: false,
        }
        .entries(&key, &attrs)
        .expect("entries");
        assert_eq!(e.route.dst.to_string(), "172.30.14.0/24");
        let RouteVia::Gateway(hop) = e.route.via else {
            panic!("{:?}", e.route)
        };
        assert_eq!(hop.gateway.to_string(), "172.30.14.0");
        assert!(hop.onlink);
        assert_eq!(hop.oif, 7);
        assert!(e.nexthop.is_none());
        let n = VxlanPlanner {
            ifindex: 7,
            nexthops: true,
            direct: None,
            v6: false,
        }
        .entries(&key, &attrs)
        .expect("entries");
        let nh = n.nexthop.expect("nexthop object");
        assert_eq!(n.route.via, RouteVia::Nexthop(nh.id));
        assert_eq!(nh.id, 0xac1e_0e00, "derived from 172.30.14.0");
        assert_eq!(nh.hop, hop);
        let n = e.neigh.expect("neigh");
        assert_eq!(
            (n.ip.to_string(), n.mac.to_string()),
            ("172.30.14.0".into(), "56:27:7d:1c:08:22".into())
        );
        let f = e.fdb.expect("fdb");
        assert_eq!(f.dst.to_string(), "172.20.0.114");
    }

    #[test]
    fn other_backends_and_broken_leases_are_refused() {
        let key: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let p = VxlanPlanner {
            ifindex: 7,
            nexthops: true,
            direct: None,
            v6: false,
        };
        for json in [
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}"#,
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#,
            r#"{"PublicIP":"192.0.2.1","BackendType":"vxlan"}"#,
            r#"{"PublicIP":"0.0.0.0","BackendType":"vxlan","BackendData":{"VtepMAC":"56:27:7d:1c:08:22"}}"#,
        ] {
            let attrs = LeaseAttrs::parse("k", json.as_bytes()).expect("attrs");
            assert!(p.entries(&key, &attrs).is_err(), "{json}");
        }
    }
}

#[cfg(test)]
mod direct_routing_tests {
    use super::*;
    use crate::plan::hostgw::Underlay;

    #[test]
    fn same_l2_remotes_get_direct_routes_others_vxlan() {
        let p = VxlanPlanner {
            ifindex: 7,
            nexthops: false,
            direct: Some(Underlay {
                ifindex: 2,
                network: "198.18.0.0/24".parse().expect("net"),
            }),
            v6: false,
        };
        let key: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let near = LeaseAttrs::parse("k", br#"{"PublicIP":"198.18.0.12","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:01"}}"#).expect("a");
        let far = LeaseAttrs::parse("k", br#"{"PublicIP":"192.0.2.12","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:01"}}"#).expect("a");
        let e = p.entries(&key, &near).expect("near");
        assert!(e.fdb.is_none() && e.neigh.is_none());
        assert!(matches!(e.route.via, RouteVia::Gateway(h) if h.oif == 2));
        let e = p.entries(&key, &far).expect("far");
        assert!(e.fdb.is_some() && e.neigh.is_some());
        assert!(matches!(e.route.via, RouteVia::Gateway(h) if h.oif == 7 && h.onlink));
    }
}

#[cfg(test)]
mod v6_tests {
    use super::*;

    #[test]
    fn dual_stack_lease_planned_per_family() {
        let key: LeaseKey = "172.30.14.0-24&2001:db8:f:e::-64".parse().expect("key");
        let attrs = LeaseAttrs::parse(
            "k",
            br#"{"PublicIP":"198.18.0.12","PublicIPv6":"2001:db8:198::12","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:04"},"BackendV6Data":{"VNI":1,"VtepMAC":"02:00:00:00:00:06"}}"#,
        )
        .expect("attrs");
        let v6 = VxlanPlanner {
            ifindex: 9,
            nexthops: true,
            direct: None,
            v6: true,
        };
        let e = v6.entries(&key, &attrs).expect("v6 entries");
        assert_eq!(e.route.dst.to_string(), "2001:db8:f:e::/64");
        assert!(e.nexthop.is_none(), "IPv6 routes use plain gateways");
        let RouteVia::Gateway(hop) = e.route.via else {
            panic!("gateway route")
        };
        assert_eq!(hop.gateway.to_string(), "2001:db8:f:e::");
        assert_eq!(e.neigh.expect("neigh").mac.to_string(), "02:00:00:00:00:06");
        assert_eq!(e.fdb.expect("fdb").dst.to_string(), "2001:db8:198::12");
        let v4only: LeaseKey = "172.30.14.0-24".parse().expect("key");
        let err = v6.entries(&v4only, &attrs).expect_err("no v6 subnet");
        assert!(err.to_string().contains("PublicIPv6"), "{err}");
    }
}

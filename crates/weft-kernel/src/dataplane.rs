//! Reading and writing the routes, neighbours and FDB entries weft owns.

use std::collections::HashSet;

use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

use ipnet::IpNet;
use weft_core::plan::{DataPlane, NexthopSpec, Op, RouteSpec, RouteVia};

use crate::error::KernelError;
use crate::messages::{op_request, parse_fdb, parse_neigh, parse_route};
use crate::netlink::Netlink;

/// Which kernel entries belong to weft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Devices weft's routes (and nexthop objects) go out of.
    pub route_devices: Vec<u32>,
    /// Devices whose permanent neighbours and FDB entries are weft's.
    pub l2_devices: Vec<u32>,
    /// Only routes to destinations inside these networks are weft's (needed
    /// when routes share the underlay device with the host's own routes);
    /// empty = any destination.
    pub networks: Vec<IpNet>,
    /// Destinations never weft's (the host's own subnets).
    pub exclude: Vec<IpNet>,
}

impl Ownership {
    /// Everything on one device (a device weft created).
    pub fn device(index: u32) -> Ownership {
        Ownership {
            route_devices: vec![index],
            l2_devices: vec![index],
            networks: Vec::new(),
            exclude: Vec::new(),
        }
    }

    fn owns_dst(&self, dst: &IpNet) -> bool {
        (self.networks.is_empty() || self.networks.iter().any(|n| n.contains(dst)))
            && !self.exclude.contains(dst)
    }

    fn owns_nexthop_id(&self, id: u32) -> bool {
        // ids are IPv4 subnet addresses (see weft_core::plan::dataplane::nexthop_id)
        let as_addr = IpAddr::V4(std::net::Ipv4Addr::from(id));
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&as_addr))
    }
}

/// Reads what the kernel holds that `own` says is weft's: main-table
/// routes, nexthop objects, permanent neighbours and FDB entries.
pub fn read_dataplane(nl: &mut Netlink, own: &Ownership) -> Result<DataPlane, KernelError> {
    let devices: HashSet<u32> = own.route_devices.iter().copied().collect();
    let l2: HashSet<u32> = own.l2_devices.iter().copied().collect();
    let mut plane = DataPlane::default();
    // One dump; a kernel without nexthop objects refuses it, which means
    // there are none of weft's to find.
    let nexthops = nl.dump_raw(
        crate::nexthop::RTM_GETNEXTHOP,
        &crate::nexthop::dump_payload(),
        "dumping nexthops",
        |m| {
            let ours = |n: &NexthopSpec| devices.contains(&n.hop.oif) && own.owns_nexthop_id(n.id);
            if let Some(n) = crate::nexthop::parse(&m).filter(ours) {
                plane.nexthops.insert(n.id, n);
            }
        },
    );
    if let Err(e) = nexthops {
        if !matches!(e.errno(), Some(EOPNOTSUPP | EINVAL)) {
            return Err(e);
        }
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut q = RouteMessage::default();
        q.header.address_family = family;
        nl.dump_each(RouteNetlinkMessage::GetRoute(q), "dumping routes", |m| {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                let ours = |s: &RouteSpec| {
                    own.owns_dst(&s.dst)
                        && match s.via {
                            RouteVia::Gateway(hop) => devices.contains(&hop.oif),
                            RouteVia::Nexthop(id) => plane.nexthops.contains_key(&id),
                        }
                };
                if let Some(spec) = parse_route(&r).filter(ours) {
                    plane.routes.insert(spec.dst, spec);
                }
            }
        })?;
    }
    for family in [
        AddressFamily::Inet,
        AddressFamily::Inet6,
        AddressFamily::Bridge,
    ] {
        let mut q = NeighbourMessage::default();
        q.header.family = family;
        nl.dump_each(
            RouteNetlinkMessage::GetNeighbour(q),
            "dumping neighbours",
            |m| {
                let RouteNetlinkMessage::NewNeighbour(n) = m else {
                    return;
                };
                if !l2.contains(&n.header.ifindex) {
                    return;
                }
                if let Some(f) = parse_fdb(&n) {
                    plane.fdb.insert((f.ifindex, f.mac), f);
                } else if let Some(s) = parse_neigh(&n) {
                    plane.neighs.insert((s.ifindex, s.ip), s);
                }
            },
        )?;
    }
    Ok(plane)
}

/// Every main-table unicast route (IPv4 and IPv6) not added by the kernel.
pub fn main_table_routes(nl: &mut Netlink) -> Result<Vec<RouteSpec>, KernelError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut q = RouteMessage::default();
        q.header.address_family = family;
        nl.dump_each(RouteNetlinkMessage::GetRoute(q), "dumping routes", |m| {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                out.extend(parse_route(&r));
            }
        })?;
    }
    Ok(out)
}

/// What happened to a list of operations.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Operations the kernel carried out (or that were already true).
    pub applied: usize,
    /// Operations the kernel refused, with its reason.
    pub failed: Vec<(Op, std::io::Error)>,
}

/// Carries out `ops` in order, batched. Deleting something already gone
/// counts as done.
pub fn apply(nl: &mut Netlink, ops: &[Op]) -> Result<ApplyReport, KernelError> {
    let failures = nl.batch(ops.iter().map(op_request))?;
    let mut report = ApplyReport {
        applied: ops.len(),
        failed: Vec::new(),
    };
    for (i, e) in failures {
        let Some(op) = ops.get(i) else { continue };
        if !(is_delete(op) && already_gone(&e)) {
            report.applied -= 1;
            report.failed.push((*op, e));
        }
    }
    Ok(report)
}

/// Whether the kernel has nexthop objects (Linux 5.3+).
pub fn supports_nexthops(nl: &mut Netlink) -> bool {
    nl.dump_raw(
        crate::nexthop::RTM_GETNEXTHOP,
        &crate::nexthop::dump_payload(),
        "probing for nexthop objects",
        |_| {},
    )
    .is_ok()
}

fn is_delete(op: &Op) -> bool {
    matches!(
        op,
        Op::DeleteRoute(_) | Op::DeleteNexthop(_) | Op::DeleteNeigh(_) | Op::DeleteFdb(_)
    )
}

fn already_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::ENOENT) | Some(libc_errno::ESRCH)
    )
}

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
}

/// errno values of a kernel without nexthop objects.
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

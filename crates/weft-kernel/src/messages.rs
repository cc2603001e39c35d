//! Translation between weft's plan types and rtnetlink messages.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_core::plan::{FdbSpec, NeighSpec, NextHop, Op, RouteSpec, RouteVia};
use weft_core::MacAddr;

use crate::netlink::Request;

pub(crate) fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A main-table route to `dst` of `kind` and `scope`, with no next hop
/// yet: what every route weft writes starts as.
pub(crate) fn route_to(dst: IpNet, scope: RouteScope, kind: RouteType) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family_of(&dst.addr());
    m.header.destination_prefix_length = dst.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    // What `ip route` and flannel's netlink library use by default.
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = scope;
    m.header.kind = kind;
    m.attributes = vec![RouteAttribute::Destination(RouteAddress::from(
        dst.network(),
    ))];
    m
}

pub(crate) fn route_message(r: &RouteSpec) -> RouteMessage {
    let mut m = route_to(r.dst, RouteScope::Universe, RouteType::Unicast);
    match r.via {
        RouteVia::Gateway(hop) => {
            if hop.onlink {
                m.header.flags = RouteFlags::Onlink;
            }
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
            m.attributes.push(RouteAttribute::Oif(hop.oif));
        }
        RouteVia::Nexthop(id) => m.attributes.push(RouteAttribute::NhId(id)),
    }
    m
}

/// A route deletion. For a nexthop-object route the destination alone
/// names it: the kernel checks a given nexthop id before the route, so a
/// second deletion would fail with EINVAL rather than "no such route".
pub(crate) fn route_delete_message(r: &RouteSpec) -> RouteMessage {
    let mut m = route_message(r);
    if let RouteVia::Nexthop(_) = r.via {
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::NhId(_)));
    }
    m
}

pub(crate) fn neigh_message(n: &NeighSpec) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family_of(&n.ip);
    m.header.ifindex = n.ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes = vec![
        NeighbourAttribute::Destination(neigh_addr(n.ip)),
        NeighbourAttribute::LinkLayerAddress(n.mac.octets().to_vec()),
    ];
    m
}

pub(crate) fn fdb_message(f: &FdbSpec) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = f.ifindex;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(f.mac.octets().to_vec()),
        NeighbourAttribute::Destination(neigh_addr(f.dst)),
    ];
    m
}

fn neigh_addr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

const SET: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// The netlink request that carries out one plan operation.
pub(crate) fn op_request(op: &Op) -> Request {
    use RouteNetlinkMessage as M;
    match op {
        Op::ReplaceRoute(r) => Request::Route(M::NewRoute(route_message(r)), SET),
        Op::DeleteRoute(r) => Request::Route(M::DelRoute(route_delete_message(r)), 0),
        Op::ReplaceNexthop(n) => crate::nexthop::replace_request(n),
        Op::DeleteNexthop(n) => crate::nexthop::delete_request(n.id),
        Op::ReplaceNeigh(n) => Request::Route(M::NewNeighbour(neigh_message(n)), SET),
        Op::DeleteNeigh(n) => Request::Route(M::DelNeighbour(neigh_message(n)), 0),
        Op::ReplaceFdb(f) => Request::Route(M::NewNeighbour(fdb_message(f)), SET),
        Op::DeleteFdb(f) => Request::Route(M::DelNeighbour(fdb_message(f)), 0),
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// A route as weft models it, if the message is a unicast main-table route
/// that was not added by the kernel itself.
pub(crate) fn parse_route(m: &RouteMessage) -> Option<RouteSpec> {
    let h = &m.header;
    let mut table = h.table as u32;
    let (mut dst, mut gateway, mut oif, mut nh_id) = (None, None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::NhId(id) => nh_id = Some(*id),
            _ => {}
        }
    }
    if table != RouteHeader::RT_TABLE_MAIN as u32
        || h.kind != RouteType::Unicast
        || h.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let dst = IpNet::new(dst?, h.destination_prefix_length).ok()?;
    // A nexthop-object route: the id is what identifies it (dumps may
    // also echo the nexthop's gateway for old tools).
    let via = match nh_id {
        Some(id) => RouteVia::Nexthop(id),
        None => RouteVia::Gateway(NextHop {
            gateway: gateway?,
            oif: oif?,
            onlink: h.flags.contains(RouteFlags::Onlink),
        }),
    };
    Some(RouteSpec { dst, via })
}

fn neigh_fields(m: &NeighbourMessage) -> (Option<IpAddr>, Option<MacAddr>) {
    let (mut ip, mut mac) = (None, None);
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(IpAddr::V4(*v)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                ip = Some(IpAddr::V6(*v))
            }
            // For AF_BRIDGE (FDB) dumps the address family of the
            // destination is not known to the decoder: raw bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                ip = match b.len() {
                    4 => <[u8; 4]>::try_from(&b[..]).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(&b[..]).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            NeighbourAttribute::LinkLayerAddress(b) => mac = MacAddr::from_slice(b),
            _ => {}
        }
    }
    (ip, mac)
}

/// NUD_PERMANENT; vxlan reports its FDB entries as PERMANENT|NOARP.
const NUD_PERMANENT: u16 = 0x80;

fn is_permanent(state: NeighbourState) -> bool {
    u16::from(state) & NUD_PERMANENT != 0
}

/// A permanent IP neighbour entry.
pub(crate) fn parse_neigh(m: &NeighbourMessage) -> Option<NeighSpec> {
    if m.header.family == AddressFamily::Bridge || !is_permanent(m.header.state) {
        return None;
    }
    let (ip, mac) = neigh_fields(m);
    Some(NeighSpec {
        ifindex: m.header.ifindex,
        ip: ip?,
        mac: mac?,
    })
}

/// A permanent `self` FDB entry with a remote destination.
pub(crate) fn parse_fdb(m: &NeighbourMessage) -> Option<FdbSpec> {
    if m.header.family != AddressFamily::Bridge
        || !is_permanent(m.header.state)
        || !m.header.flags.contains(NeighbourFlags::Own)
    {
        return None;
    }
    let (dst, mac) = neigh_fields(m);
    Some(FdbSpec {
        ifindex: m.header.ifindex,
        mac: mac?,
        dst: dst?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_round_trips_through_the_message_form() {
        let r = RouteSpec {
            dst: "172.30.14.0/24".parse().expect("net"),
            via: RouteVia::Gateway(NextHop {
                gateway: "172.30.14.0".parse().expect("ip"),
                oif: 9,
                onlink: true,
            }),
        };
        assert_eq!(parse_route(&route_message(&r)), Some(r));
        let n = RouteSpec {
            dst: "172.30.14.0/24".parse().expect("net"),
            via: RouteVia::Nexthop(77),
        };
        assert_eq!(parse_route(&route_message(&n)), Some(n));
    }

    #[test]
    fn neigh_and_fdb_round_trip() {
        let mac: MacAddr = "56:27:7d:1c:08:22".parse().expect("mac");
        let n = NeighSpec {
            ifindex: 9,
            ip: "172.30.14.0".parse().expect("ip"),
            mac,
        };
        assert_eq!(parse_neigh(&neigh_message(&n)), Some(n));
        assert_eq!(parse_fdb(&neigh_message(&n)), None);
        let f = FdbSpec {
            ifindex: 9,
            mac,
            dst: "198.18.0.11".parse().expect("ip"),
        };
        assert_eq!(parse_fdb(&fdb_message(&f)), Some(f));
        assert_eq!(parse_neigh(&fdb_message(&f)), None);
        // as vxlan dumps it: PERMANENT|NOARP, destination as raw bytes
        let mut dumped = fdb_message(&f);
        dumped.header.state = NeighbourState::Other(0xc0);
        dumped.attributes[1] =
            NeighbourAttribute::Destination(NeighbourAddress::Other(vec![198, 18, 0, 11]));
        assert_eq!(parse_fdb(&dumped), Some(f));
    }

    #[test]
    fn kernel_routes_are_not_ours() {
        let r = RouteSpec {
            dst: "172.30.14.0/24".parse().expect("net"),
            via: RouteVia::Gateway(NextHop {
                gateway: "172.30.14.0".parse().expect("ip"),
                oif: 9,
                onlink: false,
            }),
        };
        let mut m = route_message(&r);
        m.header.protocol = RouteProtocol::Kernel;
        assert_eq!(parse_route(&m), None);
        let mut m = route_message(&r);
        m.header.table = 100;
        assert_eq!(parse_route(&m), None);
    }
}

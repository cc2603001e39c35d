//! Discovering the host's interfaces, for choosing the underlay.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::KernelError;
use crate::link::list_links;
use crate::netlink::Netlink;

/// An interface with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    pub addrs: Vec<IpNet>,
}

/// Every interface with its IPv4 and IPv6 addresses.
pub fn list_interfaces(nl: &mut Netlink) -> Result<Vec<Interface>, KernelError> {
    let mut ifaces: Vec<Interface> = list_links(nl)?
        .into_iter()
        .map(|l| Interface {
            index: l.index,
            name: l.name,
            mtu: l.mtu,
            up: l.up,
            addrs: Vec::new(),
        })
        .collect();
    let replies = nl.dump(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        "dumping addresses",
    )?;
    for m in replies {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let ip = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let ip = ip.or_else(|| {
            a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let (Some(ip), Some(iface)) = (ip, ifaces.iter_mut().find(|i| i.index == a.header.index))
        {
            if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                iface.addrs.push(net);
            }
        }
    }
    Ok(ifaces)
}

/// The output interface of the main table's default route (lowest metric).
pub fn default_route_oif(nl: &mut Netlink, v6: bool) -> Result<Option<u32>, KernelError> {
    let mut q = RouteMessage::default();
    q.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let mut best: Option<(u32, u32)> = None; // (metric, oif)
    for m in nl.dump(RouteNetlinkMessage::GetRoute(q), "dumping routes")? {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        if r.header.destination_prefix_length != 0 || r.header.table != RouteHeader::RT_TABLE_MAIN {
            continue;
        }
        let mut oif = None;
        let mut metric = 0;
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Priority(p) => metric = *p,
                _ => {}
            }
        }
        if let Some(oif) = oif {
            if best.is_none_or(|(m, _)| metric < m) {
                best = Some((metric, oif));
            }
        }
    }
    Ok(best.map(|(_, oif)| oif))
}

/// The interface (and preferred source address) the kernel would use to reach `dst`.
pub fn route_get_oif(
    nl: &mut Netlink,
    dst: IpAddr,
) -> Result<Option<(u32, Option<IpAddr>)>, KernelError> {
    let mut q = RouteMessage::default();
    q.header.address_family = crate::messages::family_of(&dst);
    q.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    q.attributes = vec![RouteAttribute::Destination(RouteAddress::from(dst))];
    for m in nl.query(
        RouteNetlinkMessage::GetRoute(q),
        &format!("looking up the route to {dst}"),
    )? {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        let mut oif = None;
        let mut src = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::PrefSource(RouteAddress::Inet(v)) => src = Some(IpAddr::V4(*v)),
                RouteAttribute::PrefSource(RouteAddress::Inet6(v)) => src = Some(IpAddr::V6(*v)),
                _ => {}
            }
        }
        if let Some(oif) = oif {
            return Ok(Some((oif, src)));
        }
    }
    Ok(None)
}

//! Network devices: reading links, the vxlan device, its address and state.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use weft_core::MacAddr;

use crate::error::KernelError;
use crate::messages::{family_of, route_to};
use crate::netlink::Netlink;

/// A device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Option<MacAddr>,
    pub up: bool,
    pub kind: Option<String>,
    pub vxlan: Option<VxlanAttrs>,
}

/// The vxlan parameters of an existing device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanAttrs {
    pub vni: Option<u32>,
    pub local: Option<IpAddr>,
    pub port: Option<u16>,
    pub underlay: Option<u32>,
    pub learning: Option<bool>,
    pub gbp: bool,
}

/// The vxlan device weft wants (flannel's `flannel.<VNI>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub local: IpAddr,
    pub port: u16,
    pub underlay: u32,
    pub learning: bool,
    pub gbp: bool,
    pub mtu: u32,
    /// MAC for a newly created device; an existing device keeps its own.
    pub mac: Option<MacAddr>,
}

fn parse_link(m: &LinkMessage) -> LinkState {
    let mut l = LinkState {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        vxlan: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(b) => l.mac = MacAddr::from_slice(b),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = Some(parse_vxlan(v)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn parse_vxlan(attrs: &[InfoVxlan]) -> VxlanAttrs {
    let mut v = VxlanAttrs::default();
    for a in attrs {
        match a {
            InfoVxlan::Id(id) => v.vni = Some(*id),
            InfoVxlan::Local(ip) => v.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => v.local = Some(IpAddr::V6(*ip)),
            InfoVxlan::Port(p) => v.port = Some(*p),
            InfoVxlan::Link(i) => v.underlay = Some(*i),
            InfoVxlan::Learning(b) => v.learning = Some(*b),
            InfoVxlan::Gbp => v.gbp = true,
            _ => {}
        }
    }
    v
}

/// All devices of the namespace.
pub fn list_links(nl: &mut Netlink) -> Result<Vec<LinkState>, KernelError> {
    Ok(link_messages(nl)?.iter().map(parse_link).collect())
}

/// The kernel's link messages, for readers of attributes [`LinkState`]
/// leaves out.
pub(crate) fn link_messages(nl: &mut Netlink) -> Result<Vec<LinkMessage>, KernelError> {
    let replies = nl.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "dumping links",
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

pub fn link_by_name(nl: &mut Netlink, name: &str) -> Result<Option<LinkState>, KernelError> {
    Ok(list_links(nl)?.into_iter().find(|l| l.name == name))
}

fn compatible(l: &LinkState, s: &VxlanSpec) -> bool {
    let Some(v) = &l.vxlan else {
        return false;
    };
    l.kind.as_deref() == Some("vxlan")
        && v.vni == Some(s.vni)
        && v.local == Some(s.local)
        && v.port == Some(s.port)
        && v.underlay == Some(s.underlay)
        && v.learning.unwrap_or(true) == s.learning
        && v.gbp == s.gbp
}

/// Makes sure the vxlan device exists with the spec's parameters, is up
/// and has the spec's MTU. A compatible existing device is kept (with its
/// MAC, so peers' FDB entries stay valid); an incompatible one is replaced.
pub fn ensure_vxlan(nl: &mut Netlink, spec: &VxlanSpec) -> Result<LinkState, KernelError> {
    let existing = link_by_name(nl, &spec.name)?;
    let mut mac = spec.mac;
    match existing {
        Some(l) if compatible(&l, spec) => {
            if !l.up || l.mtu != spec.mtu {
                set_link_up(nl, l.index, Some(spec.mtu))?;
            }
            return reread(nl, &spec.name);
        }
        Some(l) => {
            tracing::warn!(device = %spec.name, "existing device has other vxlan parameters; recreating it");
            mac = mac.or(l.mac);
            delete_link(nl, l.index)?;
        }
        None => {}
    }
    create_vxlan(nl, spec, mac)?;
    let l = reread(nl, &spec.name)?;
    set_link_up(nl, l.index, None)?;
    reread(nl, &spec.name)
}

/// The device `name` as the kernel has it now; ENODEV when it is gone.
pub(crate) fn reread(nl: &mut Netlink, name: &str) -> Result<LinkState, KernelError> {
    link_by_name(nl, name)?.ok_or_else(|| {
        KernelError::request(
            format!("reading device {name}"),
            std::io::Error::from_raw_os_error(19), // ENODEV
        )
    })
}

fn create_vxlan(nl: &mut Netlink, s: &VxlanSpec, mac: Option<MacAddr>) -> Result<(), KernelError> {
    let mut data = vec![InfoVxlan::Id(s.vni)];
    data.push(match s.local {
        IpAddr::V4(a) => InfoVxlan::Local(a),
        IpAddr::V6(a) => InfoVxlan::Local6(a),
    });
    data.push(InfoVxlan::Link(s.underlay));
    data.push(InfoVxlan::Port(s.port));
    data.push(InfoVxlan::Learning(s.learning));
    if s.gbp {
        data.push(InfoVxlan::Gbp);
    }
    let mut m = LinkMessage::default();
    m.attributes = vec![
        LinkAttribute::IfName(s.name.clone()),
        LinkAttribute::Mtu(s.mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]),
    ];
    if let Some(mac) = mac {
        m.attributes
            .push(LinkAttribute::Address(mac.octets().to_vec()));
    }
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("creating vxlan device {}", s.name),
    )
}

/// Brings a device up, optionally setting its MTU.
pub fn set_link_up(nl: &mut Netlink, index: u32, mtu: Option<u32>) -> Result<(), KernelError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    if let Some(mtu) = mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    nl.request(
        RouteNetlinkMessage::SetLink(m),
        0,
        &format!("bringing up device #{index}"),
    )
}

pub fn delete_link(nl: &mut Netlink, index: u32) -> Result<(), KernelError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    nl.request(
        RouteNetlinkMessage::DelLink(m),
        0,
        &format!("deleting device #{index}"),
    )
}

/// Leaves exactly `addr` as the device's address of that family (flannel
/// puts the lease's network address on `flannel.1` as a /32).
pub fn ensure_address(nl: &mut Netlink, index: u32, addr: IpNet) -> Result<(), KernelError> {
    let family = family_of(&addr.addr());
    let mut q = AddressMessage::default();
    q.header.family = family;
    let mut present = false;
    for m in nl.dump(RouteNetlinkMessage::GetAddress(q), "dumping addresses")? {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if a.header.index != index || a.header.family != family {
            continue;
        }
        let ip = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip else { continue };
        if ip.is_ipv6() && a.header.scope == AddressScope::Link {
            continue; // keep fe80:: link-local addresses
        }
        if ip == addr.addr() && a.header.prefix_len == addr.prefix_len() {
            present = true;
        } else {
            nl.request(
                RouteNetlinkMessage::DelAddress(a.clone()),
                0,
                &format!("removing stale address {ip} from device #{index}"),
            )?;
        }
    }
    if present {
        return Ok(());
    }
    let mut m = AddressMessage::default();
    m.header.family = family;
    m.header.prefix_len = addr.prefix_len();
    m.header.index = index;
    m.header.scope = AddressScope::Universe;
    m.attributes = vec![
        AddressAttribute::Local(addr.addr()),
        AddressAttribute::Address(addr.addr()),
    ];
    nl.request(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_REPLACE,
        &format!("adding address {addr} to device #{index}"),
    )
}

/// Routes `dst` straight out of a device (`ip route replace DST dev DEV
/// scope link`): what flannel's wireguard backend does for the network.
pub fn replace_device_route(nl: &mut Netlink, index: u32, dst: IpNet) -> Result<(), KernelError> {
    use netlink_packet_route::route::{RouteAttribute, RouteScope, RouteType};
    let mut m = route_to(dst, RouteScope::Link, RouteType::Unicast);
    m.attributes.push(RouteAttribute::Oif(index));
    nl.request(
        RouteNetlinkMessage::NewRoute(m),
        NLM_F_CREATE | NLM_F_REPLACE,
        &format!("routing {dst} to device #{index}"),
    )
}

/// A blackhole route for `dst` in the main table unless a route for `dst`
/// is there already (flannel v0.28's `-ip-blackhole-route`: packets for
/// the node's own pod range that no pod holds are dropped, not sent
/// along the default route). An existing route of any kind is kept (a
/// bridge's route for the range must not be replaced). True when added.
pub fn ensure_blackhole_route(nl: &mut Netlink, dst: IpNet) -> Result<bool, KernelError> {
    use netlink_packet_route::route::{RouteScope, RouteType};
    const EEXIST: i32 = 17;
    let m = route_to(dst, RouteScope::Universe, RouteType::BlackHole);
    match nl.request(
        RouteNetlinkMessage::NewRoute(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("adding a blackhole route for {dst}"),
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the kernel can make WireGuard devices: makes one named
/// `probe` and deletes it again.
pub fn kernel_has_wireguard(nl: &mut Netlink, probe: &str) -> bool {
    let made = new_wireguard_link(nl, probe, "probing for kernel WireGuard").is_ok();
    if made {
        if let Ok(Some(l)) = link_by_name(nl, probe) {
            let _ = delete_link(nl, l.index);
        }
    }
    made
}

/// A kernel WireGuard device `name`: kept when there is one, else made
/// (a device of another kind by that name is replaced, as flanneld does).
pub fn ensure_wireguard_link(nl: &mut Netlink, name: &str) -> Result<LinkState, KernelError> {
    if let Some(l) = link_by_name(nl, name)? {
        if l.kind.as_deref() == Some("wireguard") {
            return Ok(l);
        }
        delete_link(nl, l.index)?;
    }
    new_wireguard_link(nl, name, &format!("creating WireGuard device {name}"))?;
    link_by_name(nl, name)?.ok_or_else(|| {
        KernelError::request(
            format!("reading WireGuard device {name}"),
            std::io::Error::other("not found after creation"),
        )
    })
}

/// `ip link add NAME type wireguard`.
fn new_wireguard_link(nl: &mut Netlink, name: &str, what: &str) -> Result<(), KernelError> {
    let mut m = LinkMessage::default();
    m.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Wireguard)]),
    ];
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        what,
    )
}

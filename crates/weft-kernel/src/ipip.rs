//! The ipip backend's device: an IPv4-in-IPv4 tunnel with this host's
//! address as its local end and no fixed remote, so each route names the
//! remote end as its on-link gateway (`via PUBLIC_IP dev flannel.ipip
//! onlink`), as flannel's `flannel.ipip`.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::{IpProtocol, RouteNetlinkMessage};

use crate::error::KernelError;
use crate::link::{delete_link, link_by_name, link_messages, reread, set_link_up, LinkState};
use crate::netlink::Netlink;

/// The tunnel device weft wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipSpec {
    pub name: String,
    /// This host's underlay address: the outer source.
    pub local: Ipv4Addr,
    pub mtu: u32,
}

/// Makes sure `spec.name` is an ipip tunnel from `spec.local` to any
/// remote, up, with the spec's MTU. One with another local end or a fixed
/// remote is replaced (flannel recreates it too); a device of another
/// kind by that name is an error, as in flannel, since it may be someone
/// else's.
pub fn ensure_ipip(nl: &mut Netlink, spec: &IpipSpec) -> Result<LinkState, KernelError> {
    if let Some(existing) = link_by_name(nl, &spec.name)? {
        if existing.kind.as_deref() != Some("ipip") {
            return Err(KernelError::request(
                format!("using device {}", spec.name),
                std::io::Error::other(format!(
                    "it is a {} device, not ipip: remove it and start again",
                    existing.kind.as_deref().unwrap_or("plain")
                )),
            ));
        }
        let (local, remote) = tunnel_ends(nl, existing.index)?;
        let any_remote = remote.is_none_or(|r| r == IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if local == Some(IpAddr::V4(spec.local)) && any_remote {
            set_link_up(nl, existing.index, Some(spec.mtu))?;
            return reread(nl, &spec.name);
        }
        tracing::warn!(device = %spec.name, ?local, ?remote, "existing tunnel has other ends; recreating it");
        delete_link(nl, existing.index)?;
    }
    create(nl, spec)?;
    let made = reread(nl, &spec.name)?;
    set_link_up(nl, made.index, Some(spec.mtu))?;
    reread(nl, &spec.name)
}

/// The local and remote ends of tunnel device `index`.
fn tunnel_ends(
    nl: &mut Netlink,
    index: u32,
) -> Result<(Option<IpAddr>, Option<IpAddr>), KernelError> {
    let (mut local, mut remote) = (None, None);
    for m in link_messages(nl)?
        .iter()
        .filter(|m| m.header.index == index)
    {
        for a in &m.attributes {
            let LinkAttribute::LinkInfo(infos) = a else {
                continue;
            };
            for i in infos {
                if let LinkInfo::Data(InfoData::IpTunnel(attrs)) = i {
                    for t in attrs {
                        match t {
                            InfoIpTunnel::Local(ip) => local = Some(*ip),
                            InfoIpTunnel::Remote(ip) => remote = Some(*ip),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    Ok((local, remote))
}

fn create(nl: &mut Netlink, s: &IpipSpec) -> Result<(), KernelError> {
    let mut m = LinkMessage::default();
    m.attributes = vec![
        LinkAttribute::IfName(s.name.clone()),
        LinkAttribute::Mtu(s.mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpIp),
            // flanneld's netlink library sends protocol 0 ("any": IPIP and
            // MPLS in IP), TTL 0 (inherit) and path MTU discovery off
            LinkInfo::Data(InfoData::IpTunnel(vec![
                InfoIpTunnel::Local(IpAddr::V4(s.local)),
                InfoIpTunnel::Ttl(0),
                InfoIpTunnel::Tos(0),
                InfoIpTunnel::PMtuDisc(false),
                InfoIpTunnel::Protocol(IpProtocol::Hopopts),
            ])),
        ]),
    ];
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!(
            "creating ipip device {} (is the ipip module available?)",
            s.name
        ),
    )
}

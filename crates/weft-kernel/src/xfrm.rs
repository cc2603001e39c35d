//! The kernel's IPsec policies (XFRM, its own netlink family), for the
//! ipsec backend: the ESP tunnel-mode policies with flanneld's request id
//! that weft plans in [`weft_core::plan::ipsec`]. The keys (the SAs) are
//! charon's business; weft only lists, adds and deletes policies.
//! Messages are built and decoded by `netlink-packet-xfrm`.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_xfrm::policy::{DelGetMessage, ModifyMessage};
use netlink_packet_xfrm::{
    Address, Selector, UserPolicyId, UserPolicyInfo, UserTemplate, XfrmAttrs, XfrmMessage, AF_INET,
    IPPROTO_ESP, XFRM_MODE_TUNNEL, XFRM_POLICY_ALLOW, XFRM_POLICY_FWD, XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
};
use netlink_sys::{protocols::NETLINK_XFRM, Socket, SocketAddr};
use weft_core::plan::ipsec::{Direction, Policy, REQID};

use crate::error::KernelError;

const RECV_BYTES: usize = 64 * 1024;

/// A socket of the XFRM netlink family in the caller's namespace.
pub struct Xfrm {
    sock: Socket,
    seq: u32,
}

impl Xfrm {
    pub fn open() -> Result<Xfrm, KernelError> {
        let mut sock = Socket::new(NETLINK_XFRM).map_err(KernelError::Socket)?;
        sock.bind_auto().map_err(KernelError::Socket)?;
        let _ = sock.set_ext_ack(true);
        Ok(Xfrm { sock, seq: 0 })
    }

    /// A socket in the network namespace at `path` (tests).
    pub fn open_in_netns(path: &std::path::Path) -> Result<Xfrm, KernelError> {
        crate::netlink::in_netns(path, Xfrm::open)
    }

    /// The policies of the form weft plans (IPv4 selectors, one ESP
    /// tunnel template with [`REQID`]); others are left out.
    pub fn policies(&mut self) -> Result<Vec<Policy>, KernelError> {
        let get = XfrmMessage::GetPolicy(DelGetMessage::default());
        let mut out = Vec::new();
        self.exchange(get, NLM_F_DUMP, "listing IPsec policies", |m| {
            if let XfrmMessage::AddPolicy(p) = m {
                out.extend(planned_policy(&p));
            }
        })?;
        Ok(out)
    }

    /// Adds `p`, or replaces a policy with its selector and direction.
    pub fn put(&mut self, p: &Policy) -> Result<(), KernelError> {
        let msg = XfrmMessage::UpdatePolicy(ModifyMessage {
            user_policy_info: UserPolicyInfo {
                selector: selector(p),
                direction: direction(p.dir),
                action: XFRM_POLICY_ALLOW,
                ..UserPolicyInfo::default()
            },
            nlas: vec![XfrmAttrs::Template(vec![template(p)])],
        });
        self.exchange(
            msg,
            NLM_F_ACK,
            &format!("adding IPsec policy {}", p),
            |_| {},
        )
    }

    /// Deletes `p`; one already gone is no error.
    pub fn delete(&mut self, p: &Policy) -> Result<(), KernelError> {
        let msg = XfrmMessage::DeletePolicy(DelGetMessage {
            user_policy_id: UserPolicyId {
                selector: selector(p),
                index: 0,
                direction: direction(p.dir),
            },
            nlas: Vec::new(),
        });
        match self.exchange(
            msg,
            NLM_F_ACK,
            &format!("deleting IPsec policy {}", p),
            |_| {},
        ) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// Sends one request; hands each reply message to `f` until the
    /// acknowledgement or the dump's end.
    fn exchange(
        &mut self,
        msg: XfrmMessage,
        flags: u16,
        what: &str,
        mut f: impl FnMut(XfrmMessage),
    ) -> Result<(), KernelError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock
            .send_to(&buf, &SocketAddr::new(0, 0), 0)
            .map_err(KernelError::Socket)?;
        let mut rx = Vec::with_capacity(RECV_BYTES);
        loop {
            rx.clear();
            self.sock.recv(&mut rx, 0).map_err(KernelError::Socket)?;
            let mut at = 0;
            while at < rx.len() {
                let m = NetlinkMessage::<XfrmMessage>::deserialize(&rx[at..])
                    .map_err(|e| KernelError::Decode(format!("{what}: {e}")))?;
                let len = (m.header.length as usize).max(16);
                at += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(_) => Err(KernelError::request(what, e.to_io())),
                            None => Ok(()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(inner) => f(inner),
                    _ => {}
                }
            }
        }
    }
}

fn v4(net: Ipv4Net) -> IpAddr {
    IpAddr::V4(net.network())
}

fn selector(p: &Policy) -> Selector {
    let mut s = Selector::default();
    s.source_prefix(&v4(p.src), p.src.prefix_len());
    s.destination_prefix(&v4(p.dst), p.dst.prefix_len());
    s
}

fn template(p: &Policy) -> UserTemplate {
    let mut t = UserTemplate::default();
    t.id.daddr = Address::from_ipv4(&p.tunnel_dst);
    t.id.proto = IPPROTO_ESP;
    t.family = AF_INET;
    t.saddr = Address::from_ipv4(&p.tunnel_src);
    t.reqid = REQID;
    t.mode = XFRM_MODE_TUNNEL;
    t
}

fn direction(d: Direction) -> u8 {
    match d {
        Direction::In => XFRM_POLICY_IN,
        Direction::Out => XFRM_POLICY_OUT,
        Direction::Fwd => XFRM_POLICY_FWD,
    }
}

/// A kernel policy as weft would have planned it, if it is of that form.
fn planned_policy(m: &ModifyMessage) -> Option<Policy> {
    let info = &m.user_policy_info;
    let s = &info.selector;
    if s.family != AF_INET || s.proto != 0 || info.action != XFRM_POLICY_ALLOW {
        return None;
    }
    let dir = match info.direction {
        XFRM_POLICY_IN => Direction::In,
        XFRM_POLICY_OUT => Direction::Out,
        XFRM_POLICY_FWD => Direction::Fwd,
        _ => return None,
    };
    let templates: Vec<&UserTemplate> = m
        .nlas
        .iter()
        .filter_map(|a| match a {
            XfrmAttrs::Template(t) => Some(t),
            _ => None,
        })
        .flatten()
        .collect();
    let [t] = templates[..] else {
        return None;
    };
    if t.reqid != REQID
        || t.id.proto != IPPROTO_ESP
        || t.mode != XFRM_MODE_TUNNEL
        || t.family != AF_INET
    {
        return None;
    }
    let net = |a: &Address, len: u8| Ipv4Net::new(a.to_ipv4(), len).ok().map(|n| n.trunc());
    Some(Policy {
        src: net(&s.saddr, s.prefixlen_s)?,
        dst: net(&s.daddr, s.prefixlen_d)?,
        dir,
        tunnel_src: t.saddr.to_ipv4(),
        tunnel_dst: t.id.daddr.to_ipv4(),
    })
}

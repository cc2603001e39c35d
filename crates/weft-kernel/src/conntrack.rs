//! The kernel's connection tracking table over ctnetlink
//! (`NETLINK_NETFILTER`, subsystem `CTNETLINK`), with the message types of
//! `netlink-packet-netfilter`: dumps filtered in the kernel by the
//! original tuple (`CTA_FILTER`, Linux 5.9+: only matching entries cross
//! into user space), deletes many entries per `sendmsg`, and inserts (for
//! tests and benchmarks, as `conntrack -I` does).
//!
//! Everything a dump returns is untrusted input: [`parse_flows`] reads a
//! receive buffer into flows and skips what it cannot read (fuzzed).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NlAddr};

use crate::error::KernelError;
use crate::nla::NLA_F_NESTED;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// `CTA_FILTER` and its `CTA_FILTER_ORIG_FLAGS` (uapi
/// `nfnetlink_conntrack.h`).
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const FILTER_IP_DST: u32 = 1 << 1;
const FILTER_PROTO_NUM: u32 = 1 << 3;
const FILTER_PROTO_DST_PORT: u32 = 1 << 5;
const ENOENT: i32 = 2;
/// Deletes sent per `sendmsg`.
const DELETES_PER_SEND: usize = 512;

/// One tracked connection: its protocol and both directions' addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub protocol: u8,
    /// The original direction: the client and the address it sent to.
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    /// The reply direction: who answers (after DNAT, the endpoint) and to
    /// whom.
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
}

/// Which entries a dump returns: one family and protocol, optionally only
/// those sent to one address and/or port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFilter {
    pub ipv6: bool,
    pub protocol: u8,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
}

/// What a batch of deletes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: usize,
    /// Entries gone before their delete arrived (expired or deleted by
    /// someone else).
    pub gone: usize,
}

/// A ctnetlink socket in the current network namespace.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn family(ipv6: bool) -> NetfilterProtoFamily {
    if ipv6 {
        NetfilterProtoFamily::IPv6
    } else {
        NetfilterProtoFamily::IPv4
    }
}

fn tuple(
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: u8,
    ports: [Option<u16>; 2],
) -> Vec<Tuple> {
    let mut ip = Vec::new();
    ip.extend(src.map(IPTuple::SourceAddress));
    ip.extend(dst.map(IPTuple::DestinationAddress));
    let mut p = vec![ProtoTuple::Protocol(Protocol::from(proto))];
    p.extend(ports[0].map(ProtoTuple::SourcePort));
    p.extend(ports[1].map(ProtoTuple::DestinationPort));
    let mut out = Vec::new();
    if !ip.is_empty() {
        out.push(Tuple::Ip(ip));
    }
    out.push(Tuple::Proto(p));
    out
}

fn full_tuple(src: SocketAddr, dst: SocketAddr, proto: u8) -> Vec<Tuple> {
    tuple(
        Some(src.ip()),
        Some(dst.ip()),
        proto,
        [Some(src.port()), Some(dst.port())],
    )
}

/// Whether the kernel is asked to match the destination address. Not for
/// IPv6: the kernel's IPv6 address comparison in dump filters is inverted
/// (it uses `!ipv6_addr_cmp`, true when the addresses are equal, to
/// reject an entry: seen on 6.18), so IPv6 dumps are filtered by protocol
/// and port in the kernel and by address here.
fn kernel_filters_address(f: &DumpFilter) -> bool {
    f.dst_ip.is_some_and(|ip| ip.is_ipv4())
}

/// The dump request's attributes: the tuple to match and `CTA_FILTER`
/// saying which of its parts count.
fn filter_attributes(f: &DumpFilter) -> Vec<ConntrackAttribute> {
    let mut flags = FILTER_PROTO_NUM;
    if kernel_filters_address(f) {
        flags |= FILTER_IP_DST;
    }
    if f.dst_port.is_some() {
        flags |= FILTER_PROTO_DST_PORT;
    }
    // nested CTA_FILTER { CTA_FILTER_ORIG_FLAGS: u32 }
    let mut nested = Vec::with_capacity(8);
    nested.extend_from_slice(&8u16.to_ne_bytes());
    nested.extend_from_slice(&CTA_FILTER_ORIG_FLAGS.to_ne_bytes());
    nested.extend_from_slice(&flags.to_ne_bytes());
    vec![
        ConntrackAttribute::CtaTupleOrig(tuple(None, f.dst_ip, f.protocol, [None, f.dst_port])),
        ConntrackAttribute::Other(DefaultNla::new(CTA_FILTER | NLA_F_NESTED, nested)),
    ]
}

impl Conntrack {
    pub fn open() -> Result<Conntrack, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(KernelError::Socket)?;
        sock.bind_auto().map_err(KernelError::Socket)?;
        // large dumps: a big receive buffer keeps the kernel from waiting
        let _ = sock.set_rx_buf_sz(4 << 20);
        Ok(Conntrack {
            sock,
            seq: 0,
            buf: vec![0u8; 1 << 16],
        })
    }

    /// A socket in the network namespace at `path` (tests and benchmarks).
    pub fn open_in_netns(path: &Path) -> Result<Conntrack, KernelError> {
        crate::netlink::in_netns(path, Conntrack::open)
    }

    fn message(&mut self, ipv6: bool, flags: u16, inner: ConntrackMessage) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let payload = NetfilterMessage::new(NetfilterHeader::new(family(ipv6), 0, 0), inner);
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        out
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), KernelError> {
        self.sock
            .send_to(bytes, &NlAddr::new(0, 0), 0)
            .map_err(|e| KernelError::request("sending to conntrack", e))?;
        Ok(())
    }

    fn recv(&mut self) -> Result<usize, KernelError> {
        let (n, _) = self
            .sock
            .recv_from(&mut &mut self.buf[..], 0)
            .map_err(|e| KernelError::request("reading from conntrack", e))?;
        Ok(n)
    }

    /// The dump request for `f`.
    fn dump_request(&mut self, f: &DumpFilter) -> Vec<u8> {
        let inner = ConntrackMessage::Get(filter_attributes(f));
        let mut msg = self.message(f.ipv6, NLM_F_DUMP, inner);
        // CTA_FILTER is the message's last attribute (12 bytes). The
        // kernel parses it strictly and wants NLA_F_NESTED on its type,
        // which netlink-packet-netfilter 0.4 sets only on the attributes
        // it knows (its `is_nested` ignores `Other`): set it here.
        let at = msg.len() - 12 + 2;
        let kind = u16::from_ne_bytes([msg[at], msg[at + 1]]) | NLA_F_NESTED;
        msg[at..at + 2].copy_from_slice(&kind.to_ne_bytes());
        msg
    }

    /// The entries matching `f`.
    pub fn dump(&mut self, f: &DumpFilter) -> Result<Vec<Flow>, KernelError> {
        let msg = self.dump_request(f);
        self.send(&msg)?;
        let mut flows = Vec::new();
        loop {
            let n = self.recv()?;
            match parse_flows(&self.buf[..n], &mut flows) {
                Ok(true) => {
                    if let (Some(ip), false) = (f.dst_ip, kernel_filters_address(f)) {
                        flows.retain(|flow| flow.orig_dst.ip() == ip);
                    }
                    return Ok(flows);
                }
                Ok(false) => {}
                Err(errno) => {
                    return Err(KernelError::request(
                        "dumping conntrack entries",
                        io::Error::from_raw_os_error(errno),
                    ))
                }
            }
        }
    }

    /// Deletes `flows` (by original tuple), many per `sendmsg`; entries
    /// already gone are counted, not errors.
    pub fn delete(&mut self, flows: &[Flow]) -> Result<Deleted, KernelError> {
        let mut report = Deleted::default();
        for chunk in flows.chunks(DELETES_PER_SEND) {
            let mut batch = Vec::new();
            for f in chunk {
                let attrs = vec![ConntrackAttribute::CtaTupleOrig(full_tuple(
                    f.orig_src, f.orig_dst, f.protocol,
                ))];
                let m = self.message(
                    f.orig_src.is_ipv6(),
                    NLM_F_ACK,
                    ConntrackMessage::Delete(attrs),
                );
                batch.extend_from_slice(&m);
            }
            self.send_acked(&batch, chunk.len(), "deleting conntrack entries", |code| {
                match code {
                    0 => report.deleted += 1,
                    c if c == -ENOENT => report.gone += 1,
                    _ => return false,
                }
                true
            })?;
        }
        Ok(report)
    }

    /// Creates entries as `conntrack -I` does (a reply source other than
    /// the original destination is a DNATed flow), `timeout` seconds long.
    pub fn insert(&mut self, flows: &[Flow], timeout: u32) -> Result<(), KernelError> {
        for chunk in flows.chunks(DELETES_PER_SEND) {
            let mut batch = Vec::new();
            for f in chunk {
                let attrs = vec![
                    ConntrackAttribute::CtaTupleOrig(full_tuple(
                        f.orig_src, f.orig_dst, f.protocol,
                    )),
                    ConntrackAttribute::CtaTupleReply(full_tuple(
                        f.reply_src,
                        f.reply_dst,
                        f.protocol,
                    )),
                    ConntrackAttribute::CtaTimeout(timeout),
                ];
                let m = self.message(
                    f.orig_src.is_ipv6(),
                    NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                    ConntrackMessage::New(attrs),
                );
                batch.extend_from_slice(&m);
            }
            self.send_acked(&batch, chunk.len(), "creating conntrack entries", |code| {
                code == 0
            })?;
        }
        Ok(())
    }

    /// Sends `batch` (`count` requests asking for an ack) and hands each
    /// ack's code (0 or a negative errno) to `accept`; the first code it
    /// refuses is the error, named by `what`.
    fn send_acked(
        &mut self,
        batch: &[u8],
        count: usize,
        what: &'static str,
        mut accept: impl FnMut(i32) -> bool,
    ) -> Result<(), KernelError> {
        self.send(batch)?;
        let mut acks = 0;
        let mut refused = None;
        // every ack is read, so that none is left for the next request
        while acks < count {
            let n = self.recv()?;
            for code in ack_codes(&self.buf[..n]) {
                acks += 1;
                if !accept(code) && refused.is_none() {
                    refused = Some(code);
                }
            }
        }
        match refused {
            None => Ok(()),
            Some(code) => Err(KernelError::request(
                what,
                io::Error::from_raw_os_error(code.saturating_neg()),
            )),
        }
    }
}

/// Netlink messages in a receive buffer: (type, whole message).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 16 > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        if len < 16 || at + len > buf.len() {
            return None;
        }
        let m = &buf[at..at + len];
        at += (len + 3) & !3;
        Some((kind, m))
    })
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`: one entry of a dump.
const CT_ENTRY: u16 = 1 << 8;

/// The error codes of the acknowledgements in `buf` (0: success).
fn ack_codes(buf: &[u8]) -> impl Iterator<Item = i32> + '_ {
    messages(buf)
        .filter(|(kind, m)| *kind == NLMSG_ERROR && m.len() >= 20)
        .map(|(_, m)| i32::from_ne_bytes([m[16], m[17], m[18], m[19]]))
}

/// Appends the conntrack entries of a dump's receive buffer to `out`;
/// `Ok(true)` once the dump's end is in it, `Err(errno)` for an error
/// message. Entries that do not parse, or lack an address or port, are
/// skipped.
pub fn parse_flows(buf: &[u8], out: &mut Vec<Flow>) -> Result<bool, i32> {
    for (kind, m) in messages(buf) {
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = m
                    .get(16..20)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(code.saturating_neg());
                }
            }
            // only conntrack entries are parsed (the crate's parsers of
            // other netfilter subsystems are not for untrusted bytes)
            CT_ENTRY => {
                let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(m) else {
                    continue;
                };
                if let NetlinkPayload::InnerMessage(nf) = msg.payload {
                    if let netlink_packet_netfilter::NetfilterMessageInner::Conntrack(
                        ConntrackMessage::New(attrs),
                    ) = nf.inner
                    {
                        out.extend(flow_of(&attrs));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// (source, destination, protocol) of one tuple attribute.
fn ends(tuples: &[Tuple]) -> Option<(SocketAddr, SocketAddr, u8)> {
    let (mut src, mut dst, mut sport, mut dport, mut proto) = (None, None, None, None, None);
    for t in tuples {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(n) => proto = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(n) => sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        SocketAddr::new(src?, sport?),
        SocketAddr::new(dst?, dport?),
        proto?,
    ))
}

fn flow_of(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let (mut orig, mut reply) = (None, None);
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = ends(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = ends(t),
            _ => {}
        }
    }
    let (orig_src, orig_dst, protocol) = orig?;
    let (reply_src, reply_dst, _) = reply?;
    Some(Flow {
        protocol,
        orig_src,
        orig_dst,
        reply_src,
        reply_dst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn a_dnated_flow_round_trips_through_the_wire_format() {
        let f = Flow {
            protocol: IPPROTO_UDP,
            orig_src: sa("198.18.0.5:4000"),
            orig_dst: sa("10.254.0.10:53"),
            reply_src: sa("100.64.1.2:5353"),
            reply_dst: sa("198.18.0.5:4000"),
        };
        let mut ct = Conntrack {
            sock: Socket::new(NETLINK_NETFILTER).expect("socket"),
            seq: 0,
            buf: Vec::new(),
        };
        // an insert request is what a dump returns, under another type
        let mut m = ct.message(
            false,
            0,
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(full_tuple(f.orig_src, f.orig_dst, f.protocol)),
                ConntrackAttribute::CtaTupleReply(full_tuple(f.reply_src, f.reply_dst, f.protocol)),
            ]),
        );
        let mut out = Vec::new();
        m.extend_from_slice(&[16, 0, 0, 0, 3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_flows(&m, &mut out), Ok(true));
        assert_eq!(out, vec![f]);
    }

    #[test]
    fn the_filter_names_what_counts() {
        let f = DumpFilter {
            ipv6: false,
            protocol: IPPROTO_UDP,
            dst_ip: Some("10.254.0.10".parse().expect("ip")),
            dst_port: Some(53),
        };
        let mut ct = Conntrack {
            sock: Socket::new(NETLINK_NETFILTER).expect("socket"),
            seq: 0,
            buf: Vec::new(),
        };
        let m = ct.dump_request(&f);
        // the last attribute: CTA_FILTER, nested, holding the flags
        let a = &m[m.len() - 12..];
        assert_eq!(u16::from_ne_bytes([a[0], a[1]]), 12);
        assert_eq!(u16::from_ne_bytes([a[2], a[3]]), CTA_FILTER | NLA_F_NESTED);
        assert_eq!(u16::from_ne_bytes([a[6], a[7]]), CTA_FILTER_ORIG_FLAGS);
        let flags = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
        assert_eq!(
            flags,
            FILTER_PROTO_NUM | FILTER_IP_DST | FILTER_PROTO_DST_PORT
        );
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let mut out = Vec::new();
        assert_eq!(parse_flows(&[0xff; 40], &mut out), Ok(false));
        assert!(out.is_empty());
    }
}

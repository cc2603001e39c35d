//! Nexthop objects (`ip nexthop`, kernel 5.3+), encoded by hand because
//! `netlink-packet-route` has no message type for them.
//!
//! Wire format: `struct nhmsg { u8 family, scope, protocol, resvd; u32
//! flags; }` followed by attributes NHA_ID (u32), NHA_OIF (u32) and
//! NHA_GATEWAY (4 or 16 bytes).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use weft_core::plan::{NextHop, NexthopSpec};

use crate::netlink::{RawMessage, Request};
use crate::nla::put_attr;

pub(crate) const RTM_NEWNEXTHOP: u16 = 104;
pub(crate) const RTM_DELNEXTHOP: u16 = 105;
pub(crate) const RTM_GETNEXTHOP: u16 = 106;
const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const RTNH_F_ONLINK: u32 = 4;
const RTPROT_BOOT: u8 = 3;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NHMSG_LEN: usize = 8;
/// Attribute type bits (the top two are flags).
const NLA_TYPE_MASK: u16 = 0x3fff;

fn nhmsg(family: u8, flags: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&[family, 0, RTPROT_BOOT, 0]);
    b.extend_from_slice(&flags.to_ne_bytes());
    b
}

/// Creates or replaces a nexthop object.
pub(crate) fn replace_request(n: &NexthopSpec) -> Request {
    let (family, gw): (u8, Vec<u8>) = match n.hop.gateway {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    };
    let flags = if n.hop.onlink { RTNH_F_ONLINK } else { 0 };
    let mut payload = nhmsg(family, flags);
    put_attr(&mut payload, NHA_ID, &n.id.to_ne_bytes());
    put_attr(&mut payload, NHA_OIF, &n.hop.oif.to_ne_bytes());
    put_attr(&mut payload, NHA_GATEWAY, &gw);
    Request::Raw {
        kind: RTM_NEWNEXTHOP,
        flags: NLM_F_CREATE | NLM_F_REPLACE,
        payload,
    }
}

/// Deletes a nexthop object by id (the kernel wants an all-zero header).
pub(crate) fn delete_request(id: u32) -> Request {
    let mut payload = vec![0; NHMSG_LEN];
    put_attr(&mut payload, NHA_ID, &id.to_ne_bytes());
    Request::Raw {
        kind: RTM_DELNEXTHOP,
        flags: 0,
        payload,
    }
}

/// The payload of a dump request for all nexthops: an all-zero header
/// (the kernel refuses dump requests with any header field set).
pub(crate) fn dump_payload() -> Vec<u8> {
    vec![0; NHMSG_LEN]
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(<[u8; 4]>::try_from(v).ok()?))
}

/// A single-gateway nexthop object from a dump (groups and blackholes are `None`).
pub(crate) fn parse(m: &RawMessage) -> Option<NexthopSpec> {
    if m.kind != RTM_NEWNEXTHOP || m.payload.len() < NHMSG_LEN {
        return None;
    }
    let flags = u32_of(&m.payload[4..8])?;
    let (mut id, mut oif, mut gateway) = (None, None, None);
    let mut attrs = &m.payload[NHMSG_LEN..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        let value = &attrs[4..len];
        match kind {
            NHA_ID => id = u32_of(value),
            NHA_OIF => oif = u32_of(value),
            NHA_GATEWAY => {
                gateway = match value.len() {
                    4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            _ => {}
        }
        attrs = &attrs[(len + 3) & !3usize..];
        if attrs.len() < 4 {
            break;
        }
    }
    Some(NexthopSpec {
        id: id?,
        hop: NextHop {
            gateway: gateway?,
            oif: oif?,
            onlink: flags & RTNH_F_ONLINK != 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_parses_back() {
        let n = NexthopSpec {
            id: 0xac1e_0e00,
            hop: NextHop {
                gateway: "172.30.14.0".parse().expect("ip"),
                oif: 7,
                onlink: true,
            },
        };
        let Request::Raw { kind, payload, .. } = replace_request(&n) else {
            panic!("raw request")
        };
        assert_eq!(kind, RTM_NEWNEXTHOP);
        assert_eq!(payload.len() % 4, 0);
        let parsed = parse(&RawMessage {
            kind,
            payload: &payload,
        });
        assert_eq!(parsed, Some(n));
        // truncated or foreign messages are ignored, not misread
        assert_eq!(
            parse(&RawMessage {
                kind,
                payload: &payload[..10]
            }),
            None
        );
        assert_eq!(
            parse(&RawMessage {
                kind: 24,
                payload: &payload
            }),
            None
        );
        assert_eq!(dump_payload(), vec![0u8; 8]);
    }
}

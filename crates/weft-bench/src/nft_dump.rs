//! How many Services a host's `ip kube-proxy` `service-ips` map sends on,
//! read from the kernel over netlink (an `NFT_MSG_GETSETELEM` dump) in
//! the bench's own process.
//!
//! The cold-start poll used to run `nft list map` every 50 ms. At 255,000
//! endpoints that command takes tens of milliseconds of its own (it reads
//! more of the ruleset than the map), competes with the proxy under test
//! for the machine's two cores, and added up to ~100 ms to every cold
//! start it timed, kube-proxy's and weft's alike. The dump reads only the
//! map's elements and is cheap enough to poll every few milliseconds.

use anyhow::{bail, Context, Result};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const SUBSYS_NFTABLES: u16 = 10;
const MSG_GETSETELEM: u16 = 13;
const MSG_NEWSETELEM: u16 = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;
const NFGENMSG: usize = 4;
const NFPROTO_IPV4: u8 = 2;
/// `NFTA_SET_ELEM_LIST_*`, `NFTA_LIST_ELEM`, `NFTA_SET_ELEM_DATA`,
/// `NFTA_DATA_VERDICT`, `NFTA_VERDICT_CHAIN`.
const LIST_TABLE: u16 = 1;
const LIST_SET: u16 = 2;
const LIST_ELEMENTS: u16 = 3;
const LIST_ELEM: u16 = 1;
const ELEM_DATA: u16 = 2;
const DATA_VERDICT: u16 = 2;
const VERDICT_CHAIN: u16 = 2;
const ENOENT: i32 = 2;

/// The number of elements of `ip kube-proxy service-ips` whose verdict
/// goes to a `service-…` chain, in the calling thread's network
/// namespace; 0 when the table or map is not there yet.
pub(crate) fn service_gotos() -> Result<usize> {
    let mut sock = Socket::new(NETLINK_NETFILTER).context("opening a netfilter socket")?;
    sock.bind_auto().context("binding a netfilter socket")?;
    sock.send_to(&request(), &SocketAddr::new(0, 0), 0)
        .context("asking for the service-ips elements")?;
    let mut count = 0;
    let mut rx = Vec::with_capacity(256 * 1024);
    loop {
        rx.clear();
        sock.recv(&mut rx, 0)
            .context("reading the service-ips elements")?;
        for (kind, body) in messages(&rx) {
            match kind {
                NLMSG_DONE => return Ok(count),
                NLMSG_ERROR => {
                    let code = body
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return match -code {
                        0 => Ok(count),
                        ENOENT => Ok(0),
                        errno => bail!(
                            "dumping service-ips: {}",
                            std::io::Error::from_raw_os_error(errno)
                        ),
                    };
                }
                k if k == (SUBSYS_NFTABLES << 8 | MSG_NEWSETELEM) => {
                    count += body.get(NFGENMSG..).map_or(0, gotos_in);
                }
                _ => {}
            }
        }
    }
}

fn request() -> Vec<u8> {
    let mut b = vec![0u8; HEADER];
    b.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]);
    put_str(&mut b, LIST_TABLE, "kube-proxy");
    put_str(&mut b, LIST_SET, "service-ips");
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&(SUBSYS_NFTABLES << 8 | MSG_GETSETELEM).to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, kind: u16, s: &str) {
    let len = 4 + s.len() + 1;
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(s.as_bytes());
    b.push(0);
    b.resize(b.len().next_multiple_of(4), 0);
}

/// The elements of one NEWSETELEM message's attributes that go to a
/// `service-` chain.
fn gotos_in(attrs: &[u8]) -> usize {
    let goes_to_service = |elem: &[u8]| {
        let verdict = find(elem, ELEM_DATA).and_then(|d| find(d, DATA_VERDICT));
        verdict
            .and_then(|v| find(v, VERDICT_CHAIN))
            .is_some_and(|chain| chain.starts_with(b"service-"))
    };
    find(attrs, LIST_ELEMENTS).map_or(0, |list| {
        attributes(list)
            .filter(|(kind, elem)| *kind == LIST_ELEM && goes_to_service(elem))
            .count()
    })
}

fn find(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(attrs).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// (type without the nested/byte-order flags, payload) of each attribute.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let kind = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & 0x3fff;
        let value = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// (type, body after the header) of each netlink message in `buf`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes([*buf.get(4)?, *buf.get(5)?]);
        let body = buf.get(HEADER..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    fn element(chain: &str) -> Vec<u8> {
        let verdict = [attr(1, &(-4i32).to_be_bytes()), attr(2, chain.as_bytes())].concat();
        let data = attr(0x8000 | DATA_VERDICT, &verdict);
        attr(
            0x8000 | LIST_ELEM,
            &[attr(1, b"key"), attr(ELEM_DATA, &data)].concat(),
        )
    }

    #[test]
    fn counts_the_elements_that_go_to_a_service_chain() {
        let list = [
            element("service-ABCD-default/a/tcp/p"),
            element("external-ABCD-default/a/tcp/p"),
            element("service-EFGH-default/b/tcp/p"),
        ]
        .concat();
        let attrs = [
            attr(LIST_TABLE, b"kube-proxy\0"),
            attr(LIST_SET, b"service-ips\0"),
            attr(0x8000 | LIST_ELEMENTS, &list),
        ]
        .concat();
        assert_eq!(gotos_in(&attrs), 2);
    }

    #[test]
    fn a_truncated_message_counts_nothing_and_does_not_panic() {
        let attrs = attr(0x8000 | LIST_ELEMENTS, &element("service-A"));
        for cut in 0..attrs.len() {
            let _ = gotos_in(&attrs[..cut]);
        }
        assert_eq!(gotos_in(&attrs[..attrs.len() - 8]), 0);
        assert_eq!(messages(&[1, 2, 3]).count(), 0);
    }
}

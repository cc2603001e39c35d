//! The register bytes of the table's set and map elements, as nf_tables
//! holds them and as libnftables sends them for the same `add element`:
//! each field of a concatenation padded to 4 bytes; addresses and ports
//! in network order, the protocol as one byte, a pool's slot (`numgen`'s
//! result) as a 32-bit number in host order.
//!
//! The netlink path ([`crate::shell`]'s nft applier) writes these instead
//! of text; the tests compare them word for word with what
//! `nft --debug=netlink` prints for the text.

use std::net::{IpAddr, SocketAddr};

use super::nft_element::{ElementKey, ElementValue, Member};
use crate::spec::Protocol;

/// The IANA protocol number nft's `meta l4proto` compares.
pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn put_addr(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

fn put_port(out: &mut Vec<u8>, port: u16) {
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// Appends the key bytes of `member` to `out`.
pub fn put_member(out: &mut Vec<u8>, member: &Member) {
    match member {
        Member::Key(k) => put_key(out, k),
        Member::Pair(ip) => {
            put_addr(out, *ip);
            put_addr(out, *ip);
        }
    }
}

fn put_key(out: &mut Vec<u8>, k: &ElementKey) {
    if let Some(a) = k.addr {
        put_addr(out, a);
    }
    out.extend_from_slice(&[protocol_number(k.proto), 0, 0, 0]);
    put_port(out, k.port);
    if let Some(slot) = k.slot {
        out.extend_from_slice(&slot.to_ne_bytes());
    }
}

/// Appends the data bytes of an endpoint (`ip daddr . th dport`).
pub fn put_endpoint(out: &mut Vec<u8>, ep: SocketAddr) {
    put_addr(out, ep.ip());
    put_port(out, ep.port());
}

/// What an element's value is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// `goto <chain>`.
    Goto(&'a str),
    Drop,
    /// Register bytes (an endpoint).
    Endpoint(SocketAddr),
}

/// How `value` is sent; `chain` holds the name of a pool's chain.
pub fn wire_value<'a>(value: &'a ElementValue, chain: &'a mut String) -> WireValue<'a> {
    match value {
        ElementValue::Goto(c) => WireValue::Goto(c),
        ElementValue::GotoPool(pool) => {
            *chain = pool.chain();
            WireValue::Goto(chain)
        }
        ElementValue::Reject => WireValue::Goto(super::nft_names::REJECT_CHAIN),
        ElementValue::Drop => WireValue::Drop,
        ElementValue::Endpoint(ip, port) => WireValue::Endpoint(SocketAddr::new(*ip, *port)),
    }
}

/// `bytes` as `nft --debug=netlink` prints register data: 32-bit words in
/// host order, in hex.
pub fn debug_words(bytes: &[u8]) -> String {
    bytes
        .chunks(4)
        .map(|w| {
            let mut word = [0u8; 4];
            word[..w.len()].copy_from_slice(w);
            format!("{:08x}", u32::from_ne_bytes(word))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::nft_names::Pool;

    fn member(m: Member) -> String {
        let mut out = Vec::new();
        put_member(&mut out, &m);
        debug_words(&out)
    }

    /// The words nft 1.0.6 prints with `--debug=netlink` for these
    /// elements (x86-64, host order little-endian).
    #[test]
    #[cfg(target_endian = "little")]
    fn keys_and_values_are_the_words_libnftables_sends() {
        let ip: IpAddr = "10.96.0.10".parse().expect("ip");
        let key = ElementKey::addr(ip, Protocol::Tcp, 80);
        assert_eq!(member(Member::Key(key)), "0a00600a 00000006 00005000");
        assert_eq!(
            member(Member::Key(key.slot(1))),
            "0a00600a 00000006 00005000 00000001"
        );
        let pair: IpAddr = "100.64.1.5".parse().expect("ip");
        assert_eq!(member(Member::Pair(pair)), "05014064 05014064");
        let mut out = Vec::new();
        put_endpoint(&mut out, "100.64.1.5:8080".parse().expect("ep"));
        assert_eq!(debug_words(&out), "05014064 0000901f");
        let np = ElementKey::node_port(Protocol::Udp, 30053);
        assert_eq!(member(Member::Key(np)), "00000011 00006575");
        let v6: IpAddr = "fd00::5".parse().expect("ip");
        assert_eq!(
            member(Member::Key(ElementKey::addr(v6, Protocol::Sctp, 9))),
            "000000fd 00000000 00000000 05000000 00000084 00000900"
        );
    }

    #[test]
    fn pool_values_name_the_pool_chain() {
        let mut chain = String::new();
        let pool = Pool {
            node_port: true,
            n: 3,
        };
        let v = ElementValue::GotoPool(pool);
        assert_eq!(
            wire_value(&v, &mut chain),
            WireValue::Goto("nodeport-balance-3")
        );
        let mut chain = String::new();
        assert_eq!(
            wire_value(&ElementValue::Reject, &mut chain),
            WireValue::Goto("reject-chain")
        );
    }
}

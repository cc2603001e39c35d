//! Where nftables verdicts go, read over nf_tables' netlink: the jumps of
//! one chain (a rule dump the kernel filters to one table and chain,
//! `NFT_MSG_GETRULE` with `NFTA_RULE_TABLE` and `NFTA_RULE_CHAIN`), and
//! the chains a verdict map's elements go to (`NFT_MSG_GETSETELEM`). Each
//! costs what it reads, whatever else the ruleset holds. iptables-nft's
//! rules are nftables rules, so this reads `-j CHAIN` of iptables-nft too.
//!
//! libnftables' `list chain` is not used: it reads the whole ruleset into
//! its cache first, which takes a second at 10,000 Services.
//!
//! The replies are untrusted input: [`parse_rule_jumps`] and
//! [`parse_element_verdicts`] read a receive buffer and skip what they
//! cannot read (fuzzed).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::error::KernelError;
use crate::nla::{align4, attributes, put_str};

/// `NFPROTO_IPV4` / `NFPROTO_IPV6`: the `ip` and `ip6` families (and
/// iptables' / ip6tables' tables).
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

const SUBSYS_NFTABLES: u16 = 10;
const MSG_NEWRULE: u16 = 6;
const MSG_GETRULE: u16 = 7;
const MSG_NEWSETELEM: u16 = 12;
const MSG_GETSETELEM: u16 = 13;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;
const NFGENMSG: usize = 4;

const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
/// `NFTA_SET_ELEM_LIST_TABLE`, `_SET`, `_ELEMENTS`; `NFTA_SET_ELEM_DATA`.
const ELEMS_TABLE: u16 = 1;
const ELEMS_SET: u16 = 2;
const ELEMS_ELEMENTS: u16 = 3;
const ELEM_DATA: u16 = 2;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const IMMEDIATE_DATA: u16 = 2;
const DATA_VERDICT: u16 = 2;
const VERDICT_CHAIN: u16 = 2;

/// A dump request of message `msg` for `family`, filtered by the
/// attributes `names` (the table, then the chain or set).
fn dump_request(msg: u16, family: u8, names: [(u16, &str); 2]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    m.extend_from_slice(&((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    for (kind, name) in names {
        put_str(&mut m, kind, name);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn nested(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The chains one rule's expressions jump or go to (`immediate` verdicts
/// naming a chain).
fn rule_jumps(rule: &[u8], out: &mut Vec<String>) {
    let Some(exprs) = nested(rule, RULE_EXPRESSIONS) else {
        return;
    };
    for (kind, expr) in attributes(exprs) {
        if kind != LIST_ELEM
            || nested(expr, EXPR_NAME).map(c_string).as_deref() != Some("immediate")
        {
            continue;
        }
        let chain = nested(expr, EXPR_DATA)
            .and_then(|d| nested(d, IMMEDIATE_DATA))
            .and_then(|d| nested(d, DATA_VERDICT))
            .and_then(verdict_chain);
        out.extend(chain);
    }
}

/// The chain a verdict (`NFTA_DATA_VERDICT`'s attributes) goes to.
fn verdict_chain(verdict: &[u8]) -> Option<String> {
    nested(verdict, VERDICT_CHAIN).map(c_string)
}

/// The chains the elements of one set-element message go to (a verdict
/// map's elements naming a chain).
fn element_verdicts(elements: &[u8], out: &mut Vec<String>) {
    let Some(list) = nested(elements, ELEMS_ELEMENTS) else {
        return;
    };
    for (kind, element) in attributes(list) {
        let chain = nested(element, ELEM_DATA)
            .and_then(|d| nested(d, DATA_VERDICT))
            .and_then(verdict_chain);
        if let (LIST_ELEM, Some(chain)) = (kind, chain) {
            out.push(chain);
        }
    }
}

/// Reads one receive buffer of a dump, handing the attributes of each
/// message of type `msg` to `each`. `Ok(true)` when the dump is complete,
/// `Err(errno)` when the kernel refused it; anything unreadable is skipped.
fn parse_dump(buf: &[u8], msg: u16, each: &mut dyn FnMut(&[u8])) -> Result<bool, i32> {
    let mut at = 0;
    while let Some(head) = buf.get(at..at + HEADER) {
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        let Some(body) = buf.get(at + HEADER..at.saturating_add(len)) else {
            break;
        };
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                return if code == 0 {
                    Ok(true)
                } else {
                    Err(code.checked_neg().unwrap_or(i32::MAX))
                };
            }
            k if k == (SUBSYS_NFTABLES << 8) | msg => {
                if let Some(attrs) = body.get(NFGENMSG..) {
                    each(attrs);
                }
            }
            _ => {}
        }
        if len < HEADER {
            break;
        }
        at += align4(len);
    }
    Ok(false)
}

/// Reads one receive buffer of a rule dump, adding the chains its rules
/// jump to to `out`. `Ok(true)` when the dump is complete, `Err(errno)`
/// when the kernel refused it; anything unreadable is skipped.
pub fn parse_rule_jumps(buf: &[u8], out: &mut Vec<String>) -> Result<bool, i32> {
    parse_dump(buf, MSG_NEWRULE, &mut |rule| rule_jumps(rule, out))
}

/// Reads one receive buffer of a set-element dump, adding the chains its
/// elements go to to `out`; as [`parse_rule_jumps`] otherwise.
pub fn parse_element_verdicts(buf: &[u8], out: &mut Vec<String>) -> Result<bool, i32> {
    parse_dump(buf, MSG_NEWSETELEM, &mut |elements| {
        element_verdicts(elements, out)
    })
}

/// Sends `request` and reads the dump it asks for with `parse`; `what` it
/// reads, for errors. Empty when the table, chain or set does not exist.
fn dump(
    request: &[u8],
    what: &str,
    parse: fn(&[u8], &mut Vec<String>) -> Result<bool, i32>,
) -> Result<Vec<String>, KernelError> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(KernelError::Socket)?;
    sock.bind_auto().map_err(KernelError::Socket)?;
    sock.send_to(request, &SocketAddr::new(0, 0), 0)
        .map_err(|e| KernelError::request(format!("asking nf_tables for {what}"), e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut found = Vec::new();
    loop {
        let (n, _) = sock
            .recv_from(&mut &mut buf[..], 0)
            .map_err(|e| KernelError::request(format!("reading {what} from nf_tables"), e))?;
        match parse(&buf[..n], &mut found) {
            Ok(true) => return Ok(found),
            Ok(false) if n == 0 => return Ok(found),
            Ok(false) => {}
            // no nf_tables in this kernel: nothing there
            Err(errno) if errno == ENOENT || errno == EAFNOSUPPORT => return Ok(Vec::new()),
            Err(errno) => {
                return Err(KernelError::request(
                    format!("dumping {what} from nf_tables"),
                    io::Error::from_raw_os_error(errno),
                ))
            }
        }
    }
}

/// The chains the rules of `chain` in `table` (family `family`, e.g.
/// [`NFPROTO_IPV4`]) jump or go to, in rule order; empty when the table
/// or chain does not exist.
pub fn chain_jumps(family: u8, table: &str, chain: &str) -> Result<Vec<String>, KernelError> {
    let request = dump_request(
        MSG_GETRULE,
        family,
        [(RULE_TABLE, table), (RULE_CHAIN, chain)],
    );
    dump(&request, "a chain's rules", parse_rule_jumps)
}

/// The chains the elements of verdict map `map` in `table` go to, one per
/// element that names a chain; empty when the table or map does not exist.
pub fn map_verdict_chains(family: u8, table: &str, map: &str) -> Result<Vec<String>, KernelError> {
    let request = dump_request(
        MSG_GETSETELEM,
        family,
        [(ELEMS_TABLE, table), (ELEMS_SET, map)],
    );
    dump(&request, "a map's elements", parse_element_verdicts)
}

const ENOENT: i32 = 2;
const EAFNOSUPPORT: i32 = 97;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nla::put_attr;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        put_attr(&mut m, kind, value);
        m
    }

    fn str_attr(kind: u16, s: &str) -> Vec<u8> {
        let mut m = Vec::new();
        put_str(&mut m, kind, s);
        m
    }

    /// An nf_tables message of type `msg` around `body` (nfgenmsg and
    /// attributes).
    fn nf_tables_message(msg: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((HEADER + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    /// A NEWRULE message holding one `immediate` jump to `target`.
    fn rule_message(target: &str) -> Vec<u8> {
        let verdict = [
            attr(1, &(-3i32).to_be_bytes()),
            str_attr(VERDICT_CHAIN, target),
        ]
        .concat();
        let data = attr(IMMEDIATE_DATA, &attr(DATA_VERDICT, &verdict));
        let expr = [
            str_attr(EXPR_NAME, "immediate"),
            attr(EXPR_DATA, &[attr(1, &0u32.to_be_bytes()), data].concat()),
        ]
        .concat();
        let counter = str_attr(EXPR_NAME, "counter");
        let exprs = [attr(LIST_ELEM, &counter), attr(LIST_ELEM, &expr)].concat();
        let body = [
            vec![NFPROTO_IPV4, 0, 0, 0],
            str_attr(RULE_TABLE, "nat"),
            str_attr(RULE_CHAIN, "PREROUTING"),
            attr(RULE_EXPRESSIONS, &exprs),
        ]
        .concat();
        nf_tables_message(MSG_NEWRULE, &body)
    }

    fn done() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 14]);
        m
    }

    #[test]
    fn jumps_are_read_from_immediate_verdicts() {
        let buf = [
            rule_message("KUBE-SERVICES"),
            rule_message("DOCKER"),
            done(),
        ]
        .concat();
        let mut out = Vec::new();
        assert_eq!(parse_rule_jumps(&buf, &mut out), Ok(true));
        assert_eq!(out, ["KUBE-SERVICES", "DOCKER"]);
    }

    /// A NEWSETELEM message of map `service-ips` whose elements go to
    /// `targets` (an empty name: an element with no chain, e.g. `drop`).
    fn element_message(targets: &[&str]) -> Vec<u8> {
        let elements: Vec<u8> = targets
            .iter()
            .map(|t| {
                let mut verdict = attr(1, &(-4i32).to_be_bytes());
                if !t.is_empty() {
                    verdict.extend(str_attr(VERDICT_CHAIN, t));
                }
                let data = attr(DATA_VERDICT, &verdict);
                attr(
                    LIST_ELEM,
                    &[attr(1, b"key"), attr(ELEM_DATA, &data)].concat(),
                )
            })
            .collect::<Vec<_>>()
            .concat();
        let body = [
            vec![NFPROTO_IPV4, 0, 0, 0],
            str_attr(ELEMS_TABLE, "kube-proxy"),
            str_attr(ELEMS_SET, "service-ips"),
            attr(ELEMS_ELEMENTS, &elements),
        ]
        .concat();
        nf_tables_message(MSG_NEWSETELEM, &body)
    }

    #[test]
    fn a_verdict_maps_chains_are_read_from_its_elements() {
        let buf = [
            element_message(&["service-A-default/a/tcp/p", "", "external-B"]),
            element_message(&["service-C"]),
            done(),
        ]
        .concat();
        let mut out = Vec::new();
        assert_eq!(parse_element_verdicts(&buf, &mut out), Ok(true));
        assert_eq!(
            out,
            ["service-A-default/a/tcp/p", "external-B", "service-C"]
        );
        // a rule dump's parser skips element messages, and the other way
        out.clear();
        assert_eq!(parse_rule_jumps(&buf, &mut out), Ok(true));
        assert!(out.is_empty());
        let whole = element_message(&["service-A"]);
        for cut in 0..whole.len() {
            out.clear();
            assert_eq!(parse_element_verdicts(&whole[..cut], &mut out), Ok(false));
        }
    }

    /// Dumps this kernel sent (fuzz/corpus/nft_rule_dump): iptables-nft's
    /// `-j KUBE-SERVICES` beside a DNAT rule, nft's `jump services`, and
    /// a table that does not exist.
    #[test]
    fn real_dumps_are_read() {
        let read = |buf: &[u8]| {
            let mut out = Vec::new();
            assert_eq!(parse_rule_jumps(buf, &mut out), Ok(true));
            out
        };
        let corpus = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/nft_rule_dump/"
        );
        let file = |name: &str| std::fs::read(format!("{corpus}{name}")).expect("corpus file");
        assert_eq!(read(&file("iptables_nft_prerouting")), ["KUBE-SERVICES"]);
        assert_eq!(read(&file("nftables_nat_prerouting")), ["services"]);
        assert!(read(&file("absent_table")).is_empty());
    }

    #[test]
    fn truncated_and_garbage_buffers_are_skipped() {
        let whole = rule_message("KUBE-SERVICES");
        for cut in 0..whole.len() {
            let mut out = Vec::new();
            assert_eq!(parse_rule_jumps(&whole[..cut], &mut out), Ok(false));
        }
        let mut out = Vec::new();
        let _ = parse_rule_jumps(&[0xff; 64], &mut out);
    }

    #[test]
    fn the_request_names_table_and_chain() {
        let names = [(RULE_TABLE, "kube-proxy"), (RULE_CHAIN, "nat-prerouting")];
        let m = dump_request(MSG_GETRULE, NFPROTO_IPV6, names);
        let kind = u16::from_ne_bytes([m[4], m[5]]);
        assert_eq!(kind, (SUBSYS_NFTABLES << 8) | MSG_GETRULE);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(m[16], NFPROTO_IPV6);
        let names: Vec<String> = attributes(&m[20..]).map(|(_, v)| c_string(v)).collect();
        assert_eq!(names, ["kube-proxy", "nat-prerouting"]);
    }
}

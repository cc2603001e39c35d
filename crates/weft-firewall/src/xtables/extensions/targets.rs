//! `-j` extensions: MARK, DNAT, MASQUERADE, REJECT (verdicts and chains
//! are the rule's own business), each built as its kernel structure.

use zerocopy::{FromZeros, IntoBytes};

use super::{inet_addr, no_repeats, number, require, unsupported, value_mask, Opt};
use crate::xtables::abi::{self, Family};
use crate::xtables::rule_error::RuleError;
use crate::xtables::structs::{
    NfNatIpv4MultiRangeCompat, NfNatRange, NfNatRange2, RejectInfo, XtMarkTginfo2,
};

/// A NAT range: flags, the addresses (min = max here), the ports (network
/// order).
struct NatRange {
    flags: u32,
    addr: [u8; 16],
    ports: (u16, u16),
}

/// `ip[:port[-port]]`, IPv6 addresses in brackets.
fn nat_range(family: Family, opt: &Opt) -> Result<NatRange, RuleError> {
    let text = opt.one()?;
    let (addrs, ports) = match family {
        Family::V4 => match text.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        },
        Family::V6 => match text.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((a, p)) => (a, p.strip_prefix(':')),
                None => {
                    return Err(RuleError::Invalid(format!(
                        "{} {text:?}: missing ]",
                        opt.name
                    )))
                }
            },
            None => (text, None),
        },
    };
    if addrs.contains('-') {
        return Err(RuleError::Unsupported(format!("address range {addrs}")));
    }
    let a = inet_addr(family, opt, addrs)?;
    let mut flags = 1; // NF_NAT_RANGE_MAP_IPS
    let (lo, hi) = match ports {
        None => (0, 0),
        Some(p) => {
            flags |= 2; // NF_NAT_RANGE_PROTO_SPECIFIED
            match p.split_once('-') {
                Some((x, y)) => (number(opt, x)?, number(opt, y)?),
                None => {
                    let x = number(opt, p)?;
                    (x, x)
                }
            }
        }
    };
    Ok(NatRange {
        flags,
        addr: a,
        ports: (u16::to_be(lo), u16::to_be(hi)),
    })
}

/// Appends the target extension `name` to `out`; `false` when `name` is
/// not one (then it is a chain).
pub fn encode_target(
    out: &mut Vec<u8>,
    family: Family,
    name: &str,
    opts: &[Opt],
) -> Result<bool, RuleError> {
    no_repeats(name, opts)?;
    // (revision, the structure's bytes), as iptables 1.8 writes them
    let (revision, data): (u8, Vec<u8>) = match name {
        "MARK" => (2, mark(opts)?.as_bytes().to_vec()),
        "DNAT" => (2, dnat(family, opts)?.as_bytes().to_vec()),
        "MASQUERADE" => (0, masquerade(family, opts)?),
        "REJECT" => (0, reject(family, opts)?.as_bytes().to_vec()),
        // targets that exist but are not encoded here (some need no
        // options, so they must not be taken for chains)
        "SNAT" | "LOG" | "NFLOG" | "NFQUEUE" | "CONNMARK" | "CT" | "TPROXY" | "REDIRECT"
        | "NOTRACK" | "TRACE" | "TCPMSS" | "AUDIT" | "CHECKSUM" | "CLASSIFY" | "DSCP" | "TOS"
        | "ECN" | "TTL" | "HL" | "NETMAP" | "SET" | "SYNPROXY" | "TEE" | "SECMARK"
        | "CONNSECMARK" | "HMARK" | "IDLETIMER" | "LED" | "RATEEST" | "CLUSTERIP"
        | "TCPOPTSTRIP" => return Err(RuleError::Unsupported(format!("target {name}"))),
        _ => return Ok(false),
    };
    abi::push_extension(out, name, revision, &data);
    Ok(true)
}

fn mark(opts: &[Opt]) -> Result<XtMarkTginfo2, RuleError> {
    require("-j MARK", opts, &["--set-xmark"])?;
    let mut m = XtMarkTginfo2::new_zeroed();
    for o in opts {
        o.no_invert()?;
        match o.name {
            "--set-xmark" => (m.mark, m.mask) = value_mask(o, o.one()?)?,
            _ => return Err(unsupported("MARK", o)),
        }
    }
    Ok(m)
}

fn dnat(family: Family, opts: &[Opt]) -> Result<NfNatRange2, RuleError> {
    require("-j DNAT", opts, &["--to-destination"])?;
    let mut d = NfNatRange2::new_zeroed();
    for o in opts {
        o.no_invert()?;
        match o.name {
            "--to-destination" => {
                let r = nat_range(family, o)?;
                d.flags = r.flags;
                d.min_addr = r.addr;
                d.max_addr = r.addr;
                (d.min_proto, d.max_proto) = r.ports;
            }
            _ => return Err(unsupported("DNAT", o)),
        }
    }
    Ok(d)
}

fn masquerade(family: Family, opts: &[Opt]) -> Result<Vec<u8>, RuleError> {
    let mut flags = 0u32;
    for o in opts {
        o.no_invert()?;
        o.none()?;
        flags |= match o.name {
            "--random" => 4,        // NF_NAT_RANGE_PROTO_RANDOM
            "--random-fully" => 16, // NF_NAT_RANGE_PROTO_RANDOM_FULLY
            _ => return Err(unsupported("MASQUERADE", o)),
        };
    }
    Ok(match family {
        // one range of the compat structure
        Family::V4 => {
            let mut m = NfNatIpv4MultiRangeCompat::new_zeroed();
            m.rangesize = 1;
            m.flags = flags;
            m.as_bytes().to_vec()
        }
        Family::V6 => {
            let mut m = NfNatRange::new_zeroed();
            m.flags = flags;
            m.as_bytes().to_vec()
        }
    })
}

/// `--reject-with` names by value (`enum ipt_reject_with` /
/// `ip6t_reject_with`).
fn reject_names(family: Family) -> &'static [&'static str] {
    match family {
        Family::V4 => &[
            "icmp-net-unreachable",
            "icmp-host-unreachable",
            "icmp-proto-unreachable",
            "icmp-port-unreachable",
            "icmp-echo-reply",
            "icmp-net-prohibited",
            "icmp-host-prohibited",
            "tcp-reset",
            "icmp-admin-prohibited",
        ],
        Family::V6 => &[
            "icmp6-no-route",
            "icmp6-adm-prohibited",
            "icmp6-not-neighbour",
            "icmp6-addr-unreachable",
            "icmp6-port-unreachable",
            "icmp6-echo-reply",
            "tcp-reset",
            "icmp6-policy-fail",
            "icmp6-reject-route",
        ],
    }
}

fn reject(family: Family, opts: &[Opt]) -> Result<RejectInfo, RuleError> {
    // the port-unreachable default of each family
    let mut r = RejectInfo {
        with: if family == Family::V4 { 3 } else { 4 },
    };
    for o in opts {
        o.no_invert()?;
        match o.name {
            "--reject-with" => {
                let v = o.one()?;
                let names = reject_names(family);
                r.with = names
                    .iter()
                    .position(|n| *n == v)
                    .ok_or_else(|| RuleError::Unsupported(format!("--reject-with {v}")))?
                    as u32;
            }
            _ => return Err(unsupported("REJECT", o)),
        }
    }
    Ok(r)
}

//! `-j` extensions: MARK, DNAT, MASQUERADE, REJECT (verdicts and chains
//! are the rule's own business).

use super::{inet_addr, no_repeats, number, require, unsupported, value_mask, Opt};
use crate::xtables::abi::{self, Family};
use crate::xtables::rule_error::RuleError;

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
    match name {
        "MARK" => require("-j MARK", opts, &["--set-xmark"])?,
        "DNAT" => require("-j DNAT", opts, &["--to-destination"])?,
        _ => {}
    }
    match name {
        "MARK" => {
            // struct xt_mark_tginfo2: mark, mask
            let mut data = [0u8; 8];
            for o in opts {
                o.no_invert()?;
                match o.name {
                    "--set-xmark" => {
                        let (v, m) = value_mask(o, o.one()?)?;
                        abi::put_u32(&mut data, 0, v);
                        abi::put_u32(&mut data, 4, m);
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 2, &data)
        }
        "DNAT" => {
            // struct nf_nat_range2: flags, min_addr, max_addr, min_proto,
            // max_proto, base_proto
            let mut data = [0u8; 42];
            for o in opts {
                o.no_invert()?;
                match o.name {
                    "--to-destination" => {
                        let r = nat_range(family, o)?;
                        abi::put_u32(&mut data, 0, r.flags);
                        data[4..20].copy_from_slice(&r.addr);
                        data[20..36].copy_from_slice(&r.addr);
                        abi::put_u16(&mut data, 36, r.ports.0);
                        abi::put_u16(&mut data, 38, r.ports.1);
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 2, &data)
        }
        "MASQUERADE" => {
            let mut flags = 0u32;
            for o in opts {
                o.no_invert()?;
                o.none()?;
                flags |= match o.name {
                    "--random" => 4,        // NF_NAT_RANGE_PROTO_RANDOM
                    "--random-fully" => 16, // NF_NAT_RANGE_PROTO_RANDOM_FULLY
                    _ => return Err(unsupported(name, o)),
                };
            }
            match family {
                // struct nf_nat_ipv4_multi_range_compat: rangesize = 1, then
                // one range: flags, min_ip, max_ip, min, max
                Family::V4 => {
                    let mut data = [0u8; 20];
                    abi::put_u32(&mut data, 0, 1);
                    abi::put_u32(&mut data, 4, flags);
                    abi::push_extension(out, name, 0, &data)
                }
                // struct nf_nat_range
                Family::V6 => {
                    let mut data = [0u8; 40];
                    abi::put_u32(&mut data, 0, flags);
                    abi::push_extension(out, name, 0, &data)
                }
            }
        }
        "REJECT" => {
            let names: &[&str] = match family {
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
            };
            let mut with = if family == Family::V4 { 3 } else { 4 };
            for o in opts {
                o.no_invert()?;
                match o.name {
                    "--reject-with" => {
                        let v = o.one()?;
                        with =
                            names.iter().position(|n| *n == v).ok_or_else(|| {
                                RuleError::Unsupported(format!("--reject-with {v}"))
                            })? as u32;
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 0, &with.to_ne_bytes())
        }
        // targets that exist but are not encoded here (some need no
        // options, so they must not be taken for chains)
        "SNAT" | "LOG" | "NFLOG" | "NFQUEUE" | "CONNMARK" | "CT" | "TPROXY" | "REDIRECT"
        | "NOTRACK" | "TRACE" | "TCPMSS" | "AUDIT" | "CHECKSUM" | "CLASSIFY" | "DSCP" | "TOS"
        | "ECN" | "TTL" | "HL" | "NETMAP" | "SET" | "SYNPROXY" | "TEE" | "SECMARK"
        | "CONNSECMARK" | "HMARK" | "IDLETIMER" | "LED" | "RATEEST" | "CLUSTERIP"
        | "TCPOPTSTRIP" => return Err(RuleError::Unsupported(format!("target {name}"))),
        _ => return Ok(false),
    }
    Ok(true)
}

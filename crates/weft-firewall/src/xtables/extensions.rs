//! The match and target extensions kube-proxy's and flannel's rules use,
//! encoded as `iptables` 1.8 does on a current kernel (the revisions it
//! picks, the defaults it fills in), so that what `iptables-save` prints
//! back is the same. Layouts from `<linux/netfilter/xt_*.h>`.

use std::borrow::Cow;
use std::net::IpAddr;

use super::abi::{self, Family};
use super::rule::RuleError;

/// One `--option value…` of an extension, `!` before it setting `invert`.
#[derive(Debug, Clone)]
pub struct Opt<'a> {
    pub invert: bool,
    pub name: &'a str,
    pub values: &'a [Cow<'a, str>],
}

/// The options of one extension, from the words after its name.
pub fn opts<'a>(words: &'a [Cow<'a, str>]) -> Result<Vec<Opt<'a>>, RuleError> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut invert = false;
    while i < words.len() {
        let w = &*words[i];
        if w == "!" {
            invert = true;
            i += 1;
            continue;
        }
        if !w.starts_with("--") {
            return Err(RuleError::Invalid(format!("{w:?} is not an option")));
        }
        let from = i + 1;
        i = from;
        while i < words.len() && !words[i].starts_with('-') && words[i] != "!" {
            i += 1;
        }
        out.push(Opt {
            invert: std::mem::take(&mut invert),
            name: w,
            values: &words[from..i],
        });
    }
    if invert {
        return Err(RuleError::Invalid("! at the end".into()));
    }
    Ok(out)
}

impl Opt<'_> {
    fn one(&self) -> Result<&str, RuleError> {
        match self.values {
            [v] => Ok(v),
            _ => Err(RuleError::Invalid(format!("{} takes one value", self.name))),
        }
    }

    fn none(&self) -> Result<(), RuleError> {
        if self.values.is_empty() {
            Ok(())
        } else {
            Err(RuleError::Invalid(format!("{} takes no value", self.name)))
        }
    }

    fn no_invert(&self) -> Result<(), RuleError> {
        if self.invert {
            Err(RuleError::Unsupported(format!("! {}", self.name)))
        } else {
            Ok(())
        }
    }
}

/// An option given twice is refused (iptables refuses it too, or keeps
/// only one of them).
fn no_repeats(ext: &str, opts: &[Opt]) -> Result<(), RuleError> {
    for (i, o) in opts.iter().enumerate() {
        if opts[..i].iter().any(|p| p.name == o.name) {
            return Err(RuleError::Invalid(format!("{ext}: {} given twice", o.name)));
        }
    }
    Ok(())
}

/// `ext` needs one of `names`.
fn require(ext: &str, opts: &[Opt], names: &[&str]) -> Result<(), RuleError> {
    if opts.iter().any(|o| names.contains(&o.name)) {
        Ok(())
    } else {
        Err(RuleError::Invalid(format!(
            "{ext} needs {}",
            names.join(" or ")
        )))
    }
}

fn unsupported(what: &str, opt: &Opt) -> RuleError {
    RuleError::Unsupported(format!("{what} option {}", opt.name))
}

fn number<T: std::str::FromStr>(opt: &Opt, text: &str) -> Result<T, RuleError> {
    text.parse()
        .map_err(|_| RuleError::Invalid(format!("{} {text:?} is not a number", opt.name)))
}

/// `0x4000`, `16384`.
fn u32_value(opt: &Opt, text: &str) -> Result<u32, RuleError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.ok_or_else(|| RuleError::Invalid(format!("{} {text:?} is not a number", opt.name)))
}

/// `value[/mask]`, the mask all ones when absent.
fn value_mask(opt: &Opt, text: &str) -> Result<(u32, u32), RuleError> {
    match text.split_once('/') {
        Some((v, m)) => Ok((u32_value(opt, v)?, u32_value(opt, m)?)),
        None => Ok((u32_value(opt, text)?, u32::MAX)),
    }
}

/// `80` or `80:90`.
fn port_range(opt: &Opt, text: &str) -> Result<(u16, u16), RuleError> {
    match text.split_once(':') {
        Some((a, b)) => Ok((number(opt, a)?, number(opt, b)?)),
        None => {
            let p = number(opt, text)?;
            Ok((p, p))
        }
    }
}

/// A name copied into a fixed, NUL-terminated field.
fn fixed_name(opt: &Opt, text: &str, field: &mut [u8]) -> Result<(), RuleError> {
    if text.len() >= field.len() {
        return Err(RuleError::Invalid(format!(
            "{} is longer than {} characters",
            opt.name,
            field.len() - 1
        )));
    }
    field[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// An address in a `union nf_inet_addr` (16 bytes).
fn inet_addr(family: Family, opt: &Opt, text: &str) -> Result<[u8; 16], RuleError> {
    let mut out = [0u8; 16];
    match (text.parse::<IpAddr>(), family) {
        (Ok(IpAddr::V4(a)), Family::V4) => out[..4].copy_from_slice(&a.octets()),
        (Ok(IpAddr::V6(a)), Family::V6) => out.copy_from_slice(&a.octets()),
        _ => {
            return Err(RuleError::Invalid(format!(
                "{} {text:?} is not an {} address",
                opt.name,
                if family == Family::V4 { "IPv4" } else { "IPv6" }
            )))
        }
    }
    Ok(out)
}

/// Appends the match `name` with its options to `out`.
pub fn encode_match(
    out: &mut Vec<u8>,
    family: Family,
    name: &str,
    proto: Option<&str>,
    opts: &[Opt],
) -> Result<(), RuleError> {
    no_repeats(name, opts)?;
    match name {
        "comment" | "mark" | "nfacct" | "conntrack" | "addrtype" | "recent" => {
            let needed: &[&str] = match name {
                "comment" => &["--comment"],
                "mark" => &["--mark"],
                "nfacct" => &["--nfacct-name"],
                "conntrack" => &["--ctstate"],
                "addrtype" => &["--src-type", "--dst-type"],
                _ => &["--set", "--rcheck", "--update", "--remove"],
            };
            require(&format!("-m {name}"), opts, needed)?;
        }
        _ => {}
    }
    match name {
        "comment" => {
            let mut data = [0u8; 256];
            for o in opts {
                match o.name {
                    "--comment" => {
                        o.no_invert()?;
                        fixed_name(o, o.one()?, &mut data)?;
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 0, &data);
            Ok(())
        }
        "tcp" | "udp" => {
            if proto != Some(name) {
                return Err(RuleError::Invalid(format!("-m {name} needs -p {name}")));
            }
            // struct xt_tcp / xt_udp: spts[2], dpts[2], then (tcp) option,
            // flg_mask, flg_cmp, invflags or (udp) invflags
            let mut data = vec![0u8; if name == "tcp" { 12 } else { 10 }];
            // invflags: the last field (udp's struct ends in padding)
            let inv_at = if name == "tcp" { 11 } else { 8 };
            abi::put_u16(&mut data, 2, u16::MAX);
            abi::put_u16(&mut data, 6, u16::MAX);
            for o in opts {
                let (at, inv) = match o.name {
                    "--sport" | "--source-port" => (0, 0x01),
                    "--dport" | "--destination-port" => (4, 0x02),
                    _ => return Err(unsupported(name, o)),
                };
                let (lo, hi) = port_range(o, o.one()?)?;
                abi::put_u16(&mut data, at, lo);
                abi::put_u16(&mut data, at + 2, hi);
                if o.invert {
                    data[inv_at] |= inv;
                }
            }
            abi::push_extension(out, name, 0, &data);
            Ok(())
        }
        "sctp" => {
            if proto != Some(name) {
                return Err(RuleError::Invalid("-m sctp needs -p sctp".into()));
            }
            // struct xt_sctp_info: dpts[2], spts[2], chunkmap[64],
            // chunk_match_type, flag_info[4], flag_count, flags, invflags
            // (unlike tcp and udp, ports not given stay 0:0; the flags'
            // chunk types start as 0xff)
            let mut data = [0u8; 292];
            for i in 0..4 {
                data[268 + 3 * i] = 0xff;
            }
            for o in opts {
                let (at, bit) = match o.name {
                    "--sport" | "--source-port" => (4, 0x01),
                    "--dport" | "--destination-port" => (0, 0x02),
                    _ => return Err(unsupported(name, o)),
                };
                let (lo, hi) = port_range(o, o.one()?)?;
                abi::put_u16(&mut data, at, lo);
                abi::put_u16(&mut data, at + 2, hi);
                let flags = abi::read_u32(&data, 284) | bit;
                abi::put_u32(&mut data, 284, flags);
                if o.invert {
                    let inv = abi::read_u32(&data, 288) | bit;
                    abi::put_u32(&mut data, 288, inv);
                }
            }
            abi::push_extension(out, name, 0, &data);
            Ok(())
        }
        "statistic" => {
            // struct xt_statistic_info: mode, flags (u16), probability (u32),
            // then nth's fields and the kernel's pointer, zero
            let mut data = [0u8; 24];
            let mut random = false;
            for o in opts {
                match o.name {
                    "--mode" => {
                        o.no_invert()?;
                        if o.one()? != "random" {
                            return Err(RuleError::Unsupported(format!(
                                "statistic mode {}",
                                o.one()?
                            )));
                        }
                        random = true;
                    }
                    "--probability" => {
                        let p: f64 = number(o, o.one()?)?;
                        if !(0.0..=1.0).contains(&p) {
                            return Err(RuleError::Invalid(format!(
                                "--probability {p} is not in 0…1"
                            )));
                        }
                        // as libxt_statistic: lround(0x80000000 * p)
                        let v = (p * 2147483648.0).round() as u32;
                        abi::put_u32(&mut data, 4, v);
                        // iptables also copies it into nth's count, which
                        // shares the union (`count = every`)
                        abi::put_u32(&mut data, 12, v);
                        if o.invert {
                            abi::put_u16(&mut data, 2, 1);
                        }
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            if random {
                require("-m statistic --mode random", opts, &["--probability"])?;
            } else {
                return Err(RuleError::Unsupported(
                    "statistic without --mode random".into(),
                ));
            }
            abi::push_extension(out, name, 0, &data);
            Ok(())
        }
        "mark" => {
            // struct xt_mark_mtinfo1: mark, mask, invert
            let mut data = [0u8; 9];
            for o in opts {
                match o.name {
                    "--mark" => {
                        let (v, m) = value_mask(o, o.one()?)?;
                        abi::put_u32(&mut data, 0, v);
                        abi::put_u32(&mut data, 4, m);
                        data[8] = o.invert as u8;
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 1, &data);
            Ok(())
        }
        "conntrack" => {
            // struct xt_conntrack_mtinfo3: only --ctstate is written here
            let mut data = [0u8; 164];
            for o in opts {
                match o.name {
                    "--ctstate" => {
                        let mut mask = 0u16;
                        for s in o.one()?.split(',') {
                            mask |= match s {
                                "INVALID" => 1,
                                "ESTABLISHED" => 2,
                                "RELATED" => 4,
                                "NEW" => 8,
                                "SNAT" => 64,
                                "DNAT" => 128,
                                "UNTRACKED" => 256,
                                _ => {
                                    return Err(RuleError::Invalid(format!(
                                        "--ctstate {s:?} is not a state"
                                    )))
                                }
                            };
                        }
                        let flags = abi::read_u16(&data, 146) | 1;
                        abi::put_u16(&mut data, 146, flags);
                        if o.invert {
                            let inv = abi::read_u16(&data, 148) | 1;
                            abi::put_u16(&mut data, 148, inv);
                        }
                        abi::put_u16(&mut data, 150, mask);
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 3, &data);
            Ok(())
        }
        "addrtype" => {
            // struct xt_addrtype_info_v1: source, dest (u16), flags (u32)
            let mut data = [0u8; 8];
            for o in opts {
                let (at, inv) = match o.name {
                    "--src-type" => (0, 1u32),
                    "--dst-type" => (2, 2u32),
                    _ => return Err(unsupported(name, o)),
                };
                let mut bits = 0u16;
                for t in o.one()?.split(',') {
                    let i = [
                        "UNSPEC",
                        "UNICAST",
                        "LOCAL",
                        "BROADCAST",
                        "ANYCAST",
                        "MULTICAST",
                        "BLACKHOLE",
                        "UNREACHABLE",
                        "PROHIBIT",
                        "THROW",
                        "NAT",
                        "XRESOLVE",
                    ]
                    .iter()
                    .position(|n| *n == t)
                    .ok_or_else(|| {
                        RuleError::Invalid(format!("{} {t:?} is not an address type", o.name))
                    })?;
                    bits |= 1 << i;
                }
                abi::put_u16(&mut data, at, bits);
                if o.invert {
                    let flags = abi::read_u32(&data, 4) | inv;
                    abi::put_u32(&mut data, 4, flags);
                }
            }
            abi::push_extension(out, name, 1, &data);
            Ok(())
        }
        "recent" => {
            // struct xt_recent_mtinfo_v1: seconds, hit_count (u32),
            // check_set, invert (u8), name[200], side (u8), mask (16)
            let mut data = [0u8; 228];
            data[10..17].copy_from_slice(b"DEFAULT");
            data[212..228].fill(0xff);
            for o in opts {
                o.no_invert()?;
                match o.name {
                    "--set" | "--rcheck" | "--update" | "--remove" | "--reap" | "--rttl" => {
                        o.none()?;
                        data[8] |= match o.name {
                            "--rcheck" => 0x01,
                            "--set" => 0x02,
                            "--update" => 0x04,
                            "--remove" => 0x08,
                            "--rttl" => 0x10,
                            _ => 0x20,
                        };
                    }
                    "--seconds" => abi::put_u32(&mut data, 0, number(o, o.one()?)?),
                    "--hitcount" => abi::put_u32(&mut data, 4, number(o, o.one()?)?),
                    "--name" => {
                        data[10..210].fill(0);
                        fixed_name(o, o.one()?, &mut data[10..210])?;
                    }
                    "--rsource" => data[210] = 0,
                    "--rdest" => data[210] = 1,
                    "--mask" => {
                        let a = inet_addr(family, o, o.one()?)?;
                        data[212..228].copy_from_slice(&a);
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 1, &data);
            Ok(())
        }
        "nfacct" => {
            // struct xt_nfacct_match_info_v1 (iptables writes revision 1):
            // name[32], the kernel's pointer
            let mut data = [0u8; 40];
            for o in opts {
                match o.name {
                    "--nfacct-name" => {
                        o.no_invert()?;
                        fixed_name(o, o.one()?, &mut data[..32])?;
                    }
                    _ => return Err(unsupported(name, o)),
                }
            }
            abi::push_extension(out, name, 1, &data);
            Ok(())
        }
        _ => Err(RuleError::Unsupported(format!("match {name}"))),
    }
}

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

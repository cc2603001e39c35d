//! `-m` extensions: comment, tcp, udp, sctp, statistic, mark, conntrack,
//! addrtype, recent, nfacct. Each builds its kernel structure
//! ([`crate::xtables::structs`]) from its options, then appends it.

use zerocopy::{FromZeros, IntoBytes};

use super::{
    fixed_name, inet_addr, no_repeats, number, port_range, require, unsupported, value_mask, Opt,
};
use crate::xtables::abi::{self, Family};
use crate::xtables::rule_error::RuleError;
use crate::xtables::structs::{
    XtAddrtypeInfoV1, XtCommentInfo, XtConntrackMtinfo3, XtMarkMtinfo1, XtNfacctMatchInfoV1,
    XtRecentMtinfoV1, XtSctpInfo, XtStatisticInfo, XtTcp, XtUdp,
};

/// Options without which a match means nothing.
fn required(name: &str) -> &'static [&'static str] {
    match name {
        "comment" => &["--comment"],
        "mark" => &["--mark"],
        "nfacct" => &["--nfacct-name"],
        "conntrack" => &["--ctstate"],
        "addrtype" => &["--src-type", "--dst-type"],
        "recent" => &["--set", "--rcheck", "--update", "--remove"],
        _ => &[],
    }
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
    let needed = required(name);
    if !needed.is_empty() {
        require(&format!("-m {name}"), opts, needed)?;
    }
    // (revision, the structure's bytes), as iptables 1.8 writes them
    let (revision, data): (u8, Vec<u8>) = match name {
        "comment" => (0, comment(opts)?.as_bytes().to_vec()),
        "tcp" => (0, tcp(proto, opts)?.as_bytes().to_vec()),
        "udp" => (0, udp(proto, opts)?.as_bytes().to_vec()),
        "sctp" => (0, sctp(proto, opts)?.as_bytes().to_vec()),
        "statistic" => (0, statistic(opts)?.as_bytes().to_vec()),
        "mark" => (1, mark(opts)?.as_bytes().to_vec()),
        "conntrack" => (3, conntrack(opts)?.as_bytes().to_vec()),
        "addrtype" => (1, addrtype(opts)?.as_bytes().to_vec()),
        "recent" => (1, recent(family, opts)?.as_bytes().to_vec()),
        "nfacct" => (1, nfacct(opts)?.as_bytes().to_vec()),
        _ => return Err(RuleError::Unsupported(format!("match {name}"))),
    };
    abi::push_extension(out, name, revision, &data);
    Ok(())
}

fn comment(opts: &[Opt]) -> Result<XtCommentInfo, RuleError> {
    let mut c = XtCommentInfo::new_zeroed();
    for o in opts {
        match o.name {
            "--comment" => {
                o.no_invert()?;
                fixed_name(o, o.one()?, &mut c.comment)?;
            }
            _ => return Err(unsupported("comment", o)),
        }
    }
    Ok(c)
}

/// `--sport`/`--dport` of tcp and udp: (source?, low, high, inverted).
fn ports(
    name: &str,
    proto: Option<&str>,
    opts: &[Opt],
) -> Result<Vec<(bool, u16, u16, bool)>, RuleError> {
    if proto != Some(name) {
        return Err(RuleError::Invalid(format!("-m {name} needs -p {name}")));
    }
    opts.iter()
        .map(|o| {
            let source = match o.name {
                "--sport" | "--source-port" => true,
                "--dport" | "--destination-port" => false,
                _ => return Err(unsupported(name, o)),
            };
            let (lo, hi) = port_range(o, o.one()?)?;
            Ok((source, lo, hi, o.invert))
        })
        .collect()
}

/// `XT_TCP_INV_SRCPT`, `XT_TCP_INV_DSTPT` (udp's are the same values).
const INV_SRCPT: u8 = 0x01;
const INV_DSTPT: u8 = 0x02;

fn tcp(proto: Option<&str>, opts: &[Opt]) -> Result<XtTcp, RuleError> {
    // ports not given match all of them
    let mut t = XtTcp {
        spts: [0, u16::MAX],
        dpts: [0, u16::MAX],
        option: 0,
        flg_mask: 0,
        flg_cmp: 0,
        invflags: 0,
    };
    for (source, lo, hi, invert) in ports("tcp", proto, opts)? {
        let (range, inv) = if source {
            (&mut t.spts, INV_SRCPT)
        } else {
            (&mut t.dpts, INV_DSTPT)
        };
        *range = [lo, hi];
        if invert {
            t.invflags |= inv;
        }
    }
    Ok(t)
}

fn udp(proto: Option<&str>, opts: &[Opt]) -> Result<XtUdp, RuleError> {
    let mut u = XtUdp {
        spts: [0, u16::MAX],
        dpts: [0, u16::MAX],
        invflags: 0,
        _pad: 0,
    };
    for (source, lo, hi, invert) in ports("udp", proto, opts)? {
        let (range, inv) = if source {
            (&mut u.spts, INV_SRCPT)
        } else {
            (&mut u.dpts, INV_DSTPT)
        };
        *range = [lo, hi];
        if invert {
            u.invflags |= inv;
        }
    }
    Ok(u)
}

fn sctp(proto: Option<&str>, opts: &[Opt]) -> Result<XtSctpInfo, RuleError> {
    if proto != Some("sctp") {
        return Err(RuleError::Invalid("-m sctp needs -p sctp".into()));
    }
    // unlike tcp and udp, ports not given stay 0:0; the flags' chunk
    // types start as 0xff
    let mut s = XtSctpInfo::new_zeroed();
    for f in &mut s.flag_info {
        f[0] = 0xff;
    }
    for o in opts {
        // XT_SCTP_SRC_PORTS, XT_SCTP_DEST_PORTS
        let (range, bit) = match o.name {
            "--sport" | "--source-port" => (&mut s.spts, 0x01),
            "--dport" | "--destination-port" => (&mut s.dpts, 0x02),
            _ => return Err(unsupported("sctp", o)),
        };
        let (lo, hi) = port_range(o, o.one()?)?;
        *range = [lo, hi];
        s.flags |= bit;
        if o.invert {
            s.invflags |= bit;
        }
    }
    Ok(s)
}

fn statistic(opts: &[Opt]) -> Result<XtStatisticInfo, RuleError> {
    let mut s = XtStatisticInfo::new_zeroed();
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
                // as libxt_statistic: lround(0x80000000 * p); iptables also
                // copies it into nth's count, which shares the union
                s.probability = (p * 2147483648.0).round() as u32;
                s.count = s.probability;
                if o.invert {
                    s.flags = 1; // XT_STATISTIC_INVERT
                }
            }
            _ => return Err(unsupported("statistic", o)),
        }
    }
    if !random {
        return Err(RuleError::Unsupported(
            "statistic without --mode random".into(),
        ));
    }
    require("-m statistic --mode random", opts, &["--probability"])?;
    Ok(s)
}

fn mark(opts: &[Opt]) -> Result<XtMarkMtinfo1, RuleError> {
    let mut m = XtMarkMtinfo1::new_zeroed();
    for o in opts {
        match o.name {
            "--mark" => {
                (m.mark, m.mask) = value_mask(o, o.one()?)?;
                m.invert = o.invert as u8;
            }
            _ => return Err(unsupported("mark", o)),
        }
    }
    Ok(m)
}

/// `XT_CONNTRACK_STATE_BIT`s by name.
fn ct_state(s: &str) -> Result<u16, RuleError> {
    Ok(match s {
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
    })
}

fn conntrack(opts: &[Opt]) -> Result<XtConntrackMtinfo3, RuleError> {
    // only --ctstate is written here
    let mut c = XtConntrackMtinfo3::new_zeroed();
    for o in opts {
        match o.name {
            "--ctstate" => {
                let mut mask = 0u16;
                for s in o.one()?.split(',') {
                    mask |= ct_state(s)?;
                }
                c.match_flags |= 1; // XT_CONNTRACK_STATE
                if o.invert {
                    c.invert_flags |= 1;
                }
                c.state_mask = mask;
            }
            _ => return Err(unsupported("conntrack", o)),
        }
    }
    Ok(c)
}

/// `RTN_*` address types, by bit position.
const ADDRESS_TYPES: [&str; 12] = [
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
];

fn addrtype(opts: &[Opt]) -> Result<XtAddrtypeInfoV1, RuleError> {
    let mut a = XtAddrtypeInfoV1::new_zeroed();
    for o in opts {
        // XT_ADDRTYPE_INVERT_SOURCE, XT_ADDRTYPE_INVERT_DEST
        let (field, inv) = match o.name {
            "--src-type" => (&mut a.source, 1u32),
            "--dst-type" => (&mut a.dest, 2u32),
            _ => return Err(unsupported("addrtype", o)),
        };
        for t in o.one()?.split(',') {
            let i = ADDRESS_TYPES.iter().position(|n| *n == t).ok_or_else(|| {
                RuleError::Invalid(format!("{} {t:?} is not an address type", o.name))
            })?;
            *field |= 1 << i;
        }
        if o.invert {
            a.flags |= inv;
        }
    }
    Ok(a)
}

fn recent(family: Family, opts: &[Opt]) -> Result<XtRecentMtinfoV1, RuleError> {
    let mut r = XtRecentMtinfoV1::new_zeroed();
    r.name = abi::fixed("DEFAULT");
    r.mask = [0xff; 16];
    for o in opts {
        o.no_invert()?;
        match o.name {
            "--set" | "--rcheck" | "--update" | "--remove" | "--reap" | "--rttl" => {
                o.none()?;
                // XT_RECENT_CHECK, SET, UPDATE, REMOVE, TTL, REAP
                r.check_set |= match o.name {
                    "--rcheck" => 0x01,
                    "--set" => 0x02,
                    "--update" => 0x04,
                    "--remove" => 0x08,
                    "--rttl" => 0x10,
                    _ => 0x20,
                };
            }
            "--seconds" => r.seconds = number(o, o.one()?)?,
            "--hitcount" => r.hit_count = number(o, o.one()?)?,
            "--name" => {
                r.name.fill(0);
                fixed_name(o, o.one()?, &mut r.name)?;
            }
            "--rsource" => r.side = 0,
            "--rdest" => r.side = 1,
            "--mask" => r.mask = inet_addr(family, o, o.one()?)?,
            _ => return Err(unsupported("recent", o)),
        }
    }
    Ok(r)
}

fn nfacct(opts: &[Opt]) -> Result<XtNfacctMatchInfoV1, RuleError> {
    let mut n = XtNfacctMatchInfoV1::new_zeroed();
    for o in opts {
        match o.name {
            "--nfacct-name" => {
                o.no_invert()?;
                fixed_name(o, o.one()?, &mut n.name)?;
            }
            _ => return Err(unsupported("nfacct", o)),
        }
    }
    Ok(n)
}

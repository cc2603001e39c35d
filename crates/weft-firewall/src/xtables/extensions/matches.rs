//! `-m` extensions: comment, tcp, udp, sctp, statistic, mark, conntrack,
//! addrtype, recent, nfacct.

use super::{
    fixed_name, inet_addr, no_repeats, number, port_range, require, unsupported, value_mask, Opt,
};
use crate::xtables::abi::{self, Family};
use crate::xtables::rule_error::RuleError;

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

//! One rule in `iptables-save` form (`-s … -p tcp -m comment --comment "…"
//! -m tcp --dport 80 -j KUBE-SVC-…`) encoded as the kernel's entry: the
//! header match (addresses, interfaces, protocol), the matches, the target.
//! Only what kube-proxy's and flannel's rules use is understood; anything
//! else is [`RuleError::Unsupported`], and the caller hands the text to the
//! iptables tools instead.

use std::borrow::Cow;
use std::net::IpAddr;

use super::abi::{self, Family};
use super::extensions;
pub use super::rule_error::RuleError;

/// Where a rule's standard target goes, resolved when the table is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jump {
    /// A verdict or a target extension: the bytes are final.
    Fixed,
    /// `-j CHAIN` (or `-g CHAIN`, with the goto flag in the header).
    Chain(String),
    /// No target: continue with the next rule.
    Next,
}

/// An encoded rule: a whole entry, counters and `comefrom` zero, a jump's
/// verdict zero until laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub entry: Vec<u8>,
    pub jump: Jump,
}

/// Splits a line into words as iptables-restore does: double quotes
/// group (anywhere in a word), a backslash escapes the next character
/// inside them. Words without quotes are borrowed from `line`.
pub fn words(line: &str) -> Result<Vec<Cow<'_, str>>, RuleError> {
    let mut out = Vec::with_capacity(24);
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut quoted = false;
        let mut inside = false;
        while i < b.len() && (inside || !b[i].is_ascii_whitespace()) {
            match b[i] {
                b'"' => {
                    quoted = true;
                    inside = !inside;
                }
                b'\\' if inside => i += 1,
                _ => {}
            }
            i += 1;
        }
        if inside {
            return Err(RuleError::Invalid(format!(
                "unterminated quote in {:?}",
                &line[start..]
            )));
        }
        let word = &line[start..i.min(b.len())];
        out.push(
            match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
                // the usual `"…"` with nothing to resolve inside: borrowed
                Some(inner) if !inner.contains(['"', '\\']) => Cow::Borrowed(inner),
                _ if quoted => Cow::Owned(unquote(word)),
                _ => Cow::Borrowed(word),
            },
        );
    }
    Ok(out)
}

/// A word with its quotes taken out and its escapes resolved.
fn unquote(word: &str) -> String {
    let mut s = String::with_capacity(word.len());
    let mut inside = false;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => s.extend(chars.next()),
            c => s.push(c),
        }
    }
    s
}

/// The protocols rules may name, with their numbers.
fn protocol(name: &str) -> Option<u16> {
    Some(match name {
        "all" => 0,
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        n => return n.parse().ok(),
    })
}

/// Builtin verdicts, and the target extensions [`extensions::target`] knows:
/// any other `-j` name is a chain.
fn verdict(name: &str) -> Option<i32> {
    Some(match name {
        "ACCEPT" => abi::VERDICT_ACCEPT,
        "DROP" => abi::VERDICT_DROP,
        "RETURN" => abi::VERDICT_RETURN,
        "QUEUE" => abi::VERDICT_QUEUE,
        _ => return None,
    })
}

struct Header<'a> {
    bytes: &'a mut [u8],
}

impl Header<'_> {
    fn address(
        &mut self,
        family: Family,
        dst: bool,
        invert: bool,
        text: &str,
    ) -> Result<(), RuleError> {
        let opt = if dst { "-d" } else { "-s" };
        let bad = || RuleError::Invalid(format!("{opt} {text:?} is not an address or network"));
        if text.contains(',') {
            return Err(RuleError::Unsupported(format!("address list {text}")));
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let (octets, max): (Vec<u8>, u32) = match (ip, family) {
            (IpAddr::V4(v), Family::V4) => (v.octets().to_vec(), 32),
            (IpAddr::V6(v), Family::V6) => (v.octets().to_vec(), 128),
            _ => return Err(bad()),
        };
        let prefix: u32 = match prefix {
            None => max,
            Some(p) => match p.parse::<u32>() {
                Ok(n) if n <= max => n,
                // dotted masks are valid iptables, but never written here
                _ => return Err(RuleError::Unsupported(format!("mask {text}"))),
            },
        };
        let len = family.addr_len();
        let mask: Vec<u8> = (0..len)
            .map(|i| {
                let bits = prefix.saturating_sub(8 * i as u32).min(8);
                (0xffu16 << (8 - bits)) as u8
            })
            .collect();
        let (at, mask_at) = if dst { (len, 3 * len) } else { (0, 2 * len) };
        for i in 0..len {
            self.bytes[at + i] = octets[i] & mask[i];
            self.bytes[mask_at + i] = mask[i];
        }
        if invert {
            self.bytes[family.invflags_at()] |= if dst { abi::INV_DSTIP } else { abi::INV_SRCIP };
        }
        Ok(())
    }

    fn interface(
        &mut self,
        family: Family,
        out: bool,
        invert: bool,
        name: &str,
    ) -> Result<(), RuleError> {
        if name.is_empty() || name.len() >= 16 {
            return Err(RuleError::Invalid(format!(
                "{} {name:?} is not an interface name",
                if out { "-o" } else { "-i" }
            )));
        }
        let at = family.iface_at() + if out { 16 } else { 0 };
        let mask_at = at + 32;
        self.bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
        // "eth+" matches a prefix; otherwise the name and its NUL must match
        let masked = match name.strip_suffix('+') {
            Some(prefix) => prefix.len(),
            None => name.len() + 1,
        };
        for b in &mut self.bytes[mask_at..mask_at + masked] {
            *b = 0xff;
        }
        if invert {
            self.bytes[family.invflags_at()] |= if out {
                abi::INV_VIA_OUT
            } else {
                abi::INV_VIA_IN
            };
        }
        Ok(())
    }
}

/// Encodes the words of a rule after `-A CHAIN` as a new entry.
pub fn encode(family: Family, words: &[Cow<str>]) -> Result<Rule, RuleError> {
    let mut entry = Vec::with_capacity(family.entry_size() + 256);
    let jump = encode_into(&mut entry, family, words)?;
    Ok(Rule { entry, jump })
}

/// Where an extension's words are: `-m`/`-j`/`-g`, its name, its options.
struct Extension {
    flag: &'static str,
    at: usize,
    end: usize,
}

/// Encodes the words of a rule after `-A CHAIN`, appending the entry to
/// `out` (nothing is appended on error).
pub fn encode_into(
    out: &mut Vec<u8>,
    family: Family,
    words: &[Cow<str>],
) -> Result<Jump, RuleError> {
    let start = out.len();
    let r = encode_at(out, start, family, words);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_at(
    out: &mut Vec<u8>,
    start: usize,
    family: Family,
    words: &[Cow<str>],
) -> Result<Jump, RuleError> {
    let es = family.entry_size();
    out.resize(start + es, 0);
    let mut proto: Option<&str> = None;
    let mut exts: [Option<Extension>; 12] = Default::default();
    let mut n_ext = 0;
    let mut target: Option<Extension> = None;
    let mut invert = false;
    let mut i = 0;
    let mut seen: Vec<&str> = Vec::new();
    let value = |i: usize, opt: &str| -> Result<&str, RuleError> {
        words
            .get(i + 1)
            .map(|w| &**w)
            .ok_or_else(|| RuleError::Invalid(format!("{opt} needs a value")))
    };
    while i < words.len() {
        let w = &*words[i];
        let mut header = Header {
            bytes: &mut out[start..start + es],
        };
        match w {
            "!" => {
                invert = true;
                i += 1;
                continue;
            }
            "-s" | "-d" | "-i" | "-o" | "-p" if seen.contains(&w) => {
                return Err(RuleError::Invalid(format!("{w} given twice")));
            }
            "-s" | "-d" => {
                seen.push(w);
                header.address(family, w == "-d", invert, value(i, w)?)?;
                i += 2;
            }
            "-i" | "-o" => {
                seen.push(w);
                header.interface(family, w == "-o", invert, value(i, w)?)?;
                i += 2;
            }
            "-p" => {
                seen.push(w);
                let v = value(i, w)?;
                let n =
                    protocol(v).ok_or_else(|| RuleError::Unsupported(format!("protocol {v}")))?;
                abi::put_u16(header.bytes, family.proto_at(), n);
                if invert {
                    header.bytes[family.invflags_at()] |= abi::INV_PROTO;
                }
                if family == Family::V6 && n != 0 {
                    header.bytes[family.flags_at()] |= abi::IP6T_F_PROTO;
                }
                proto = Some(v);
                i += 2;
            }
            "-m" | "-j" | "-g" => {
                if invert {
                    return Err(RuleError::Invalid(format!("! before {w}")));
                }
                value(i, w)?;
                let at = i + 1;
                i += 2;
                i = options_end(words, i);
                let flag = match w {
                    "-m" => "-m",
                    "-j" => "-j",
                    _ => "-g",
                };
                let ext = Extension { flag, at, end: i };
                if flag == "-m" {
                    if n_ext == exts.len() {
                        return Err(RuleError::Unsupported("more than 12 matches".into()));
                    }
                    exts[n_ext] = Some(ext);
                    n_ext += 1;
                } else if target.is_some() {
                    return Err(RuleError::Invalid("a second target (-j or -g)".into()));
                } else {
                    target = Some(ext);
                }
                continue;
            }
            other => return Err(RuleError::Unsupported(format!("option {other}"))),
        }
        invert = false;
    }
    if invert {
        return Err(RuleError::Invalid("! at the end".into()));
    }

    for m in exts.iter().flatten() {
        let opts = extensions::opts(&words[m.at + 1..m.end])?;
        extensions::encode_match(out, family, &words[m.at], proto, &opts)?;
    }
    let target_offset = out.len() - start;
    let jump = push_target(out, start, family, words, target.as_ref())?;
    let next_offset = out.len() - start;
    if next_offset > u16::MAX as usize {
        return Err(RuleError::Invalid("the rule is larger than 64 KiB".into()));
    }
    abi::put_u16(
        &mut out[start..],
        family.target_offset_at(),
        target_offset as u16,
    );
    abi::put_u16(
        &mut out[start..],
        family.target_offset_at() + 2,
        next_offset as u16,
    );
    Ok(jump)
}

/// Where the options of the extension whose name is at `i - 1` end: at the
/// next word that is neither an option (`--x`, `! --x`) nor its value.
fn options_end(words: &[Cow<str>], mut i: usize) -> usize {
    while i < words.len() {
        let o = &*words[i];
        let option = o.starts_with("--")
            || (o == "!" && words.get(i + 1).is_some_and(|n| n.starts_with("--")));
        if !option {
            break;
        }
        i += 1;
        while i < words.len() && !words[i].starts_with('-') && words[i] != "!" {
            i += 1;
        }
    }
    i
}

/// Appends the rule's target (`-j`/`-g`, or none: fall through) and says
/// where it jumps.
fn push_target(
    out: &mut Vec<u8>,
    start: usize,
    family: Family,
    words: &[Cow<str>],
    target: Option<&Extension>,
) -> Result<Jump, RuleError> {
    Ok(match target {
        None => {
            abi::push_standard_target(out, 0);
            Jump::Next
        }
        Some(t) => {
            let name = &*words[t.at];
            let opts = extensions::opts(&words[t.at + 1..t.end])?;
            if t.flag == "-g" {
                out[start + family.flags_at()] |= family.goto_flag();
                if !opts.is_empty() {
                    return Err(RuleError::Invalid("-g takes no options".into()));
                }
                abi::push_standard_target(out, 0);
                Jump::Chain(name.to_string())
            } else if let Some(v) = verdict(name) {
                if !opts.is_empty() {
                    return Err(RuleError::Invalid(format!("{name} takes no options")));
                }
                abi::push_standard_target(out, v);
                Jump::Fixed
            } else if extensions::encode_target(out, family, name, &opts)? {
                Jump::Fixed
            } else if opts.is_empty() {
                abi::push_standard_target(out, 0);
                Jump::Chain(name.to_string())
            } else {
                return Err(RuleError::Unsupported(format!("target {name}")));
            }
        }
    })
}

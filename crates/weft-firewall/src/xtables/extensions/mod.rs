//! The match and target extensions kube-proxy's and flannel's rules use,
//! encoded as `iptables` 1.8 does on a current kernel (the revisions it
//! picks, the defaults it fills in), so that what `iptables-save` prints
//! back is the same. Layouts from `<linux/netfilter/xt_*.h>`: [`matches`]
//! (`-m`), [`targets`] (`-j`); here the options and their values.

mod matches;
mod targets;

pub use matches::encode_match;
pub use targets::encode_target;

use std::borrow::Cow;
use std::net::IpAddr;

use super::abi::Family;
use super::rule_error::RuleError;

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
    pub(super) fn one(&self) -> Result<&str, RuleError> {
        match self.values {
            [v] => Ok(v),
            _ => Err(RuleError::Invalid(format!("{} takes one value", self.name))),
        }
    }

    pub(super) fn none(&self) -> Result<(), RuleError> {
        if self.values.is_empty() {
            Ok(())
        } else {
            Err(RuleError::Invalid(format!("{} takes no value", self.name)))
        }
    }

    pub(super) fn no_invert(&self) -> Result<(), RuleError> {
        if self.invert {
            Err(RuleError::Unsupported(format!("! {}", self.name)))
        } else {
            Ok(())
        }
    }
}

/// An option given twice is refused (iptables refuses it too, or keeps
/// only one of them).
pub(super) fn no_repeats(ext: &str, opts: &[Opt]) -> Result<(), RuleError> {
    for (i, o) in opts.iter().enumerate() {
        if opts[..i].iter().any(|p| p.name == o.name) {
            return Err(RuleError::Invalid(format!("{ext}: {} given twice", o.name)));
        }
    }
    Ok(())
}

/// `ext` needs one of `names`.
pub(super) fn require(ext: &str, opts: &[Opt], names: &[&str]) -> Result<(), RuleError> {
    if opts.iter().any(|o| names.contains(&o.name)) {
        Ok(())
    } else {
        Err(RuleError::Invalid(format!(
            "{ext} needs {}",
            names.join(" or ")
        )))
    }
}

pub(super) fn unsupported(what: &str, opt: &Opt) -> RuleError {
    RuleError::Unsupported(format!("{what} option {}", opt.name))
}

pub(super) fn number<T: std::str::FromStr>(opt: &Opt, text: &str) -> Result<T, RuleError> {
    text.parse()
        .map_err(|_| RuleError::Invalid(format!("{} {text:?} is not a number", opt.name)))
}

/// `0x4000`, `16384`.
pub(super) fn u32_value(opt: &Opt, text: &str) -> Result<u32, RuleError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.ok_or_else(|| RuleError::Invalid(format!("{} {text:?} is not a number", opt.name)))
}

/// `value[/mask]`, the mask all ones when absent.
pub(super) fn value_mask(opt: &Opt, text: &str) -> Result<(u32, u32), RuleError> {
    match text.split_once('/') {
        Some((v, m)) => Ok((u32_value(opt, v)?, u32_value(opt, m)?)),
        None => Ok((u32_value(opt, text)?, u32::MAX)),
    }
}

/// `80` or `80:90`.
pub(super) fn port_range(opt: &Opt, text: &str) -> Result<(u16, u16), RuleError> {
    match text.split_once(':') {
        Some((a, b)) => Ok((number(opt, a)?, number(opt, b)?)),
        None => {
            let p = number(opt, text)?;
            Ok((p, p))
        }
    }
}

/// A name copied into a fixed, NUL-terminated field.
pub(super) fn fixed_name(opt: &Opt, text: &str, field: &mut [u8]) -> Result<(), RuleError> {
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
pub(super) fn inet_addr(family: Family, opt: &Opt, text: &str) -> Result<[u8; 16], RuleError> {
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

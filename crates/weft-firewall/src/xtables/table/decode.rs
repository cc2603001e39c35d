//! A table from the entries `SO_GET_ENTRIES` returns: built-in chains start
//! at their hook offsets and end with their policy entry; a user chain
//! starts with an `ERROR` entry holding its name and ends with a `RETURN`;
//! the last entry is an `ERROR` named `ERROR`. Jumps are offsets of the
//! first entry after a user chain's head; they become chain numbers.

use std::collections::HashMap;

use super::{Bytes, Chain, Entry, Info, Table, TableError, Target};
use crate::xtables::abi::{self, Family};

pub(super) fn target_offset(family: Family, e: &[u8]) -> usize {
    abi::read_u16(e, family.target_offset_at()) as usize
}

pub(super) fn next_offset(family: Family, e: &[u8]) -> usize {
    abi::read_u16(e, family.target_offset_at() + 2) as usize
}

fn target_name(family: Family, e: &[u8]) -> &[u8] {
    let t = target_offset(family, e);
    abi::read_name(&e[t + 2..t + 2 + abi::EXTENSION_NAME_LEN])
}

/// The standard target's verdict, if the entry's target is the standard one.
pub(super) fn standard_verdict(family: Family, e: &[u8]) -> Option<i32> {
    let t = target_offset(family, e);
    (target_name(family, e).is_empty() && e.len() >= t + abi::STANDARD_TARGET_SIZE)
        .then(|| abi::read_u32(e, t + abi::EXTENSION_HEAD) as i32)
}

/// The chain name an `ERROR` target holds.
fn error_name(family: Family, e: &[u8]) -> Option<&[u8]> {
    let t = target_offset(family, e);
    (target_name(family, e) == b"ERROR" && e.len() >= t + abi::ERROR_TARGET_SIZE).then(|| {
        abi::read_name(&e[t + abi::EXTENSION_HEAD..t + abi::EXTENSION_HEAD + abi::ERROR_NAME_LEN])
    })
}

impl Table {
    /// Decodes the entries of `info`'s table, which start `base` bytes
    /// into `buf`.
    pub fn decode(
        family: Family,
        name: &str,
        info: Info,
        buf: Vec<u8>,
        base: usize,
    ) -> Result<Table, TableError> {
        let malformed = TableError::Malformed;
        let read = buf
            .get(base..)
            .ok_or_else(|| malformed("shorter than its head".into()))?;
        let es = family.entry_size();
        let mut chains: Vec<Chain> = Vec::new();
        // (offset of a user chain's first rule, its number), increasing
        let mut starts: Vec<(usize, u32)> = Vec::new();
        let mut open: Option<u32> = None;
        let mut at = 0usize;
        let mut index = 0u32;
        let mut ended = false;
        while at < read.len() {
            let (next, toff) = entry_bounds(family, read, at)?;
            let e = &read[at..at + next];
            if let Some(h) = (0..5)
                .find(|&h| info.valid_hooks & (1 << h) != 0 && info.hook_entry[h] as usize == at)
            {
                close_chain(&mut chains, &mut open)?;
                open = Some(chains.len() as u32);
                chains.push(Chain::new(abi::HOOK_NAMES[h], Some(h)));
            }
            let current = open.map(|i| i as usize);
            if let Some(n) = error_name(family, e) {
                close_chain(&mut chains, &mut open)?;
                if n == b"ERROR" && at + next == read.len() {
                    ended = true;
                    break;
                }
                let n = std::str::from_utf8(n)
                    .map_err(|_| malformed(format!("chain name at {at} is not UTF-8")))?;
                let id = chains.len() as u32;
                let mut c = Chain::new(n, None);
                c.own_old[0] = Some(index);
                chains.push(c);
                starts.push((at + next, id));
                open = Some(id);
            } else if let Some(i) = current {
                let c = &mut chains[i];
                match c.hook {
                    Some(h) if info.underflow[h] as usize == at => {
                        c.policy = standard_verdict(family, e).ok_or_else(|| {
                            malformed(format!("{} has no policy", abi::HOOK_NAMES[h]))
                        })?;
                        c.own_old[0] = Some(index);
                        open = None;
                    }
                    _ => {
                        // a positive verdict is an offset, resolved below
                        let verdict = standard_verdict(family, e);
                        let target = match verdict {
                            Some(v) if v >= 0 => Target::Next,
                            _ => Target::Fixed,
                        };
                        c.rules.push(Entry {
                            bytes: Bytes::Read { at, len: next },
                            target,
                            old: Some(index),
                            is_return: verdict == Some(abi::VERDICT_RETURN) && toff == es,
                        });
                    }
                }
            } else {
                return Err(malformed(format!("entry at {at} is in no chain")));
            }
            at += next;
            index += 1;
        }
        if !ended {
            return Err(malformed("no closing ERROR entry".into()));
        }
        for h in (0..5).filter(|h| info.valid_hooks & (1 << h) != 0) {
            if !chains.iter().any(|c| c.hook == Some(h)) {
                return Err(malformed(format!(
                    "no {} chain at its hook entry",
                    abi::HOOK_NAMES[h]
                )));
            }
        }
        resolve_jumps(family, read, &mut chains, &starts)?;
        let mut by_name = HashMap::with_capacity(chains.len());
        for (i, c) in chains.iter().enumerate() {
            if by_name.insert(c.name.clone(), i as u32).is_some() {
                return Err(malformed(format!("chain {} twice", c.name)));
            }
        }
        let mut order: Vec<u32> = starts.iter().map(|s| s.1).collect();
        // libiptc writes user chains in name order; keep any other order
        // sorted for the layout
        if !order
            .windows(2)
            .all(|w| chains[w[0] as usize].name < chains[w[1] as usize].name)
        {
            order.sort_by(|a, b| chains[*a as usize].name.cmp(&chains[*b as usize].name));
        }
        Ok(Table {
            family,
            name: name.to_string(),
            read: buf,
            base,
            new: Vec::new(),
            valid_hooks: info.valid_hooks,
            chains,
            by_name,
            order,
            changed: false,
        })
    }
}

/// Checks the entry at `at` fits: returns its `next_offset` and
/// `target_offset`.
fn entry_bounds(family: Family, read: &[u8], at: usize) -> Result<(usize, usize), TableError> {
    let malformed = TableError::Malformed;
    let es = family.entry_size();
    if read.len() - at < es {
        return Err(malformed(format!("truncated entry at {at}")));
    }
    let next = next_offset(family, &read[at..]);
    let toff = target_offset(family, &read[at..]);
    if next % 8 != 0 || at + next > read.len() {
        return Err(malformed(format!(
            "the entry at {at} has a bad next_offset ({next})"
        )));
    }
    if toff < es || toff + abi::EXTENSION_HEAD > next {
        return Err(malformed(format!(
            "the entry at {at} has a bad target_offset ({toff})"
        )));
    }
    let target_size = abi::read_u16(&read[at..], toff) as usize;
    if toff + target_size != next {
        return Err(malformed(format!(
            "the target of the entry at {at} is {target_size} bytes, not {}",
            next - toff
        )));
    }
    Ok((next, toff))
}

/// Closes the open user chain: its last entry must be its RETURN.
fn close_chain(chains: &mut [Chain], open: &mut Option<u32>) -> Result<(), TableError> {
    let Some(i) = open.take() else {
        return Ok(());
    };
    let c = &mut chains[i as usize];
    if c.hook.is_some() {
        return Err(TableError::Malformed(format!(
            "{} has no policy entry",
            c.name
        )));
    }
    let tail = c
        .rules
        .pop()
        .filter(|t| t.target == Target::Fixed && t.is_return);
    let tail = tail
        .ok_or_else(|| TableError::Malformed(format!("chain {} does not end in RETURN", c.name)))?;
    c.own_old[1] = tail.old;
    Ok(())
}

/// Jumps: offsets into chain numbers (read entries with a positive
/// verdict are marked `Next` until now). `starts`: (offset of a user
/// chain's first rule, its number), increasing.
fn resolve_jumps(
    family: Family,
    read: &[u8],
    chains: &mut [Chain],
    starts: &[(usize, u32)],
) -> Result<(), TableError> {
    for c in chains {
        for r in &mut c.rules {
            let (Target::Next, Bytes::Read { at, len }) = (r.target, r.bytes) else {
                continue;
            };
            let offset = standard_verdict(family, &read[at..at + len]).unwrap_or(0) as usize;
            match starts.binary_search_by_key(&offset, |s| s.0) {
                Ok(k) => r.target = Target::Chain(starts[k].1),
                Err(_) if offset == at + len => {}
                Err(_) => {
                    return Err(TableError::Malformed(format!(
                        "rule at {at} jumps to {offset}, no chain start"
                    )))
                }
            }
        }
    }
    Ok(())
}

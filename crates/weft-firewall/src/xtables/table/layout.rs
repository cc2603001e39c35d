//! A table laid out for `SO_SET_REPLACE`: built-in chains in hook order,
//! then user chains in name order (as libiptc writes them), each user chain
//! an `ERROR` head, its rules and a `RETURN`; jumps become offsets, and
//! the kernel's own fields (counters, `comefrom`, `nfcache`) are cleared.

use super::decode::target_offset;
use super::{Chain, Info, Table, TableError, Target};
use crate::xtables::abi::{self, Family};
use crate::xtables::rule::Jump;

/// A laid-out table: the entries follow `prefix` bytes kept free for the
/// request's head.
pub struct Blob {
    pub buf: Vec<u8>,
    pub prefix: usize,
    pub info: Info,
    /// For each entry, the index of the entry its counters come from.
    pub counter_map: Vec<Option<u32>>,
}

/// `nfcache`, `comefrom` and the counters: the kernel's, not the rule's.
fn clear_kernel_fields(family: Family, e: &mut [u8]) {
    e[family.header_size()..family.target_offset_at()].fill(0);
    e[family.comefrom_at()..family.entry_size()].fill(0);
}

/// Whether two entries are the same rule: the same header match, matches
/// and target, a jump's offset aside (jumps are compared by chain).
pub fn same_rule(family: Family, a: &[u8], b: &[u8], jump: &Jump) -> bool {
    let h = family.header_size();
    let es = family.entry_size();
    let to = family.target_offset_at();
    if a.len() != b.len() || a[..h] != b[..h] || a[to..to + 4] != b[to..to + 4] {
        return false;
    }
    match jump {
        Jump::Fixed => a[es..] == b[es..],
        Jump::Chain(_) | Jump::Next => {
            let v = target_offset(family, a) + abi::EXTENSION_HEAD;
            a[es..v] == b[es..v] && a[v + 4..] == b[v + 4..]
        }
    }
}

impl Table {
    /// Lays the table out after `prefix` free bytes.
    pub fn layout(&self, prefix: usize) -> Result<Blob, TableError> {
        let f = self.family;
        let es = f.entry_size();
        let head = es + abi::ERROR_TARGET_SIZE;
        let tail = es + abi::STANDARD_TARGET_SIZE;
        let rules_len = |c: &Chain| c.rules.iter().map(|e| self.bytes(e).len()).sum::<usize>();
        let mut builtins: Vec<&Chain> = self.chains.iter().filter(|c| c.hook.is_some()).collect();
        builtins.sort_by_key(|c| c.hook);

        // first pass: where each user chain's rules start
        let mut starts: Vec<Option<usize>> = vec![None; self.chains.len()];
        let mut at = 0;
        let mut entries_n = 1;
        for c in &builtins {
            at += rules_len(c) + tail;
            entries_n += c.rules.len() + 1;
        }
        for &i in &self.order {
            let c = &self.chains[i as usize];
            starts[i as usize] = Some(at + head);
            at += head + rules_len(c) + tail;
            entries_n += c.rules.len() + 2;
        }
        let total = at + head;
        if total > u32::MAX as usize {
            return Err(TableError::Malformed(
                "the table would be larger than 4 GiB".into(),
            ));
        }

        let mut out = Vec::with_capacity(prefix + total);
        out.resize(prefix, 0);
        let mut map = Vec::with_capacity(entries_n);
        let mut info = Info {
            valid_hooks: self.valid_hooks,
            ..Info::default()
        };
        let push_rules =
            |out: &mut Vec<u8>, map: &mut Vec<Option<u32>>, c: &Chain| -> Result<(), TableError> {
                for e in &c.rules {
                    let start = out.len();
                    out.extend_from_slice(self.bytes(e));
                    let entry = &mut out[start..];
                    clear_kernel_fields(f, entry);
                    let verdict = match e.target {
                        Target::Fixed => None,
                        Target::Next => Some(start - prefix + entry.len()),
                        Target::Chain(i) => Some(starts[i as usize].ok_or_else(|| {
                            TableError::StillJumpedTo(self.chains[i as usize].name.to_string())
                        })?),
                    };
                    if let Some(v) = verdict {
                        let t = target_offset(f, entry);
                        abi::put_u32(entry, t + abi::EXTENSION_HEAD, v as u32);
                    }
                    map.push(e.old);
                }
                Ok(())
            };
        let standard = |out: &mut Vec<u8>, verdict: i32| {
            let s = out.len();
            out.resize(s + es, 0);
            abi::put_u16(&mut out[s..], f.target_offset_at(), es as u16);
            abi::put_u16(&mut out[s..], f.target_offset_at() + 2, tail as u16);
            abi::push_standard_target(out, verdict);
        };
        let error = |out: &mut Vec<u8>, name: &str| {
            let s = out.len();
            out.resize(s + es, 0);
            abi::put_u16(&mut out[s..], f.target_offset_at(), es as u16);
            abi::put_u16(&mut out[s..], f.target_offset_at() + 2, head as u16);
            abi::push_error_target(out, name);
        };
        for c in &builtins {
            let h = c.hook.unwrap_or_default();
            info.hook_entry[h] = (out.len() - prefix) as u32;
            push_rules(&mut out, &mut map, c)?;
            info.underflow[h] = (out.len() - prefix) as u32;
            standard(&mut out, c.policy);
            map.push(c.own_old[0]);
        }
        for &i in &self.order {
            let c = &self.chains[i as usize];
            error(&mut out, &c.name);
            map.push(c.own_old[0]);
            push_rules(&mut out, &mut map, c)?;
            standard(&mut out, abi::VERDICT_RETURN);
            map.push(c.own_old[1]);
        }
        error(&mut out, "ERROR");
        map.push(None);
        info.num_entries = map.len() as u32;
        info.size = (out.len() - prefix) as u32;
        Ok(Blob {
            buf: out,
            prefix,
            info,
            counter_map: map,
        })
    }
}

//! A table as chains of rules: decoded from the blob the kernel hands out,
//! changed as `iptables-restore --noflush` would change it, and laid out
//! again as a blob for `SO_SET_REPLACE`, with the map that carries each
//! surviving entry's counters over.
//!
//! Rules read from the kernel stay as bytes (only their jumps are turned
//! into chain names), so rules weft knows nothing about — docker's,
//! flanneld's, an operator's — go back exactly as they were.

use std::collections::{BTreeMap, HashMap};

use super::abi::{self, Family};
use super::rule::{self, Jump, Rule, RuleError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: {what}")]
    Malformed { table: String, what: String },
    #[error("chain {0} does not exist")]
    NoChain(String),
    #[error("{0} is a built-in chain")]
    Builtin(String),
    #[error("chain {0} still has rules")]
    NotEmpty(String),
    #[error("{chain}: no rule {rule}")]
    NoRule { chain: String, rule: String },
    #[error("{chain}: no rule number {at}")]
    BadPosition { chain: String, at: usize },
    #[error("{0:?} is not a valid chain name")]
    BadName(String),
}

/// A rule's bytes: still in the blob read from the kernel, or among the
/// new rules' (one buffer for all, not one allocation per rule).
#[derive(Debug, Clone, Copy)]
enum Bytes {
    Read { at: usize, len: usize },
    New { at: usize, len: usize },
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Bytes,
    jump: Jump,
    /// Its index in the table read (for its counters).
    old: Option<u32>,
}

#[derive(Debug, Clone, Default)]
struct Chain {
    rules: Vec<Entry>,
    /// Built-in chains: the policy verdict.
    policy: i32,
    /// Old indexes of the chain's own entries: the policy (built-in), or
    /// the head and the closing RETURN (user chain).
    own_old: [Option<u32>; 2],
}

/// What the kernel reports about a table (`struct ipt_getinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    pub valid_hooks: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
    pub num_entries: u32,
    pub size: u32,
}

/// A laid-out table, ready for `SO_SET_REPLACE`: the entries follow
/// `prefix` bytes kept free for the request's head.
pub struct Blob {
    pub buf: Vec<u8>,
    pub prefix: usize,
    pub info: Info,
    /// For each entry, the index of the entry its counters come from.
    pub counter_map: Vec<Option<u32>>,
}

impl Blob {
    pub fn entries(&self) -> &[u8] {
        &self.buf[self.prefix..]
    }
}

pub struct Table {
    pub family: Family,
    pub name: String,
    /// What `SO_GET_ENTRIES` returned; the entries start at `base`.
    read: Vec<u8>,
    base: usize,
    /// New rules' entries, back to back.
    new: Vec<u8>,
    valid_hooks: u32,
    builtins: BTreeMap<usize, Chain>,
    user: BTreeMap<String, Chain>,
}

fn target_offset(family: Family, e: &[u8]) -> usize {
    abi::read_u16(e, family.target_offset_at()) as usize
}

fn next_offset(family: Family, e: &[u8]) -> usize {
    abi::read_u16(e, family.target_offset_at() + 2) as usize
}

/// The standard target's verdict, if the entry's target is the standard one.
fn standard_verdict(family: Family, e: &[u8]) -> Option<i32> {
    let t = target_offset(family, e);
    let name = abi::read_name(&e[t + 2..t + 2 + abi::EXTENSION_NAME_LEN]);
    (name.is_empty() && e.len() >= t + abi::STANDARD_TARGET_SIZE)
        .then(|| abi::read_u32(e, t + abi::EXTENSION_HEAD) as i32)
}

/// The chain name of a user chain's head (an `ERROR` target).
fn error_name(family: Family, e: &[u8]) -> Option<String> {
    let t = target_offset(family, e);
    let name = abi::read_name(&e[t + 2..t + 2 + abi::EXTENSION_NAME_LEN]);
    (name == b"ERROR" && e.len() >= t + abi::ERROR_TARGET_SIZE).then(|| {
        let n = abi::read_name(
            &e[t + abi::EXTENSION_HEAD..t + abi::EXTENSION_HEAD + abi::ERROR_NAME_LEN],
        );
        String::from_utf8_lossy(n).into_owned()
    })
}

fn valid_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < abi::EXTENSION_NAME_LEN
        && !name.starts_with('-')
        && !name.starts_with('!')
        && !name.contains(char::is_whitespace)
}

impl Table {
    /// Decodes the entries of `info`'s table (`SO_GET_ENTRIES`), which
    /// start `base` bytes into `buf`.
    pub fn decode(
        family: Family,
        name: &str,
        info: Info,
        buf: Vec<u8>,
        base: usize,
    ) -> Result<Table, TableError> {
        let read = buf.get(base..).ok_or_else(|| TableError::Malformed {
            table: name.to_string(),
            what: "shorter than its head".into(),
        })?;
        let malformed = |what: String| TableError::Malformed {
            table: name.to_string(),
            what,
        };
        let mut table = Table {
            family,
            name: name.to_string(),
            read: Vec::new(),
            base,
            new: Vec::new(),
            valid_hooks: info.valid_hooks,
            builtins: BTreeMap::new(),
            user: BTreeMap::new(),
        };
        // where each user chain's rules start, for resolving jumps
        let mut starts: HashMap<usize, String> = HashMap::new();
        enum Open {
            None,
            Builtin(usize),
            User(String),
        }
        let mut open = Open::None;
        let mut chain = Chain::default();
        let close =
            |table: &mut Table, open: &mut Open, chain: &mut Chain| -> Result<(), TableError> {
                match std::mem::replace(open, Open::None) {
                    Open::None => {}
                    Open::Builtin(h) => {
                        table.builtins.insert(h, std::mem::take(chain));
                    }
                    Open::User(n) => {
                        let mut c = std::mem::take(chain);
                        let tail = c.rules.pop().ok_or_else(|| TableError::Malformed {
                            table: table.name.clone(),
                            what: format!("chain {n} has no closing entry"),
                        })?;
                        c.own_old[1] = tail.old;
                        table.user.insert(n, c);
                    }
                }
                Ok(())
            };
        let mut at = 0usize;
        let mut index = 0u32;
        let es = family.entry_size();
        let mut ended = false;
        while at < read.len() {
            if read.len() - at < es {
                return Err(malformed(format!("truncated entry at {at}")));
            }
            let next = next_offset(family, &read[at..]);
            let toff = target_offset(family, &read[at..]);
            if next < es + abi::EXTENSION_HEAD || toff < es || toff > next || at + next > read.len()
            {
                return Err(malformed(format!("bad entry sizes at {at}")));
            }
            let e = &read[at..at + next];
            let hook = (0..5)
                .find(|&h| info.valid_hooks & (1 << h) != 0 && info.hook_entry[h] as usize == at);
            if let Some(h) = hook {
                close(&mut table, &mut open, &mut chain)?;
                open = Open::Builtin(h);
            }
            if let Some(n) = error_name(family, e) {
                close(&mut table, &mut open, &mut chain)?;
                if n == "ERROR" && at + next == read.len() {
                    ended = true;
                    break;
                }
                starts.insert(at + next, n.clone());
                chain.own_old[0] = Some(index);
                open = Open::User(n);
            } else if let Open::Builtin(h) = open {
                if info.underflow[h] as usize == at {
                    chain.policy = standard_verdict(family, e).ok_or_else(|| {
                        malformed(format!("{} has no policy", abi::HOOK_NAMES[h]))
                    })?;
                    chain.own_old[0] = Some(index);
                    close(&mut table, &mut open, &mut chain)?;
                } else {
                    chain.rules.push(Entry::read(family, e, at, index));
                }
            } else if let Open::User(_) = open {
                chain.rules.push(Entry::read(family, e, at, index));
            } else {
                return Err(malformed(format!("entry at {at} is in no chain")));
            }
            at += next;
            index += 1;
        }
        if !ended {
            return Err(malformed("no closing ERROR entry".into()));
        }
        // jumps: offsets into chain names (read entries with a positive
        // verdict were marked `Next` until now)
        let chains = table.builtins.values_mut().chain(table.user.values_mut());
        for c in chains {
            for r in &mut c.rules {
                let (Jump::Next, Bytes::Read { at, len }) = (&r.jump, &r.bytes) else {
                    continue;
                };
                let (at, len) = (*at, *len);
                let offset = standard_verdict(family, &read[at..at + len]).unwrap_or(0) as usize;
                if let Some(n) = starts.get(&offset) {
                    r.jump = Jump::Chain(n.clone());
                } else if offset != at + len {
                    return Err(malformed(format!(
                        "rule at {at} jumps to {offset}, no chain start"
                    )));
                }
            }
        }
        table.read = buf;
        Ok(table)
    }

    fn bytes(&self, e: &Entry) -> &[u8] {
        match e.bytes {
            Bytes::Read { at, len } => &self.read[self.base + at..self.base + at + len],
            Bytes::New { at, len } => &self.new[at..at + len],
        }
    }

    /// Takes `new` as the buffer of new rules' entries, for
    /// [`Table::append_new`] and [`Table::insert_new`].
    pub(crate) fn adopt_new(&mut self, new: Vec<u8>) {
        self.new = new;
    }

    fn new_entry(&self, at: usize, len: usize, jump: Jump) -> Result<Entry, TableError> {
        if at + len > self.new.len() {
            return Err(TableError::Malformed {
                table: self.name.clone(),
                what: "a new rule outside its buffer".into(),
            });
        }
        Ok(Entry {
            bytes: Bytes::New { at, len },
            jump,
            old: None,
        })
    }

    /// `-A CHAIN` of the rule at `at..at + len` of the adopted buffer.
    pub(crate) fn append_new(
        &mut self,
        chain: &str,
        at: usize,
        len: usize,
        jump: Jump,
    ) -> Result<(), TableError> {
        let e = self.new_entry(at, len, jump)?;
        self.chain_mut(chain)?.rules.push(e);
        Ok(())
    }

    /// `-I CHAIN n` of the rule at `at..at + len` of the adopted buffer.
    pub(crate) fn insert_new(
        &mut self,
        chain: &str,
        n: usize,
        at: usize,
        len: usize,
        jump: Jump,
    ) -> Result<(), TableError> {
        let e = self.new_entry(at, len, jump)?;
        let c = self.chain_mut(chain)?;
        if n == 0 || n > c.rules.len() + 1 {
            return Err(TableError::BadPosition {
                chain: chain.into(),
                at: n,
            });
        }
        c.rules.insert(n - 1, e);
        Ok(())
    }

    fn builtin_hook(&self, name: &str) -> Option<usize> {
        let h = abi::HOOK_NAMES.iter().position(|n| *n == name)?;
        self.builtins.contains_key(&h).then_some(h)
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut Chain, TableError> {
        if let Some(h) = self.builtin_hook(name) {
            return self
                .builtins
                .get_mut(&h)
                .ok_or_else(|| TableError::NoChain(name.into()));
        }
        self.user
            .get_mut(name)
            .ok_or_else(|| TableError::NoChain(name.into()))
    }

    fn chain(&self, name: &str) -> Option<&Chain> {
        match self.builtin_hook(name) {
            Some(h) => self.builtins.get(&h),
            None => self.user.get(name),
        }
    }

    /// The user chains, in name order.
    pub fn user_chains(&self) -> impl Iterator<Item = &str> {
        self.user.keys().map(String::as_str)
    }

    pub fn has_chain(&self, name: &str) -> bool {
        self.chain(name).is_some()
    }

    pub fn rule_count(&self, chain: &str) -> Option<usize> {
        self.chain(chain).map(|c| c.rules.len())
    }

    /// `:CHAIN - [0:0]` with `--noflush`: a user chain is created, or
    /// emptied if it exists.
    pub fn declare(&mut self, name: &str) -> Result<(), TableError> {
        if self.builtin_hook(name).is_some() {
            return Err(TableError::Builtin(name.into()));
        }
        if !valid_chain_name(name) {
            return Err(TableError::BadName(name.into()));
        }
        match self.user.get_mut(name) {
            Some(c) => c.rules.clear(),
            None => {
                self.user.insert(name.to_string(), Chain::default());
            }
        }
        Ok(())
    }

    /// `-F CHAIN`.
    pub fn flush(&mut self, name: &str) -> Result<(), TableError> {
        self.chain_mut(name)?.rules.clear();
        Ok(())
    }

    /// `-X CHAIN`: an empty user chain goes (jumps to it are caught when
    /// the table is laid out).
    pub fn delete_chain(&mut self, name: &str) -> Result<(), TableError> {
        if self.builtin_hook(name).is_some() {
            return Err(TableError::Builtin(name.into()));
        }
        match self.user.get(name) {
            None => Err(TableError::NoChain(name.into())),
            Some(c) if !c.rules.is_empty() => Err(TableError::NotEmpty(name.into())),
            Some(_) => {
                self.user.remove(name);
                Ok(())
            }
        }
    }

    /// `-A CHAIN rule`.
    pub fn append(&mut self, chain: &str, rule: Rule) -> Result<(), TableError> {
        let at = self.new.len();
        self.new.extend_from_slice(&rule.entry);
        self.append_new(chain, at, rule.entry.len(), rule.jump)
    }

    /// `-I CHAIN n rule` (n from 1).
    pub fn insert(&mut self, chain: &str, n: usize, rule: Rule) -> Result<(), TableError> {
        let at = self.new.len();
        self.new.extend_from_slice(&rule.entry);
        self.insert_new(chain, n, at, rule.entry.len(), rule.jump)
    }

    /// Where the first rule equal to `rule` is in `chain`.
    pub fn position(&self, chain: &str, rule: &Rule) -> Option<usize> {
        let c = self.chain(chain)?;
        c.rules.iter().position(|e| {
            e.jump == rule.jump && same_rule(self.family, self.bytes(e), &rule.entry, &rule.jump)
        })
    }

    /// Whether `chain` holds the rule written as `text` (the words after
    /// `-A CHAIN`).
    pub fn contains(&self, chain: &str, text: &str) -> Result<bool, RuleError> {
        let rule = rule::encode(self.family, &rule::words(text)?)?;
        Ok(self.position(chain, &rule).is_some())
    }

    /// `-D CHAIN rule`: the first equal rule goes.
    pub fn delete(&mut self, chain: &str, rule: &Rule, text: &str) -> Result<(), TableError> {
        let at = self
            .position(chain, rule)
            .ok_or_else(|| TableError::NoRule {
                chain: chain.into(),
                rule: text.into(),
            })?;
        self.chain_mut(chain)?.rules.remove(at);
        Ok(())
    }

    /// Lays the table out: built-in chains in hook order, then user chains
    /// in name order (as libiptc does), each user chain an `ERROR` head,
    /// its rules and a `RETURN`; jumps become offsets.
    pub fn layout(&self, prefix: usize) -> Result<Blob, TableError> {
        let f = self.family;
        let es = f.entry_size();
        let head = es + abi::ERROR_TARGET_SIZE;
        let tail = es + abi::STANDARD_TARGET_SIZE;
        let rules_len = |c: &Chain| c.rules.iter().map(|e| self.bytes(e).len()).sum::<usize>();
        // first pass: where each user chain's rules start
        let mut starts: HashMap<&str, usize> = HashMap::with_capacity(self.user.len());
        let mut at = 0;
        for c in self.builtins.values() {
            at += rules_len(c) + tail;
        }
        for (n, c) in &self.user {
            starts.insert(n, at + head);
            at += head + rules_len(c) + tail;
        }
        let total = at + head;
        if total > u32::MAX as usize {
            return Err(TableError::Malformed {
                table: self.name.clone(),
                what: "larger than 4 GiB".into(),
            });
        }
        let entries_n = self
            .builtins
            .values()
            .chain(self.user.values())
            .map(|c| c.rules.len())
            .sum::<usize>()
            + self.builtins.len()
            + 2 * self.user.len()
            + 1;
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
                    let start = start - prefix;
                    clear_kernel_fields(f, entry);
                    let verdict = match &e.jump {
                        Jump::Fixed => None,
                        Jump::Next => Some(start + entry.len()),
                        Jump::Chain(n) => Some(
                            *starts
                                .get(n.as_str())
                                .ok_or_else(|| TableError::NoChain(n.clone()))?,
                        ),
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
        for (&h, c) in &self.builtins {
            info.hook_entry[h] = (out.len() - prefix) as u32;
            push_rules(&mut out, &mut map, c)?;
            info.underflow[h] = (out.len() - prefix) as u32;
            standard(&mut out, c.policy);
            map.push(c.own_old[0]);
        }
        for (n, c) in &self.user {
            error(&mut out, n);
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

impl Entry {
    fn read(family: Family, e: &[u8], at: usize, index: u32) -> Entry {
        // a positive verdict is an offset, resolved once all chains are known
        let jump = match standard_verdict(family, e) {
            Some(v) if v >= 0 => Jump::Next,
            _ => Jump::Fixed,
        };
        Entry {
            bytes: Bytes::Read { at, len: e.len() },
            jump,
            old: Some(index),
        }
    }
}

/// `nfcache`, `comefrom` and the counters: the kernel's, not the rule's.
fn clear_kernel_fields(family: Family, e: &mut [u8]) {
    let h = family.header_size();
    e[h..family.target_offset_at()].fill(0);
    e[family.comefrom_at()..family.entry_size()].fill(0);
}

/// Whether two entries are the same rule: the same header match, matches
/// and target, a jump's offset aside (the jumps are compared by name).
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

//! A table as chains of rules: decoded from the blob the kernel hands out
//! ([`decode`]), changed as `iptables-restore --noflush` would change it
//! (here), and laid out again as a blob for `SO_SET_REPLACE` ([`layout`]),
//! with the map that carries each surviving entry's counters over.
//!
//! Rules read from the kernel stay as bytes in the buffer they were read
//! into (only their jumps are turned into chain numbers), so rules weft
//! knows nothing about — docker's, flanneld's, an operator's — go back
//! exactly as they were, and a table of 300,000 rules is decoded without
//! an allocation per rule.

mod decode;
mod layout;

use std::collections::HashMap;
use std::mem::size_of;

use super::abi::{self, Family};
use super::rule::{self, Jump, Rule, RuleError};
use super::structs::{XtErrorTarget, XtStandardTarget};

pub use layout::{same_rule, Blob};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// What the kernel handed out is not a table as iptables lays them out.
    #[error("{0}")]
    Malformed(String),
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
    #[error("chain {0} already exists")]
    Exists(String),
    #[error("chain {0} was deleted but rules still jump to it")]
    StillJumpedTo(String),
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

/// A rule's bytes: still in the buffer read from the kernel, or among the
/// new rules' (one buffer for all).
#[derive(Debug, Clone, Copy)]
enum Bytes {
    Read { at: usize, len: usize },
    New { at: usize, len: usize },
}

/// Where a rule's standard target goes (chains by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A verdict or a target extension: the bytes are final.
    Fixed,
    /// Continue with the next rule.
    Next,
    Chain(u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: Bytes,
    target: Target,
    /// Its index in the table read (for its counters).
    old: Option<u32>,
    /// A plain `RETURN` (how a user chain read from the kernel ends).
    is_return: bool,
}

#[derive(Debug, Clone)]
struct Chain {
    name: Box<str>,
    /// The hook of a built-in chain.
    hook: Option<usize>,
    rules: Vec<Entry>,
    /// Built-in chains: the policy verdict.
    policy: i32,
    /// Old indexes of the chain's own entries: the policy (built-in), or
    /// the head and the closing RETURN (user chain).
    own_old: [Option<u32>; 2],
    deleted: bool,
}

impl Chain {
    fn new(name: &str, hook: Option<usize>) -> Chain {
        Chain {
            name: name.into(),
            hook,
            rules: Vec::new(),
            policy: abi::VERDICT_ACCEPT,
            own_old: [None; 2],
            deleted: false,
        }
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
    /// Every chain, deleted ones included (their numbers stay).
    chains: Vec<Chain>,
    by_name: HashMap<Box<str>, u32>,
    /// Live user chains, in name order (the order of the layout).
    order: Vec<u32>,
    /// Whether any change was made since it was read.
    changed: bool,
}

/// A name the kernel keeps as written: a C string (no NUL, which would
/// cut it short and make two names one), of printable characters.
fn valid_chain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < abi::EXTENSION_NAME_LEN
        && !name.starts_with('-')
        && !name.starts_with('!')
        && !name.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// The hooks of the standard tables (PREROUTING 0, INPUT 1, FORWARD 2,
/// OUTPUT 3, POSTROUTING 4).
fn standard_hooks(name: &str) -> Option<&'static [usize]> {
    Some(match name {
        "filter" => &[1, 2, 3],
        "nat" => &[0, 1, 3, 4],
        "mangle" => &[0, 1, 2, 3, 4],
        "raw" => &[0, 3],
        "security" => &[1, 2, 3],
        _ => return None,
    })
}

/// A standard table with no rules, as the kernel hands out a fresh one:
/// each built-in chain's ACCEPT policy, then the closing ERROR entry.
/// (`None` for a name that is no standard table.)
pub fn empty_entries(family: Family, name: &str) -> Option<(Info, Vec<u8>)> {
    let hooks = standard_hooks(name)?;
    let mut b = Vec::new();
    let mut info = Info::default();
    for &h in hooks {
        info.valid_hooks |= 1 << h;
        info.hook_entry[h] = b.len() as u32;
        info.underflow[h] = b.len() as u32;
        push_bare_entry(&mut b, family, size_of::<XtStandardTarget>());
        abi::push_standard_target(&mut b, abi::VERDICT_ACCEPT);
    }
    push_bare_entry(&mut b, family, size_of::<XtErrorTarget>());
    abi::push_error_target(&mut b, "ERROR");
    info.num_entries = hooks.len() as u32 + 1;
    info.size = b.len() as u32;
    Some((info, b))
}

/// Appends an entry with no address match and no extension match, whose
/// target (`target_size` bytes, pushed next by the caller) follows it.
fn push_bare_entry(b: &mut Vec<u8>, family: Family, target_size: usize) {
    let es = family.entry_size();
    let s = b.len();
    b.resize(s + es, 0);
    abi::put_u16(&mut b[s..], family.target_offset_at(), es as u16);
    abi::put_u16(
        &mut b[s..],
        family.target_offset_at() + 2,
        (es + target_size) as u16,
    );
}

impl Table {
    fn bytes(&self, e: &Entry) -> &[u8] {
        match e.bytes {
            Bytes::Read { at, len } => &self.read[self.base + at..self.base + at + len],
            Bytes::New { at, len } => &self.new[at..at + len],
        }
    }

    fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    fn chain(&self, name: &str) -> Option<&Chain> {
        self.id(name).map(|i| &self.chains[i as usize])
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut Chain, TableError> {
        let i = self
            .id(name)
            .ok_or_else(|| TableError::NoChain(name.into()))?;
        Ok(&mut self.chains[i as usize])
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.chain(name).is_some_and(|c| c.hook.is_some())
    }

    /// A rule's jump in chain numbers.
    fn target(&self, jump: &Jump) -> Result<Target, TableError> {
        Ok(match jump {
            Jump::Fixed => Target::Fixed,
            Jump::Next => Target::Next,
            Jump::Chain(n) => {
                Target::Chain(self.id(n).ok_or_else(|| TableError::NoChain(n.clone()))?)
            }
        })
    }

    /// Takes `new` as the buffer of new rules' entries, for
    /// [`Table::append_new`] and [`Table::insert_new`] (which address it
    /// from its start: nothing may have been added before).
    pub(crate) fn adopt_new(&mut self, new: Vec<u8>) -> Result<(), TableError> {
        if !self.new.is_empty() {
            return Err(TableError::Malformed(
                "new rules were added before the text's".into(),
            ));
        }
        self.new = new;
        Ok(())
    }

    /// The buffer of new rules' entries back, the table gone (to apply the
    /// same text to the table read again).
    pub(crate) fn into_new(self) -> Vec<u8> {
        self.new
    }

    fn new_entry(&self, at: usize, len: usize, jump: &Jump) -> Result<Entry, TableError> {
        if at + len > self.new.len() {
            return Err(TableError::Malformed(
                "a new rule outside its buffer".into(),
            ));
        }
        Ok(Entry {
            bytes: Bytes::New { at, len },
            target: self.target(jump)?,
            old: None,
            is_return: false,
        })
    }

    /// `-A CHAIN` of the rule at `at..at + len` of the adopted buffer.
    pub(crate) fn append_new(
        &mut self,
        chain: &str,
        at: usize,
        len: usize,
        jump: &Jump,
    ) -> Result<(), TableError> {
        let e = self.new_entry(at, len, jump)?;
        self.chain_mut(chain)?.rules.push(e);
        self.changed = true;
        Ok(())
    }

    /// `-I CHAIN n` of the rule at `at..at + len` of the adopted buffer.
    pub(crate) fn insert_new(
        &mut self,
        chain: &str,
        n: usize,
        at: usize,
        len: usize,
        jump: &Jump,
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
        self.changed = true;
        Ok(())
    }

    /// Whether a change was made since the table was read (a chain
    /// declared again while still empty is none).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The user chains, in name order.
    pub fn user_chains(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|&i| &*self.chains[i as usize].name)
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
        if self.is_builtin(name) {
            return Err(TableError::Builtin(name.into()));
        }
        if !valid_chain_name(name) {
            return Err(TableError::BadName(name.into()));
        }
        if let Some(i) = self.id(name) {
            let c = &mut self.chains[i as usize];
            if !c.rules.is_empty() {
                c.rules.clear();
                self.changed = true;
            }
            return Ok(());
        }
        let id = self.chains.len() as u32;
        self.chains.push(Chain::new(name, None));
        self.by_name.insert(name.into(), id);
        let chains = &self.chains;
        let at = self
            .order
            .partition_point(|&i| *chains[i as usize].name < *name);
        self.order.insert(at, id);
        self.changed = true;
        Ok(())
    }

    /// `-N CHAIN`: a new user chain; one of that name must not exist.
    pub fn create(&mut self, name: &str) -> Result<(), TableError> {
        if self.has_chain(name) {
            return Err(TableError::Exists(name.into()));
        }
        self.declare(name)
    }

    /// `-F CHAIN`.
    pub fn flush(&mut self, name: &str) -> Result<(), TableError> {
        let c = self.chain_mut(name)?;
        if !c.rules.is_empty() {
            c.rules.clear();
            self.changed = true;
        }
        Ok(())
    }

    /// `-X CHAIN`: an empty user chain goes (jumps to it are caught when
    /// the table is laid out).
    pub fn delete_chain(&mut self, name: &str) -> Result<(), TableError> {
        if self.is_builtin(name) {
            return Err(TableError::Builtin(name.into()));
        }
        let i = self
            .id(name)
            .ok_or_else(|| TableError::NoChain(name.into()))?;
        if !self.chains[i as usize].rules.is_empty() {
            return Err(TableError::NotEmpty(name.into()));
        }
        self.chains[i as usize].deleted = true;
        self.by_name.remove(name);
        self.order.retain(|&o| o != i);
        self.changed = true;
        Ok(())
    }

    /// `-A CHAIN rule`.
    pub fn append(&mut self, chain: &str, rule: Rule) -> Result<(), TableError> {
        let at = self.new.len();
        self.new.extend_from_slice(&rule.entry);
        self.append_new(chain, at, rule.entry.len(), &rule.jump)
    }

    /// `-I CHAIN n rule` (n from 1).
    pub fn insert(&mut self, chain: &str, n: usize, rule: Rule) -> Result<(), TableError> {
        let at = self.new.len();
        self.new.extend_from_slice(&rule.entry);
        self.insert_new(chain, n, at, rule.entry.len(), &rule.jump)
    }

    /// Where the first rule equal to `rule` is in `chain`.
    pub fn position(&self, chain: &str, rule: &Rule) -> Option<usize> {
        let c = self.chain(chain)?;
        let target = self.target(&rule.jump).ok()?;
        c.rules.iter().position(|e| {
            e.target == target && same_rule(self.family, self.bytes(e), &rule.entry, &rule.jump)
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
        self.changed = true;
        Ok(())
    }
}

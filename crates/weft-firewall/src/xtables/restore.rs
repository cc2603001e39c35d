//! `iptables-restore --noflush` text applied without the tool: each
//! `*table … COMMIT` becomes one read of the table, the changes made to the
//! decoded chains, and one atomic replace. Every line is parsed and encoded
//! before anything is written, so text with a rule this module does not
//! model is refused whole and can go to the tool unchanged.

use std::time::{Duration, Instant};

use super::abi::{self, Family};
use super::kernel;
use super::rule::{self, Jump, Rule, RuleError};
use super::table::{Table, TableError};

/// One command; new rules are `at..at + len` of the transaction's buffer.
enum Op<'a> {
    Declare(&'a str),
    Create(&'a str),
    Flush(&'a str),
    DeleteChain(&'a str),
    Append(&'a str, usize, usize, Jump),
    Insert(&'a str, usize, usize, usize, Jump),
    Delete(&'a str, Rule, String),
}

struct Transaction<'a> {
    table: &'a str,
    ops: Vec<Op<'a>>,
    /// The new rules' entries, back to back.
    new: Vec<u8>,
    /// Its text, from `*table` to `COMMIT`.
    text: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Nothing was applied: a line this module does not write.
    #[error("line {line}: {what}")]
    Unsupported { line: usize, what: String },
    /// Nothing was applied: the text is not valid.
    #[error("line {line}: {what}")]
    Invalid { line: usize, what: String },
    /// The kernel could not be asked (no socket, the lock, a table that
    /// cannot be read: `ip_tables` not loaded) or refused a table laid out
    /// here (`refused`); `rest` is the text of the transactions not
    /// applied (the earlier ones were).
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        rest: String,
        refused: bool,
        #[source]
        source: std::io::Error,
    },
    /// A change does not apply to what the kernel holds (a `-D` of a rule
    /// that is not there, `-X` of a chain in use): that transaction and
    /// the ones after it were not applied.
    #[error("table {table}: {source}")]
    Table {
        table: String,
        /// The text of the transactions not applied.
        rest: String,
        #[source]
        source: TableError,
    },
}

/// What one native restore did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tables: usize,
    /// Bytes of entries handed to the kernel, over all tables.
    pub bytes: usize,
    /// Time inside the replace calls.
    pub kernel: Duration,
}

/// The first word of `s` and what follows it.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn parse(family: Family, text: &str) -> Result<Vec<Transaction<'_>>, RestoreError> {
    let mut out: Vec<Transaction> = Vec::new();
    let mut open: Option<(Transaction, usize)> = None;
    let mut offset = 0;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let line = raw.trim();
        let lineno = n + 1;
        let unsupported = |what: String| RestoreError::Unsupported { line: lineno, what };
        let invalid = |what: String| RestoreError::Invalid { line: lineno, what };
        let conv = |e: RuleError| match e {
            RuleError::Unsupported(what) => unsupported(what),
            RuleError::Invalid(what) => invalid(what),
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(table) = line.strip_prefix('*') {
            if open.is_some() {
                return Err(invalid("*table inside a transaction".into()));
            }
            open = Some((
                Transaction {
                    table,
                    ops: Vec::new(),
                    new: Vec::new(),
                    text: "",
                },
                start,
            ));
            continue;
        }
        if line == "COMMIT" {
            let Some((mut tx, tx_start)) = open.take() else {
                return Err(invalid("COMMIT outside a *table … COMMIT".into()));
            };
            tx.text = &text[tx_start..offset];
            out.push(tx);
            continue;
        }
        let Some((tx, _)) = open.as_mut() else {
            let word = line.split_whitespace().next().unwrap_or_default();
            return Err(invalid(format!("{word} outside a *table … COMMIT")));
        };
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().unwrap_or_default();
            if parts.next() != Some("-") {
                return Err(unsupported("a built-in chain's policy".into()));
            }
            tx.ops.push(Op::Declare(name));
            continue;
        }
        // "-A CHAIN rest"
        let (cmd, after) = first_word(line);
        let (chain, rest_text) = first_word(after);
        if chain.is_empty() {
            return Err(unsupported(format!("command {cmd} without a chain")));
        }
        if chain.contains('"') {
            return Err(unsupported(format!("quoted chain name {chain}")));
        }
        let words = rule::words(rest_text).map_err(conv)?;
        let rest = &words[..];
        let mut encode = |words: &[std::borrow::Cow<str>]| {
            let at = tx.new.len();
            let jump = rule::encode_into(&mut tx.new, family, words).map_err(conv)?;
            Ok::<_, RestoreError>((at, tx.new.len() - at, jump))
        };
        let op = match cmd {
            "-A" => {
                let (at, len, jump) = encode(rest)?;
                Op::Append(chain, at, len, jump)
            }
            "-I" => {
                let (n, words) = match rest.first().and_then(|w| w.parse::<usize>().ok()) {
                    Some(n) => (n, &rest[1..]),
                    None => (1, rest),
                };
                let (at, len, jump) = encode(words)?;
                Op::Insert(chain, n, at, len, jump)
            }
            "-D" => {
                if rest.len() == 1 && rest[0].parse::<usize>().is_ok() {
                    return Err(unsupported("-D by rule number".into()));
                }
                let r = rule::encode(family, rest).map_err(conv)?;
                Op::Delete(chain, r, rest_text.trim().to_string())
            }
            "-N" if rest.is_empty() => Op::Create(chain),
            "-F" if rest.is_empty() => Op::Flush(chain),
            "-X" if rest.is_empty() => Op::DeleteChain(chain),
            _ => return Err(unsupported(format!("command {cmd}"))),
        };
        tx.ops.push(op);
    }
    if open.is_some() {
        return Err(RestoreError::Invalid {
            line: text.lines().count(),
            what: "no COMMIT at the end".into(),
        });
    }
    Ok(out)
}

fn apply(table: &mut Table, ops: &[Op], new: Vec<u8>) -> Result<(), TableError> {
    table.adopt_new(new)?;
    for op in ops {
        match op {
            Op::Declare(c) => table.declare(c)?,
            Op::Create(c) => table.create(c)?,
            Op::Flush(c) => table.flush(c)?,
            Op::DeleteChain(c) => table.delete_chain(c)?,
            Op::Append(c, at, len, jump) => table.append_new(c, *at, *len, jump)?,
            Op::Insert(c, n, at, len, jump) => table.insert_new(c, *n, *at, *len, jump)?,
            Op::Delete(c, r, text) => table.delete(c, r, text)?,
        }
    }
    Ok(())
}

/// Reads a table under no lock (for looking, not changing).
pub fn read_table(family: Family, name: &str) -> Result<Table, RestoreError> {
    let kernel_err = |what: &str, source| RestoreError::Kernel {
        what: format!("{what} {} table {name}", family.name()),
        rest: String::new(),
        refused: false,
        source,
    };
    let fd = kernel::socket(family).map_err(|e| kernel_err("opening a socket for the", e))?;
    let (info, buf) = kernel::read(&fd, family, name).map_err(|e| kernel_err("reading the", e))?;
    Table::decode(family, name, info, buf, abi::GET_ENTRIES_HEAD).map_err(|source| {
        RestoreError::Table {
            table: name.into(),
            rest: String::new(),
            source,
        }
    })
}

/// Applies `text` to tables held in memory, as [`restore`] applies it to
/// the kernel's: each transaction's table (from `tables`, by name) is
/// changed, laid out and decoded back. The whole model without a kernel,
/// for tests and the fuzz target.
pub fn restore_in_memory(
    family: Family,
    text: &str,
    tables: &mut std::collections::BTreeMap<String, Table>,
) -> Result<(), RestoreError> {
    for tx in parse(family, text)? {
        let table_err = |source| RestoreError::Table {
            table: tx.table.to_string(),
            rest: String::new(),
            source,
        };
        let Some(table) = tables.get_mut(tx.table) else {
            return Err(RestoreError::Invalid {
                line: 0,
                what: format!("no table {}", tx.table),
            });
        };
        apply(table, &tx.ops, tx.new).map_err(table_err)?;
        let blob = table.layout(0).map_err(table_err)?;
        *table = Table::decode(family, tx.table, blob.info, blob.buf, 0).map_err(table_err)?;
    }
    Ok(())
}

/// Applies `text` as `iptables-restore -w --noflush` would.
pub fn restore(family: Family, text: &str) -> Result<Report, RestoreError> {
    let transactions = parse(family, text)?;
    let mut report = Report::default();
    let fd = kernel::socket(family).map_err(|source| RestoreError::Kernel {
        what: format!("opening a socket for {}", family.name()),
        rest: text.to_string(),
        refused: false,
        source,
    })?;
    let _lock = kernel::lock().map_err(|source| RestoreError::Kernel {
        what: "taking the xtables lock".into(),
        rest: text.to_string(),
        refused: false,
        source,
    })?;
    let texts: Vec<&str> = transactions.iter().map(|t| t.text).collect();
    for (i, tx) in transactions.into_iter().enumerate() {
        let name = tx.table;
        if tx.ops.is_empty() {
            // as iptables-restore: an empty transaction commits nothing
            continue;
        }
        let kernel_err = |what: &str, refused: bool, source| RestoreError::Kernel {
            what: format!("{what} {} table {name}", family.name()),
            rest: texts[i..].concat(),
            refused,
            source,
        };
        let table_err = |source| RestoreError::Table {
            table: name.to_string(),
            rest: texts[i..].concat(),
            source,
        };
        // read, change, lay out, replace; again if another writer that
        // does not take the lock changed the table in between (EAGAIN)
        let mut new = tx.new;
        let mut attempt = 0;
        let (blob, old) = loop {
            let (info, buf) =
                kernel::read(&fd, family, name).map_err(|e| kernel_err("reading the", false, e))?;
            let old_entries = info.num_entries;
            let mut table =
                Table::decode(family, name, info, buf, abi::GET_ENTRIES_HEAD).map_err(table_err)?;
            apply(&mut table, &tx.ops, new).map_err(table_err)?;
            if !table.changed() {
                // as libiptc: a table the text left as it was is not replaced
                break (None, Vec::new());
            }
            let mut blob = table.layout(abi::REPLACE_HEAD).map_err(table_err)?;
            new = table.into_new();
            let t = Instant::now();
            match kernel::replace(&fd, family, name, &blob.info, &mut blob.buf, old_entries) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempt < 3 => attempt += 1,
                Err(e) => return Err(kernel_err("replacing the", true, e)),
                Ok(old) => {
                    report.kernel += t.elapsed();
                    break (Some(blob), old);
                }
            }
        };
        let Some(blob) = blob else { continue };
        report.bytes += blob.buf.len() - blob.prefix;
        report.tables += 1;
        drop(blob.buf);
        let mut counters = vec![0u8; blob.counter_map.len() * abi::COUNTERS_SIZE];
        let mut any = false;
        for (n, from) in blob.counter_map.iter().enumerate() {
            let Some(from) = from else { continue };
            let src = *from as usize * abi::COUNTERS_SIZE;
            if let Some(c) = old.get(src..src + abi::COUNTERS_SIZE) {
                any |= c.iter().any(|&b| b != 0);
                counters[n * abi::COUNTERS_SIZE..(n + 1) * abi::COUNTERS_SIZE].copy_from_slice(c);
            }
        }
        if any {
            // the rules are in place; counters that cannot be carried over
            // are not worth failing the change for
            let _ = kernel::add_counters(&fd, family, name, &counters);
        }
    }
    Ok(report)
}

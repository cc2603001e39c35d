//! Checking and applying rule sets with the system's tools: `iptables-save`
//! / `iptables-restore --noflush` and `nft`.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{Backend, Iptables};
use crate::fallback::{fell_back, FastPath};
use crate::masq::{
    restore_text, ChainRules, MasqRules, FWD_CHAIN, NFT_TABLE, NFT_TABLE6, POSTRTG_CHAIN,
};
pub use crate::tool::{run, FirewallError};
use crate::xtables::{self, Family, RestoreError};

/// Which firewall to program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Iptables,
    Nftables,
}

/// Which program applied a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// weft's own x_tables writer ([`crate::xtables`]).
    Native,
    /// `iptables-restore` (or `ip6tables-restore`) of the backend.
    Tool,
}

/// Set (per family) once the kernel refused a table laid out by weft's
/// own writer while the tool took the same text: from then on this
/// process leaves that family's legacy tables to the tool.
static NATIVE_REFUSED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// Whether the first native write has been logged.
static NATIVE_ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Whether `ipt`'s tables of a family are written (and read) by weft's own
/// x_tables writer: on legacy, unless `WEFT_IPTABLES_WRITER=tool` (for
/// comparing, or working around it) or the kernel refused one of its
/// tables before.
pub fn native_writer(ipt: &Iptables, v6: bool) -> bool {
    ipt.backend == Backend::Legacy
        && std::env::var("WEFT_IPTABLES_WRITER").map_or(true, |v| v != "tool")
        && !NATIVE_REFUSED[v6 as usize].load(Ordering::Relaxed)
}

/// Applies `iptables-restore -w --noflush` text to `ipt`'s backend. On
/// legacy, weft writes the tables itself ([`crate::xtables`]: the same
/// result byte for byte, without libiptc's chain-name lookups that make
/// large syncs take seconds). Whatever it does not take — a rule it does
/// not model, text it finds wrong, a change that does not fit the table,
/// a kernel that cannot be asked or refuses its table — goes to the tool,
/// from the first transaction not applied, and the tool's answer is
/// final. nf_tables always uses the tool.
pub fn restore_noflush(ipt: &Iptables, v6: bool, text: &str) -> Result<Writer, FirewallError> {
    let family = if v6 { Family::V6 } else { Family::V4 };
    let tool = ipt.restore(v6);
    if !native_writer(ipt, v6) {
        run(&tool, &["-w", "--noflush"], Some(text))?;
        if ipt.backend == Backend::Legacy && NATIVE_REFUSED[v6 as usize].load(Ordering::Relaxed) {
            fell_back(
                FastPath::XtablesWriter,
                format!(
                    "the kernel refused a {} table it laid out earlier",
                    family.name()
                ),
            );
        }
        return Ok(Writer::Tool);
    }
    let err = match xtables::restore(family, text) {
        Ok(_) => {
            if !NATIVE_ANNOUNCED.swap(true, Ordering::Relaxed) {
                tracing::info!("legacy iptables tables are written by weft's x_tables writer");
            }
            return Ok(Writer::Native);
        }
        Err(e) => e,
    };
    let (rest, refused) = match &err {
        RestoreError::Unsupported { .. } | RestoreError::Invalid { .. } => (text, false),
        RestoreError::Table { rest, .. } => (rest.as_str(), false),
        RestoreError::Kernel { rest, refused, .. } => (rest.as_str(), *refused),
    };
    tracing::debug!("weft's x_tables writer: {err}; {tool} takes it from there");
    // the transactions before the one that failed are applied
    run(&tool, &["-w", "--noflush"], Some(rest))?;
    fell_back(FastPath::XtablesWriter, &err);
    if refused {
        // the text was good, so the table weft laid out was not
        NATIVE_REFUSED[v6 as usize].store(true, Ordering::Relaxed);
        tracing::warn!("weft's x_tables writer: {err}; {tool} took the same text, and writes {} rules from now on", family.name());
    }
    Ok(Writer::Tool)
}

/// What is wrong with the loaded rules: chains to rewrite, missing jumps.
fn iptables_drift(
    ipt: &Iptables,
    chains: &[ChainRules],
) -> Result<(bool, Vec<&'static str>), FirewallError> {
    let mut rewrite = false;
    let mut missing = Vec::new();
    for c in chains {
        let saved = run(&ipt.save(c.v6), &["-t", c.table], None)?;
        let prefix = format!("-A {} ", c.chain);
        let loaded: Vec<&str> = saved.lines().filter(|l| l.starts_with(&prefix)).collect();
        if loaded != c.rules.iter().map(String::as_str).collect::<Vec<_>>() {
            rewrite = true;
        }
        let jump = format!("-A {} {}", c.hook, c.jump);
        if !saved.lines().any(|l| l == jump) {
            missing.push(c.chain);
            rewrite = true;
        }
    }
    Ok((rewrite, missing))
}

/// Makes the kernel hold `rules` (with `ipt`'s programs in iptables mode);
/// returns whether anything had to change.
pub fn ensure(mode: Mode, ipt: &Iptables, rules: &MasqRules) -> Result<bool, FirewallError> {
    match mode {
        Mode::Iptables => {
            let chains = rules.iptables();
            if chains.is_empty() {
                return Ok(false);
            }
            let (rewrite, missing) = iptables_drift(ipt, &chains)?;
            if !rewrite {
                return Ok(false);
            }
            restore_noflush(ipt, rules.v6(), &restore_text(&chains, &missing))?;
            Ok(true)
        }
        Mode::Nftables => {
            let Some(text) = rules.nft() else {
                return Ok(false);
            };
            let (family, table) = rules.nft_table();
            if nft_rule_count(family, table)? == Some(rules.nft_rule_count()) {
                return Ok(false);
            }
            run("nft", &["-f", "-"], Some(&text))?;
            Ok(true)
        }
    }
}

/// Rules in an nft table (`None` when the table is absent).
pub fn nft_rule_count(family: &str, table: &str) -> Result<Option<usize>, FirewallError> {
    match run("nft", &["-j", "list", "table", family, table], None) {
        Err(FirewallError::Failed { .. }) => Ok(None),
        Err(e) => Err(e),
        Ok(json) => {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            let n = v["nftables"]
                .as_array()
                .map(|a| a.iter().filter(|o| o.get("rule").is_some()).count())
                .unwrap_or(0);
            Ok(Some(n))
        }
    }
}

/// Removes every chain, jump and table weft (or flanneld) created for
/// masquerading and forwarding, from every installed iptables backend and
/// nft; returns what was removed.
pub fn remove_all() -> Result<Vec<String>, FirewallError> {
    let mut removed = Vec::new();
    for ipt in crate::backend::installed() {
        remove_iptables(&ipt, &mut removed)?;
    }
    for (family, table) in [("ip", NFT_TABLE), ("ip6", NFT_TABLE6)] {
        if matches!(nft_rule_count(family, table), Ok(Some(_))) {
            run("nft", &["delete", "table", family, table], None)?;
            removed.push(format!("nft table {family} {table}"));
        }
    }
    Ok(removed)
}

fn remove_iptables(ipt: &Iptables, removed: &mut Vec<String>) -> Result<(), FirewallError> {
    let chains = [
        ("nat", POSTRTG_CHAIN, "POSTROUTING"),
        ("filter", FWD_CHAIN, "FORWARD"),
    ];
    for (v6, (table, chain, hook)) in [false, true]
        .into_iter()
        .flat_map(|v6| chains.map(|c| (v6, c)))
    {
        let saved = match run(&ipt.save(v6), &["-t", table], None) {
            Ok(s) => s,
            Err(FirewallError::Exec { .. }) => continue, // no iptables here
            Err(e) => return Err(e),
        };
        let jumps: Vec<String> = saved
            .lines()
            .filter(|l| {
                l.starts_with(&format!("-A {hook} ")) && l.ends_with(&format!("-j {chain}"))
            })
            .map(|l| l.replacen("-A ", "-D ", 1))
            .collect();
        let exists = saved.lines().any(|l| l.starts_with(&format!(":{chain} ")));
        if jumps.is_empty() && !exists {
            continue;
        }
        let mut text = format!("*{table}\n");
        for j in &jumps {
            text.push_str(j);
            text.push('\n');
        }
        if exists {
            text.push_str(&format!("-F {chain}\n-X {chain}\n"));
        }
        text.push_str("COMMIT\n");
        restore_noflush(ipt, v6, &text)?;
        removed.push(format!(
            "{} ({}) {table} {chain}",
            if v6 { "ip6tables" } else { "iptables" },
            ipt.backend.name()
        ));
    }
    Ok(())
}

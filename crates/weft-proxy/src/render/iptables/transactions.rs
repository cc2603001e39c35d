//! The rules of a sync as `iptables-restore --noflush` transactions: the
//! fixed chains, full syncs (one transaction per table, or the ports'
//! chains cut into several on nf_tables), partial syncs that only delete
//! and insert what changed, and the rules the kernel should then hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{
    host, Hook, IptablesRenderer, NatText, PortRules, EXTERNAL_SERVICES, FORWARD,
    LOCALNET_FIREWALL, MARK_MASQ, NFACCT_INVALID, NODEPORTS, POSTROUTING, PROXY_FIREWALL, SERVICES,
};
use crate::plan::names::ChainName;
use crate::plan::PortKey;
use crate::MASQ_MARK;

impl IptablesRenderer {
    /// The fixed rules of the nat table (masquerade chain and mark).
    fn static_nat(&self) -> [String; 4] {
        [
            format!("-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
            format!("-A {POSTROUTING} -j MARK --set-xmark {MASQ_MARK}/0x0"),
            format!("-A {POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"),
            format!("-A {MARK_MASQ} -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}"),
        ]
    }

    /// The fixed rules of the filter table: forwarding, and the localnet
    /// firewall when node ports answer on localhost.
    fn static_filter(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.localhost() {
            out.push(format!("-A {LOCALNET_FIREWALL} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"));
        }
        if !self.conntrack_liberal {
            let counter = if self.nfacct {
                format!(" -m nfacct --nfacct-name  {NFACCT_INVALID}")
            } else {
                String::new()
            };
            out.push(format!(
                "-A {FORWARD} -m conntrack --ctstate INVALID{counter} -j DROP"
            ));
        }
        out.push(format!("-A {FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"));
        out.push(format!("-A {FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
        out
    }

    /// The last rules of nat `KUBE-SERVICES`: local destinations go on to
    /// the node ports.
    pub fn nodeports_jumps(&self) -> Vec<String> {
        const COMMENT: &str =
            "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
        match &self.node_port_ips {
            None => {
                let not_loopback = if self.v6 {
                    "! -d ::1/128 "
                } else if !self.localhost_node_ports {
                    "! -d 127.0.0.0/8 "
                } else {
                    ""
                };
                vec![format!(
                    "-A {SERVICES} {not_loopback}{COMMENT} -m addrtype --dst-type LOCAL -j {NODEPORTS}"
                )]
            }
            Some(ips) => ips
                .iter()
                .filter(|ip| ip.is_ipv6() == self.v6)
                .filter(|ip| !ip.is_loopback() || self.localhost())
                .map(|ip| format!("-A {SERVICES} -d {} {COMMENT} -j {NODEPORTS}", host(*ip)))
                .collect(),
        }
    }

    /// The full sync, as `iptables-restore --noflush` text: the filter
    /// table's chains, hooks and rules in one transaction, then nat's in
    /// another, which declares (creates or flushes) and rewrites every
    /// chain of the proxy, flushes and removes the `delete` chains (stale
    /// services) and inserts the missing `hooks` at the top of their
    /// built-in chains.
    ///
    /// When [`IptablesRenderer::chunked`] and with more than
    /// [`CHAINS_PER_TRANSACTION`] port chains, nat takes several
    /// transactions instead: the fixed chains (`KUBE-MARK-MASQ`,
    /// `KUBE-POSTROUTING`) that port chains jump to, then the ports' own
    /// chains a few hundred per transaction (each port whole within one),
    /// then one that rewrites the shared
    /// chains (`KUBE-SERVICES`, `KUBE-NODEPORTS`), inserts the hooks and
    /// removes stale chains. New chains stay unreferenced until that last
    /// one switches `KUBE-SERVICES` over to them, and a rewritten port
    /// chain only jumps to chains of its own transaction, so every state in
    /// between is a consistent rule set.
    pub fn restore(
        &self,
        ports: &BTreeMap<PortKey, PortRules>,
        delete: &BTreeSet<String>,
        hooks: &[Hook],
        localnet_exists: bool,
    ) -> String {
        self.restore_from(ports, None, delete, hooks, localnet_exists)
    }

    /// As [`IptablesRenderer::restore`], the ports' nat rules taken from
    /// `nat` rather than from the ports themselves: port `i` of `ports`
    /// in key order is port `i` of `nat`, as a full sync renders them
    /// (one port per key, in key order).
    pub fn restore_with(
        &self,
        ports: &BTreeMap<PortKey, PortRules>,
        nat: &NatText,
        delete: &BTreeSet<String>,
        hooks: &[Hook],
        localnet_exists: bool,
    ) -> String {
        debug_assert_eq!(nat.ports(), ports.len());
        self.restore_from(ports, Some(nat), delete, hooks, localnet_exists)
    }

    fn restore_from(
        &self,
        ports: &BTreeMap<PortKey, PortRules>,
        nat: Option<&NatText>,
        delete: &BTreeSet<String>,
        hooks: &[Hook],
        localnet_exists: bool,
    ) -> String {
        let rules_len = match nat {
            Some(nat) => nat.bytes(),
            None => ports.values().map(|r| r.nat.len() * 120).sum::<usize>(),
        };
        let cap = rules_len + ports.len() * 160;
        let mut out = String::with_capacity(cap + 4096);

        out.push_str("*filter\n");
        for c in [
            SERVICES,
            EXTERNAL_SERVICES,
            FORWARD,
            NODEPORTS,
            PROXY_FIREWALL,
        ] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        // kubelet's chain: declared (so flushed) only when written or absent
        if self.localhost() || !localnet_exists {
            let _ = writeln!(out, ":{LOCALNET_FIREWALL} - [0:0]");
        }
        for h in hooks.iter().filter(|h| h.table == "filter") {
            let _ = writeln!(out, "-I {} 1 {}", h.chain, h.rule);
        }
        for line in self.static_filter() {
            out.push_str(&line);
            out.push('\n');
        }
        for r in ports.values() {
            for line in r.filter_lines().into_iter().flatten() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("COMMIT\n*nat\n");
        for c in [POSTROUTING, MARK_MASQ] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for line in self.static_nat() {
            out.push_str(&line);
            out.push('\n');
        }
        if self.chunked
            && ports.values().map(|r| r.chains.len()).sum::<usize>() > CHAINS_PER_TRANSACTION
        {
            out.push_str("COMMIT\n");
            changed_chain_transactions(&mut out, &whole(ports.values(), nat));
            out.push_str("*nat\n");
        } else {
            write_changed_chains(&mut out, &whole(ports.values(), nat), self.chunked);
        }
        for c in [SERVICES, NODEPORTS] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in delete {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for h in hooks.iter().filter(|h| h.table == "nat") {
            let _ = writeln!(out, "-I {} 1 {}", h.chain, h.rule);
        }
        for r in ports.values() {
            for line in r.services.iter().chain(&r.nodeports) {
                out.push_str(line);
                out.push('\n');
            }
        }
        for line in self.nodeports_jumps() {
            out.push_str(&line);
            out.push('\n');
        }
        for c in delete {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
        out
    }

    /// `iptables-restore --noflush` text that changes only what differs
    /// between `old` and `new` rules of some ports: their own chains are
    /// declared (flushed) and rewritten, their lines in the shared chains
    /// are deleted (`-D`) or inserted at the top (`-I … 1`; the node-ports
    /// jump stays last), `delete` chains are removed. The shared chains are
    /// not rewritten, so a change costs the same with 10 or 10,000
    /// services. One transaction per table, unless the renderer is chunked and
    /// the ports own more than [`CHAINS_PER_TRANSACTION`] chains: then theirs go first in
    /// transactions of their own, as in [`IptablesRenderer::restore`]. If
    /// the kernel drifted, a `-D` fails, nothing more is applied, and the
    /// caller falls back to a full sync.
    pub fn partial_restore(
        &self,
        changes: &[(Option<&PortRules>, Option<&PortRules>)],
        delete: &BTreeSet<String>,
    ) -> String {
        fn diff<'a>(old: &'a [String], new: &'a [String]) -> (Vec<&'a String>, Vec<&'a String>) {
            (
                old.iter().filter(|l| !new.contains(l)).collect(),
                new.iter().filter(|l| !old.contains(l)).collect(),
            )
        }
        let none = PortRules::default();
        let mut out = String::new();
        // each written port with the chains it keeps as they are
        let written: Vec<Written> = changes
            .iter()
            .filter_map(|(old, new)| new.map(|n| Written::kept(n, n.unchanged_chains(*old))))
            .collect();
        let rewritten: usize = written
            .iter()
            .map(|w| w.rules.chains.len() - w.same.len())
            .sum();
        let split = self.chunked && rewritten > CHAINS_PER_TRANSACTION;
        if split {
            changed_chain_transactions(&mut out, &written);
        }
        for (table, pick) in [
            (
                "filter",
                (|r: &PortRules| r.filter_lines().to_vec()) as fn(&PortRules) -> Vec<&Vec<String>>,
            ),
            ("nat", |r: &PortRules| vec![&r.services, &r.nodeports]),
        ] {
            let _ = writeln!(out, "*{table}");
            if table == "nat" {
                if !split {
                    write_changed_chains(&mut out, &written, self.chunked);
                }
                for c in delete {
                    let _ = writeln!(out, ":{c} - [0:0]");
                }
            }
            for (old, new) in changes {
                let (o, n) = (pick(old.unwrap_or(&none)), pick(new.unwrap_or(&none)));
                for (o, n) in o.iter().zip(&n) {
                    let (gone, added) = diff(o, n);
                    for l in gone {
                        let _ = writeln!(out, "-D{}", &l[2..]);
                    }
                    // Inserted at the top in reverse, so they keep their order
                    // (a node port's mark-for-masquerade rule precedes its jump).
                    for l in added.into_iter().rev() {
                        // "-A CHAIN rest" -> "-I CHAIN 1 rest"
                        let rest = &l[3..];
                        let (chain, args) = rest.split_once(' ').unwrap_or((rest, ""));
                        let _ = writeln!(out, "-I {chain} 1 {args}");
                    }
                }
            }
            if table == "nat" {
                for c in delete {
                    let _ = writeln!(out, "-X {c}");
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// Every rule the kernel should hold in weft's chains, as
    /// `iptables-save` prints them: `(table, line)`.
    pub fn expected_saved(
        &self,
        ports: &BTreeMap<PortKey, PortRules>,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        out.extend(self.static_filter().into_iter().map(|l| ("filter", l)));
        out.extend(self.static_nat().into_iter().map(|l| ("nat", l)));
        out.extend(self.nodeports_jumps().into_iter().map(|l| ("nat", l)));
        for r in ports.values() {
            for l in r.filter_lines().into_iter().flatten() {
                out.push(("filter", l.clone()));
            }
            for l in r.services.iter().chain(&r.nodeports).chain(&r.nat) {
                out.push(("nat", l.clone()));
            }
        }
        out
    }
}

/// Rewrites `--probability` values to 6 decimals so saved rules compare
/// with rendered ones: kube-proxy writes 10 decimals, the kernel keeps a
/// 32-bit fraction and `iptables-save` prints it back with 11.
pub fn normalize_saved(line: &str) -> String {
    const KEY: &str = "--probability ";
    let Some(at) = line.find(KEY) else {
        return line.to_string();
    };
    let start = at + KEY.len();
    let end = line[start..].find(' ').map_or(line.len(), |i| start + i);
    match line[start..end].parse::<f64>() {
        Ok(p) => format!("{}{p:.6}{}", &line[..start], &line[end..]),
        Err(_) => line.to_string(),
    }
}

/// How many port chains one nat transaction of a sync declares, at most
/// (a port's chains always share one transaction, so a port with more
/// endpoints makes a larger one).
///
/// iptables-nft 1.8 keeps every chain name a transaction mentions in a
/// sorted linked list, so one transaction's cost grows with the square of
/// its chains: 2,000 services × 10 endpoints in one took 23.6 s, 5,000
/// would take minutes in `strcmp`. Each transaction also costs the kernel
/// a walk over every chain of the table when it commits, so transactions
/// should not be too small either: for 5,000 and 10,000 services × 10
/// endpoints, 384 took fewest seconds of 64, 128, 256, 384, 512, 1,024 and
/// 4,096 (10,000: 8.2 s, against 8.9 s with 256 and 10.0 s with 1,024;
/// `examples/render.rs`, timed with `iptables-restore` in a netns).
pub const CHAINS_PER_TRANSACTION: usize = 384;

/// Declares (flushes) and writes the chains of each port but those it
/// keeps unchanged, within one transaction. On nf_tables (`chunked`) each
/// port's declarations and rules together; on legacy every declaration
/// first, in name order: libiptc inserts a new chain into its sorted chain
/// list by walking from the nearest entry of an index it rebuilds only
/// every few hundred chains, so chains declared in name order land at the
/// end of a short walk (10,000 services × 10 endpoints:
/// iptables-legacy-restore 17.8 s in port order, 13.0 s in name order).
fn write_changed_chains(out: &mut String, ports: &[Written], chunked: bool) {
    if chunked {
        for w in ports {
            for c in w.changed() {
                let _ = writeln!(out, ":{c} - [0:0]");
            }
            w.write_rules(out);
        }
        return;
    }
    let mut names: Vec<&ChainName> = ports.iter().flat_map(Written::changed).collect();
    names.sort_unstable();
    for c in names {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for w in ports {
        w.write_rules(out);
    }
}

/// One port whose chains a transaction writes: its rules, the chains it
/// keeps as they are, and its nat rules' text when they are not kept in
/// the port (a full sync's [`NatText`]).
struct Written<'a> {
    rules: &'a PortRules,
    same: BTreeSet<&'a str>,
    nat: Option<&'a str>,
}

impl<'a> Written<'a> {
    fn kept(rules: &'a PortRules, same: BTreeSet<&'a str>) -> Written<'a> {
        Written {
            rules,
            same,
            nat: None,
        }
    }

    /// Its chains but the `same` ones.
    fn changed(&self) -> impl Iterator<Item = &'a ChainName> + '_ {
        self.rules
            .chains
            .iter()
            .filter(|c| !self.same.contains(c.as_str()))
    }

    /// Its nat rules but those of the `same` chains.
    fn write_rules(&self, out: &mut String) {
        let keep = |line: &str| !super::rule_chain(line).is_some_and(|c| self.same.contains(c));
        match self.nat {
            Some(text) if self.same.is_empty() => out.push_str(text),
            Some(text) => {
                for line in text.lines().filter(|l| keep(l)) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                for line in self.rules.nat.iter().filter(|l| keep(l)) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
}

/// As [`write_changed_chains`], in transactions of about
/// [`CHAINS_PER_TRANSACTION`] chains, each port whole within one.
fn changed_chain_transactions(out: &mut String, ports: &[Written]) {
    let mut open = 0;
    for w in ports {
        let chains: Vec<&ChainName> = w.changed().collect();
        if chains.is_empty() {
            continue;
        }
        if open == 0 {
            out.push_str("*nat\n");
        }
        for c in &chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        w.write_rules(out);
        open += chains.len();
        if open >= CHAINS_PER_TRANSACTION {
            out.push_str("COMMIT\n");
            open = 0;
        }
    }
    if open > 0 {
        out.push_str("COMMIT\n");
    }
}

/// Ports written whole: no chain kept; port `i`'s nat rules in `nat`
/// when given.
fn whole<'a>(
    ports: impl Iterator<Item = &'a PortRules>,
    nat: Option<&'a NatText>,
) -> Vec<Written<'a>> {
    ports
        .enumerate()
        .map(|(i, rules)| Written {
            rules,
            same: BTreeSet::new(),
            nat: nat.map(|n| n.port(i)),
        })
        .collect()
}

//! kube-proxy's iptables rules, rendered as `iptables-restore` text.
//!
//! Rules are written in the canonical form `iptables-save` prints (address
//! matches, protocol, comment, then the other matches, then the target), so
//! what is read back compares line for line with what was written. The
//! article's service renders exactly as its `iptables-save | grep` shows,
//! apart from the probability, which kube-proxy writes with 10 decimals.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use ipnet::IpNet;

use crate::plan::names::{endpoint_chain, service_hash};
use crate::plan::{EndpointPlan, PortKey, PortPlan};
use crate::MASQ_MARK;

pub const SERVICES: &str = "KUBE-SERVICES";
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const NODEPORTS: &str = "KUBE-NODEPORTS";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FORWARD: &str = "KUBE-FORWARD";

/// Prefixes of the per-service chains weft owns in the nat table.
pub const SERVICE_CHAIN_PREFIXES: [&str; 4] = ["KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-"];

/// A jump from a built-in chain into kube-proxy's chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    pub table: &'static str,
    pub chain: &'static str,
    /// The rule after `-A <chain> `, in `iptables-save` form.
    pub rule: &'static str,
}

impl Hook {
    pub fn saved(&self) -> String {
        format!("-A {} {}", self.chain, self.rule)
    }
}

/// The jumps kube-proxy inserts at the top of the built-in chains.
pub const HOOKS: [Hook; 7] = [
    Hook {
        table: "nat",
        chain: "PREROUTING",
        rule: "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    },
    Hook {
        table: "nat",
        chain: "OUTPUT",
        rule: "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    },
    Hook {
        table: "nat",
        chain: "POSTROUTING",
        rule: "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    },
    Hook {
        table: "filter",
        chain: "INPUT",
        rule: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    },
    Hook {
        table: "filter",
        chain: "FORWARD",
        rule: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    },
    Hook {
        table: "filter",
        chain: "OUTPUT",
        rule: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    },
    Hook {
        table: "filter",
        chain: "FORWARD",
        rule: "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    },
];

/// The rules of one service port, split by the chain they go to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRules {
    /// nat chains owned by this port, in creation order.
    pub chains: Vec<String>,
    /// Rules of the owned chains.
    pub nat: Vec<String>,
    /// Its rules in nat `KUBE-SERVICES` and `KUBE-NODEPORTS`.
    pub services: Vec<String>,
    pub nodeports: Vec<String>,
    /// Its rules in filter `KUBE-SERVICES` / `KUBE-EXTERNAL-SERVICES`.
    pub filter_services: Vec<String>,
    pub filter_external: Vec<String>,
}

impl PortRules {
    /// nat rule count, for logs and benchmarks.
    pub fn rule_count(&self) -> usize {
        self.nat.len() + self.services.len() + self.nodeports.len()
    }
}

/// Renders one address family's rules.
#[derive(Debug, Clone)]
pub struct IptablesRenderer {
    pub v6: bool,
    /// The pod network: sources outside it are masqueraded to cluster IPs.
    pub cluster_cidr: Option<IpNet>,
    /// Whether syncs of more than [`CHAINS_PER_TRANSACTION`] port chains
    /// are cut into several transactions (nf_tables; on legacy one
    /// transaction is cheapest: see `weft_firewall::Backend::chunked`).
    pub chunked: bool,
}

fn host(ip: std::net::IpAddr) -> String {
    if ip.is_ipv6() {
        format!("{ip}/128")
    } else {
        format!("{ip}/32")
    }
}

impl IptablesRenderer {
    fn reject(&self) -> &'static str {
        if self.v6 {
            "REJECT --reject-with icmp6-port-unreachable"
        } else {
            "REJECT --reject-with icmp-port-unreachable"
        }
    }

    fn mask(&self) -> &'static str {
        if self.v6 {
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        } else {
            "255.255.255.255"
        }
    }

    /// The rules of one service port.
    pub fn port(&self, p: &PortPlan) -> PortRules {
        let mut r = PortRules::default();
        let spn = p.key.svc_port_name();
        let proto = p.key.protocol.lower();
        let hash = service_hash(&spn, p.key.protocol);
        let svc = format!("KUBE-SVC-{hash}");
        let svl = format!("KUBE-SVL-{hash}");
        let ext = format!("KUBE-EXT-{hash}");
        let cip = host(p.cluster_ip);
        let cluster_match = format!(
            "-d {cip} -p {proto} -m comment --comment \"{spn} cluster IP\" -m {proto} --dport {}",
            p.port
        );
        let local_dst = |np: u16, comment: &str| {
            format!(
                "-p {proto} -m comment --comment \"{spn}{comment}\" -m addrtype --dst-type LOCAL -m {proto} --dport {np}"
            )
        };

        if p.endpoints.is_empty() {
            r.filter_services.push(format!(
                "-A {SERVICES} -d {cip} -p {proto} -m comment --comment \"{spn} has no endpoints\" -m {proto} --dport {} -j {}",
                p.port,
                self.reject()
            ));
            if let Some(np) = p.node_port {
                r.filter_external.push(format!(
                    "-A {EXTERNAL_SERVICES} {} -j {}",
                    local_dst(np, " has no endpoints"),
                    self.reject()
                ));
            }
            return r;
        }

        // The cluster-wide chain, over every endpoint.
        r.chains.push(svc.clone());
        if let Some(cidr) = self.cluster_cidr {
            r.nat.push(format!(
                "-A {svc} ! -s {cidr} {cluster_match} -j {MARK_MASQ}"
            ));
        }
        self.balance(
            &mut r,
            &svc,
            &spn,
            p,
            &p.endpoints.iter().collect::<Vec<_>>(),
        );
        for ep in &p.endpoints {
            self.endpoint(&mut r, &spn, p, ep);
        }

        // The node-local chain, over local endpoints only.
        let local: Vec<&EndpointPlan> = p.local_endpoints().collect();
        let wants_local = p.internal_local || (p.external_local && p.node_port.is_some());
        if wants_local && !local.is_empty() {
            r.chains.push(svl.clone());
            self.balance(&mut r, &svl, &spn, p, &local);
        }

        if !p.internal_local {
            r.services
                .push(format!("-A {SERVICES} {cluster_match} -j {svc}"));
        } else if !local.is_empty() {
            r.services
                .push(format!("-A {SERVICES} {cluster_match} -j {svl}"));
        } else {
            r.filter_services.push(format!(
                "-A {SERVICES} -d {cip} -p {proto} -m comment --comment \"{spn} has no local endpoints\" -m {proto} --dport {} -j DROP",
                p.port
            ));
        }

        if let Some(np) = p.node_port {
            let np_match = format!(
                "-A {NODEPORTS} -p {proto} -m comment --comment \"{spn}\" -m {proto} --dport {np}"
            );
            if !p.external_local {
                r.nodeports.push(format!("{np_match} -j {MARK_MASQ}"));
                r.nodeports.push(format!("{np_match} -j {svc}"));
            } else {
                r.nodeports.push(format!("{np_match} -j {ext}"));
                r.chains.push(ext.clone());
                if let Some(cidr) = self.cluster_cidr {
                    r.nat.push(format!(
                        "-A {ext} -s {cidr} -m comment --comment \"pod traffic for {spn} external destinations\" -j {svc}"
                    ));
                }
                r.nat.push(format!(
                    "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"
                ));
                r.nat.push(format!(
                    "-A {ext} -m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {svc}"
                ));
                if local.is_empty() {
                    r.filter_external.push(format!(
                        "-A {EXTERNAL_SERVICES} {} -j DROP",
                        local_dst(np, " has no local endpoints")
                    ));
                } else {
                    r.nat.push(format!("-A {ext} -j {svl}"));
                }
            }
        }
        r
    }

    /// Affinity checks, then random selection (`1/(n-i)`, last rule
    /// unconditional), in `chain`.
    fn balance(
        &self,
        r: &mut PortRules,
        chain: &str,
        spn: &str,
        p: &PortPlan,
        eps: &[&EndpointPlan],
    ) {
        let sep = |ep: &EndpointPlan| endpoint_chain(spn, p.key.protocol, &ep.text());
        if let Some(secs) = p.affinity_seconds {
            for ep in eps {
                let s = sep(ep);
                r.nat.push(format!(
                    "-A {chain} -m comment --comment \"{spn}\" -m recent --rcheck --seconds {secs} --reap --name {s} --mask {} --rsource -j {s}",
                    self.mask()
                ));
            }
        }
        let n = eps.len();
        for (i, ep) in eps.iter().enumerate() {
            let s = sep(ep);
            if i + 1 < n {
                let prob = 1.0 / (n - i) as f64;
                r.nat.push(format!(
                    "-A {chain} -m comment --comment \"{spn}\" -m statistic --mode random --probability {prob:.10} -j {s}"
                ));
            } else {
                r.nat
                    .push(format!("-A {chain} -m comment --comment \"{spn}\" -j {s}"));
            }
        }
    }

    /// `KUBE-SEP-…`: hairpin masquerade, then DNAT (recording affinity).
    fn endpoint(&self, r: &mut PortRules, spn: &str, p: &PortPlan, ep: &EndpointPlan) {
        let proto = p.key.protocol.lower();
        let s = endpoint_chain(spn, p.key.protocol, &ep.text());
        r.chains.push(s.clone());
        r.nat.push(format!(
            "-A {s} -s {} -m comment --comment \"{spn}\" -j {MARK_MASQ}",
            host(ep.addr.ip())
        ));
        let recent = match p.affinity_seconds {
            Some(_) => format!(
                " -m recent --set --name {s} --mask {} --rsource",
                self.mask()
            ),
            None => String::new(),
        };
        r.nat.push(format!(
            "-A {s} -p {proto} -m comment --comment \"{spn}\"{recent} -m {proto} -j DNAT --to-destination {}",
            ep.text()
        ));
    }

    /// The fixed rules of the nat table (masquerade chain and mark).
    fn static_nat(&self) -> [String; 4] {
        [
            format!("-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
            format!("-A {POSTROUTING} -j MARK --set-xmark {MASQ_MARK}/0x0"),
            format!("-A {POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"),
            format!("-A {MARK_MASQ} -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}"),
        ]
    }

    fn static_filter(&self) -> [String; 3] {
        [
            format!("-A {FORWARD} -m conntrack --ctstate INVALID -j DROP"),
            format!("-A {FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"),
            format!("-A {FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ]
    }

    /// The last rule of nat `KUBE-SERVICES`.
    pub fn nodeports_jump() -> String {
        format!("-A {SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j {NODEPORTS}")
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
    /// chains a few hundred per transaction (each port whole within one,
    /// see [`port_chain_transactions`]), then one that rewrites the shared
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
    ) -> String {
        let cap = ports.values().map(|r| r.nat.len() * 120).sum::<usize>() + ports.len() * 160;
        let mut out = String::with_capacity(cap + 4096);

        out.push_str("*filter\n");
        for c in [SERVICES, EXTERNAL_SERVICES, FORWARD] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for h in hooks.iter().filter(|h| h.table == "filter") {
            let _ = writeln!(out, "-I {} 1 {}", h.chain, h.rule);
        }
        for line in self.static_filter() {
            out.push_str(&line);
            out.push('\n');
        }
        for r in ports.values() {
            for line in r.filter_services.iter().chain(&r.filter_external) {
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
            port_chain_transactions(&mut out, ports.values());
            out.push_str("*nat\n");
        } else {
            self.write_ports_chains(&mut out, ports.values());
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
        out.push_str(&Self::nodeports_jump());
        out.push('\n');
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
        let written = || changes.iter().filter_map(|(_, new)| *new);
        let split = self.chunked
            && written().map(|r| r.chains.len()).sum::<usize>() > CHAINS_PER_TRANSACTION;
        if split {
            port_chain_transactions(&mut out, written());
        }
        for (table, pick) in [
            (
                "filter",
                (|r: &PortRules| [&r.filter_services, &r.filter_external])
                    as fn(&PortRules) -> [&Vec<String>; 2],
            ),
            ("nat", |r: &PortRules| [&r.services, &r.nodeports]),
        ] {
            let _ = writeln!(out, "*{table}");
            if table == "nat" {
                if !split {
                    self.write_ports_chains(&mut out, written());
                }
                for c in delete {
                    let _ = writeln!(out, ":{c} - [0:0]");
                }
            }
            for (old, new) in changes {
                let (o, n) = (pick(old.unwrap_or(&none)), pick(new.unwrap_or(&none)));
                for k in 0..2 {
                    let (gone, added) = diff(o[k], n[k]);
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

    /// The nat chains of `ports` within one transaction. On nf_tables each
    /// port's declarations and rules together; on legacy every
    /// declaration first, in name order: libiptc inserts a new chain into
    /// its sorted chain list by walking from the nearest entry of an index
    /// it rebuilds only every few hundred chains, so chains declared in
    /// name order land at the end of a short walk (10,000 services × 10
    /// endpoints: iptables-legacy-restore 17.8 s in port order, 13.0 s in
    /// name order).
    fn write_ports_chains<'a>(&self, out: &mut String, ports: impl Iterator<Item = &'a PortRules>) {
        if self.chunked {
            for r in ports {
                write_port_chains(out, r);
            }
            return;
        }
        let ports: Vec<&PortRules> = ports.collect();
        let mut names: Vec<&String> = ports.iter().flat_map(|r| &r.chains).collect();
        names.sort_unstable();
        for c in names {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for r in ports {
            for line in &r.nat {
                out.push_str(line);
                out.push('\n');
            }
        }
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
        out.push(("nat", Self::nodeports_jump()));
        for r in ports.values() {
            for l in r.filter_services.iter().chain(&r.filter_external) {
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

/// Declares (creates, or flushes if it exists) and fills each chain of one
/// port: its jumps reach only its own chains and the fixed ones.
fn write_port_chains(out: &mut String, r: &PortRules) {
    for c in &r.chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for line in &r.nat {
        out.push_str(line);
        out.push('\n');
    }
}

/// Writes the nat chains of `ports` as transactions of about
/// [`CHAINS_PER_TRANSACTION`] chains, each port whole within one.
pub fn port_chain_transactions<'a>(out: &mut String, ports: impl Iterator<Item = &'a PortRules>) {
    let mut open = 0;
    for r in ports.filter(|r| !r.chains.is_empty()) {
        if open == 0 {
            out.push_str("*nat\n");
        }
        write_port_chains(out, r);
        open += r.chains.len();
        if open >= CHAINS_PER_TRANSACTION {
            out.push_str("COMMIT\n");
            open = 0;
        }
    }
    if open > 0 {
        out.push_str("COMMIT\n");
    }
}

/// Whether a nat chain name belongs to a service (owned by weft's proxy).
pub fn is_service_chain(name: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

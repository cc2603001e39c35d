//! Applying port plans to the kernel: full syncs (everything, stale chains
//! removed) and partial syncs (only the services that changed), through
//! `iptables-restore -w --noflush` or `nft -f` text (applied in-process
//! where libnftables is installed, see [`super::nft_apply`]), one
//! transaction each.
//!
//! The rendered rules of every port are kept, so a partial sync renders
//! only changed services and sends only what differs. A failed transaction
//! changes nothing in the kernel; the caches are left as before and the
//! next sync is a full one.

mod nft_table;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use weft_firewall::apply::{native_writer, restore_noflush, run};
use weft_firewall::xtables;
use weft_firewall::{FirewallError, Iptables};

use super::canary::{self, LegacySeen};
use super::nft_apply::{ColdApplied, NftApplier};
use crate::plan::names::ChainName;
use crate::plan::policy::NodePolicy;
use crate::plan::{take_ports, PortKey, PortPlan};
use crate::render::iptables::{self, IptablesRenderer, NatText, PortRules, HOOKS};
use crate::render::nft::{self, NftRenderer, SharedRefs};
use crate::spec::ServiceName;
use nft_table::NftTable;

/// Which firewall the proxy programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl ProxyMode {
    /// A mode by name; the empty name is kube-proxy's default, iptables,
    /// or nftables on a host without any iptables program.
    pub fn parse(s: &str) -> Option<ProxyMode> {
        match s {
            "" if !weft_firewall::backend::iptables_installed() => Some(ProxyMode::Nftables),
            "iptables" | "" => Some(ProxyMode::Iptables),
            "nftables" | "nft" => Some(ProxyMode::Nftables),
            _ => None,
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub full: bool,
    /// Service ports in the kernel after the sync.
    pub ports: usize,
    /// Service ports whose rules were (re)written.
    pub written: usize,
    /// Bytes of rules text sent to the tool.
    pub bytes: usize,
    pub render: Duration,
    pub apply: Duration,
    /// nft mode: a table was created from nothing, then its elements
    /// loaded (see [`nft::ColdStart`]).
    pub cold: bool,
    /// nft mode: the changes were elements only, sent over nf_tables
    /// netlink rather than as text.
    pub netlink: bool,
    /// nft mode, a table created from nothing: its steps.
    pub cold_steps: Option<ColdApplied>,
}

/// What the proxy knows of its host beyond the plans (kube-proxy's flags
/// and the node's addresses).
#[derive(Debug, Clone, Default)]
pub struct HostSettings {
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// The node's addresses (at most one per family is used).
    pub node_ips: Vec<IpAddr>,
    /// `--iptables-localhost-nodeports`: IPv4 node ports on 127.0.0.1.
    pub localhost_node_ports: bool,
    /// `--nodeport-addresses`, resolved to this node's addresses (`None`:
    /// every local address serves node ports).
    pub node_port_ips: Option<Vec<IpAddr>>,
}

/// Prepares the host for kube-proxy's iptables rules: creates the nfacct
/// counters its rules feed (rules naming a missing counter are refused),
/// turns on `route_localnet` for node ports on localhost, and reads
/// whether conntrack is liberal. Returns (counters exist, liberal).
fn prepare_iptables_host(localhost_node_ports: bool) -> (bool, bool) {
    let nfacct = [iptables::NFACCT_INVALID, iptables::NFACCT_LOCALHOST]
        .iter()
        .all(|name| match weft_kernel::ensure_nfacct(name) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!("no nfacct counter {name} ({e}): its rules go without it");
                false
            }
        });
    if localhost_node_ports {
        let path = "/proc/sys/net/ipv4/conf/all/route_localnet";
        match std::fs::write(path, "1") {
            Ok(()) => tracing::info!(
                "route_localnet=1: node ports answer on localhost too (--iptables-localhost-nodeports=false to stop)"
            ),
            Err(e) => tracing::warn!("setting {path}: {e}"),
        }
    }
    let liberal = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal")
        .is_ok_and(|v| v.trim() != "0");
    if liberal {
        tracing::info!("nf_conntrack_tcp_be_liberal is set: INVALID packets are not dropped");
    }
    (nfacct, liberal)
}

/// One address family's rendered rules.
struct Family {
    ipt: IptablesRenderer,
    /// nft mode: the `kube-proxy` table's rendered ports.
    nft: NftTable,
    ipt_ports: BTreeMap<PortKey, PortRules>,
    /// Whether rules of this family were ever written (IPv6 tables are
    /// left alone until an IPv6 service shows up).
    active: bool,
    /// Whether a full nft sync has removed the legacy shard tables (so an
    /// upgraded proxy does not leave the old rules in force beside its own).
    legacy_removed: bool,
    /// Every endpoint of each port (kube-proxy's large-cluster count).
    endpoint_counts: BTreeMap<PortKey, usize>,
}

impl Family {
    fn new(ipt: IptablesRenderer) -> Family {
        Family {
            nft: NftTable {
                r: NftRenderer {
                    table: nft::TABLE.to_string(),
                    v6: ipt.v6,
                    node: ipt.node.clone(),
                },
                ports: BTreeMap::new(),
                shared: SharedRefs::new(),
            },
            ipt,
            ipt_ports: BTreeMap::new(),
            active: false,
            legacy_removed: false,
            endpoint_counts: BTreeMap::new(),
        }
    }

    fn large_cluster(&self) -> bool {
        self.endpoint_counts.values().sum::<usize>() > iptables::LARGE_CLUSTER_ENDPOINTS
    }

    fn v6(&self) -> bool {
        self.ipt.v6
    }
}

/// Tables `kube-proxy-0` … `kube-proxy-15` of earlier weft versions, which
/// spread per-service chains over 16 tables; removed on cleanup.
const LEGACY_NFT_SHARDS: usize = 16;

/// Keeps the kernel's service rules equal to the plans it is given.
pub struct Syncer {
    mode: ProxyMode,
    /// iptables mode: the backend's programs.
    iptables: Iptables,
    families: [Family; 2],
    /// Set after a failed transaction, or when a change must rewrite every
    /// service (the large-cluster mode turned on or off): the next sync
    /// must be full.
    pub needs_full: bool,
    /// iptables mode: both families' kube-proxy chains exist even without
    /// services (as kube-proxy does on a host with IPv6).
    dual_stack: bool,
    /// Keep every applied rule (for read-back checks); by default only
    /// what a partial sync needs is kept.
    pub keep_rules: bool,
    /// nft mode: how transactions reach the kernel.
    nft: NftApplier,
    /// The legacy tables' state when the canary last found them intact.
    canary_seen: [LegacySeen; 2],
}

impl Syncer {
    /// The mode this syncer writes rules for.
    pub fn mode(&self) -> ProxyMode {
        self.mode
    }

    /// `cidr4` / `cidr6`: the pod networks (off-cluster sources to cluster
    /// IPs are masqueraded). `iptables`: the backend iptables mode writes
    /// to (it also decides how large syncs are cut).
    pub fn new(
        mode: ProxyMode,
        iptables: Iptables,
        cidr4: Option<IpNet>,
        cidr6: Option<IpNet>,
        host: &HostSettings,
    ) -> Syncer {
        let chunked = iptables.backend.chunked();
        let (nfacct, liberal) = if mode == ProxyMode::Iptables {
            prepare_iptables_host(host.localhost_node_ports)
        } else {
            (false, false)
        };
        let renderer = |v6: bool, pods: Option<IpNet>| IptablesRenderer {
            node: NodePolicy {
                pods,
                masquerade_all: host.masquerade_all,
                node_ip: host.node_ips.iter().copied().find(|ip| ip.is_ipv6() == v6),
            },
            localhost_node_ports: host.localhost_node_ports,
            nfacct,
            conntrack_liberal: liberal,
            node_port_ips: host.node_port_ips.clone(),
            ..IptablesRenderer::new(v6, pods, chunked)
        };
        Syncer {
            mode,
            iptables,
            families: [
                Family::new(renderer(false, cidr4)),
                Family::new(renderer(true, cidr6)),
            ],
            needs_full: true,
            dual_stack: mode == ProxyMode::Iptables
                && std::path::Path::new("/proc/net/if_inet6").exists(),
            keep_rules: false,
            nft: NftApplier::new(mode == ProxyMode::Nftables),
            canary_seen: [None, None],
        }
    }

    /// Whether the rules of every family written so far are still in the
    /// kernel (see [`super::canary`]); false means someone removed them.
    pub fn rules_intact(&mut self) -> Result<bool, FirewallError> {
        for (i, family) in self.families.iter().enumerate() {
            if !family.active {
                continue;
            }
            let intact = match self.mode {
                ProxyMode::Iptables => {
                    canary::iptables_intact(&self.iptables, family.v6(), &mut self.canary_seen[i])?
                }
                ProxyMode::Nftables => canary::nft_intact(family.v6())?,
            };
            if !intact {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Service ports currently programmed.
    pub fn port_count(&self) -> usize {
        self.families
            .iter()
            .map(|f| match self.mode {
                ProxyMode::Iptables => f.ipt_ports.len(),
                ProxyMode::Nftables => f.nft.ports.len(),
            })
            .sum()
    }

    /// Writes every plan and removes whatever else the proxy owns.
    pub fn full(&mut self, plans: Vec<PortPlan>) -> Result<SyncReport, FirewallError> {
        let mut report = SyncReport {
            full: true,
            ..SyncReport::default()
        };
        let (v4, v6): (Vec<PortPlan>, Vec<PortPlan>) = plans.into_iter().partition(|p| !p.v6());
        for (family, plans) in self.families.iter_mut().zip([v4, v6]) {
            if plans.is_empty() && !family.active && family.v6() && !self.dual_stack {
                continue;
            }
            let t = Instant::now();
            let written = plans.len();
            let res = match self.mode {
                ProxyMode::Iptables => {
                    family.endpoint_counts = plans
                        .iter()
                        .map(|p| (p.key.clone(), p.all_endpoints))
                        .collect();
                    family.ipt.large_cluster = family.large_cluster();
                    let (ports, nat) = render_full(&family.ipt, plans, self.keep_rules);
                    report.render += t.elapsed();
                    let r = full_iptables(&self.iptables, &family.ipt, &ports, nat.as_ref());
                    if r.is_ok() {
                        family.ipt_ports = ports;
                    }
                    r
                }
                ProxyMode::Nftables => {
                    let ports = family.nft.r.ports(&plans);
                    let mut shared = SharedRefs::new();
                    let mut text = String::new();
                    if !family.legacy_removed {
                        let fam = family.nft.r.family();
                        for i in 0..LEGACY_NFT_SHARDS {
                            let t = format!("{fam} {}-{i}", nft::TABLE);
                            text.push_str(&format!("add table {t}\ndelete table {t}\n"));
                        }
                    }
                    let mut r = None;
                    if !family.active {
                        // Maybe the first table since boot: load it faster.
                        let mut cold = family.nft.r.cold(&ports, &mut shared);
                        cold.create.insert_str(0, &text);
                        report.render += t.elapsed();
                        r = self
                            .nft
                            .apply_cold(&family.nft.r, cold)
                            .transpose()
                            .map(|r| {
                                r.map(|cold| {
                                    report.cold_steps = Some(cold);
                                    (cold.bytes, cold.total())
                                })
                            });
                        report.cold |= r.is_some();
                    }
                    let r = match r {
                        Some(r) => r,
                        None => {
                            let t = Instant::now();
                            text.push_str(&family.nft.r.full(&ports, &mut shared));
                            report.render += t.elapsed();
                            self.nft.apply(&text)
                        }
                    };
                    if r.is_ok() {
                        family.legacy_removed = true;
                        family.nft.ports = ports;
                        family.nft.shared = shared;
                    }
                    r
                }
            };
            let (bytes, apply) = match res {
                Ok(x) => x,
                Err(e) => {
                    self.needs_full = true;
                    return Err(e);
                }
            };
            family.active = true;
            report.bytes += bytes;
            report.apply += apply;
            report.written += written;
        }
        self.needs_full = false;
        if self.mode == ProxyMode::Nftables {
            // partial syncs send elements over netlink: the library's
            // cache would sit unused until the next text transaction
            self.nft.forget_cache();
        }
        report.ports = self.port_count();
        Ok(report)
    }

    /// Rewrites the ports of `services` to `plans` (their current plans;
    /// a service with no plan left is removed).
    pub fn partial(
        &mut self,
        services: &BTreeSet<ServiceName>,
        plans: Vec<PortPlan>,
    ) -> Result<SyncReport, FirewallError> {
        let mut report = SyncReport::default();
        let (v4, v6): (Vec<PortPlan>, Vec<PortPlan>) = plans.into_iter().partition(|p| !p.v6());
        if self.mode == ProxyMode::Iptables {
            for (family, plans) in self.families.iter_mut().zip([&v4, &v6]) {
                take_ports(&mut family.endpoint_counts, services);
                for p in plans {
                    family
                        .endpoint_counts
                        .insert(p.key.clone(), p.all_endpoints);
                }
                if family.large_cluster() != family.ipt.large_cluster {
                    // every endpoint rule gains or loses its comment
                    self.needs_full = true;
                }
            }
            if self.needs_full {
                return Ok(report);
            }
        }
        for (family, plans) in self.families.iter_mut().zip([v4, v6]) {
            let t = Instant::now();
            let res = match self.mode {
                ProxyMode::Iptables => {
                    let r = partial_iptables(&self.iptables, family, services, &plans, &mut report);
                    if r.is_ok() && !self.keep_rules {
                        for p in &plans {
                            if let Some(rules) = family.ipt_ports.get_mut(&p.key) {
                                rules.slim();
                            }
                        }
                    }
                    r
                }
                ProxyMode::Nftables => nft_table::partial(
                    &mut self.nft,
                    &mut family.nft,
                    &mut family.active,
                    services,
                    &plans,
                    &mut report,
                ),
            };
            report.render += t
                .elapsed()
                .saturating_sub(res.as_ref().map(|r| r.1).unwrap_or_default());
            match res {
                Ok((bytes, apply)) => {
                    report.bytes += bytes;
                    report.apply += apply;
                }
                Err(e) => {
                    self.needs_full = true;
                    return Err(e);
                }
            }
        }
        report.ports = self.port_count();
        Ok(report)
    }

    /// Every rule the kernel should hold, as `iptables-save` prints it, per
    /// family (iptables mode; for read-back checks, with `keep_rules`).
    pub fn expected_iptables(&self, v6: bool) -> Vec<(&'static str, String)> {
        let f = &self.families[usize::from(v6)];
        f.ipt.expected_saved(&f.ipt_ports)
    }
}

/// What the kernel holds of the proxy's iptables state.
struct IptablesState {
    /// nat chains of service ports.
    service_chains: BTreeSet<String>,
    /// Hooks missing from the built-in chains.
    missing: Vec<iptables::Hook>,
    /// kubelet's `KUBE-FIREWALL` chain exists.
    localnet_exists: bool,
}

/// On legacy, with every hook in place, read from the kernel directly
/// (`iptables-legacy-save` of a table of 10,000 services takes seconds);
/// `None` when that cannot be done here, and the tools are asked instead.
fn iptables_state_native(ipt: &Iptables, v6: bool) -> Option<IptablesState> {
    if !native_writer(ipt, v6) {
        return None;
    }
    let family = if v6 {
        xtables::Family::V6
    } else {
        xtables::Family::V4
    };
    let read = |table: &str| {
        xtables::read_table(family, table)
            .map_err(|e| {
                weft_firewall::fallback::fell_back(
                    weft_firewall::fallback::FastPath::XtablesReader,
                    format!("the {table} table: {e}"),
                )
            })
            .ok()
    };
    let nat = read("nat")?;
    let filter = read("filter")?;
    // Hooks are found by their bytes, so one written by another iptables
    // version (another revision of a match) would look missing and be
    // added twice: when any looks missing, iptables-save has the last word
    // (cheap then: before the first sync, or once on a host taken over).
    for h in HOOKS {
        let table = if h.table == "nat" { &nat } else { &filter };
        if !table.contains(h.chain, h.rule).ok()? {
            return None;
        }
    }
    Some(IptablesState {
        service_chains: nat
            .user_chains()
            .filter(|c| iptables::is_service_chain(c))
            .map(str::to_string)
            .collect(),
        missing: Vec::new(),
        localnet_exists: filter.has_chain(iptables::LOCALNET_FIREWALL),
    })
}

fn iptables_state(ipt: &Iptables, v6: bool) -> Result<IptablesState, FirewallError> {
    if let Some(state) = iptables_state_native(ipt, v6) {
        return Ok(state);
    }
    let save = ipt.save(v6);
    let nat = run(&save, &["-t", "nat"], None)?;
    let filter = run(&save, &["-t", "filter"], None)?;
    let chains = nat
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| iptables::is_service_chain(c))
        .map(str::to_string)
        .collect();
    let missing = HOOKS
        .iter()
        .filter(|h| {
            let saved = if h.table == "nat" { &nat } else { &filter };
            let want = h.saved();
            !saved.lines().any(|l| l == want)
        })
        .copied()
        .collect();
    let localnet = format!(":{} ", iptables::LOCALNET_FIREWALL);
    Ok(IptablesState {
        service_chains: chains,
        missing,
        localnet_exists: filter.lines().any(|l| l.starts_with(&localnet)),
    })
}

fn restore(ipt: &Iptables, v6: bool, text: &str) -> Result<(usize, Duration), FirewallError> {
    let t = Instant::now();
    restore_noflush(ipt, v6, text)?;
    Ok((text.len(), t.elapsed()))
}

/// Every port's rules for a full sync, rendered in key order. Unless the
/// rules are kept (`keep_rules`), each port's nat rules move to one
/// [`NatText`] as soon as it is rendered, so no port holds its lines.
fn render_full(
    r: &IptablesRenderer,
    mut plans: Vec<PortPlan>,
    keep_rules: bool,
) -> (BTreeMap<PortKey, PortRules>, Option<NatText>) {
    // a port per key (the catalog never plans one twice), in key order
    plans.sort_by(|a, b| a.key.cmp(&b.key));
    plans.dedup_by(|a, b| a.key == b.key);
    let mut nat = (!keep_rules).then(NatText::default);
    let ports = plans
        .iter()
        .map(|p| {
            let mut rules = r.port(p);
            if let Some(nat) = nat.as_mut() {
                nat.take(&mut rules);
            }
            (p.key.clone(), rules)
        })
        .collect();
    (ports, nat)
}

fn full_iptables(
    ipt: &Iptables,
    r: &IptablesRenderer,
    ports: &BTreeMap<PortKey, PortRules>,
    nat: Option<&NatText>,
) -> Result<(usize, Duration), FirewallError> {
    let state = iptables_state(ipt, r.v6)?;
    let wanted: BTreeSet<&str> = ports
        .values()
        .flat_map(|p| p.chains.iter().map(ChainName::as_str))
        .collect();
    let stale: BTreeSet<String> = state
        .service_chains
        .into_iter()
        .filter(|c| !wanted.contains(c.as_str()))
        .collect();
    let text = match nat {
        Some(nat) => r.restore_with(ports, nat, &stale, &state.missing, state.localnet_exists),
        None => r.restore(ports, &stale, &state.missing, state.localnet_exists),
    };
    restore(ipt, r.v6, &text)
}

fn partial_iptables(
    ipt: &Iptables,
    f: &mut Family,
    services: &BTreeSet<ServiceName>,
    plans: &[PortPlan],
    report: &mut SyncReport,
) -> Result<(usize, Duration), FirewallError> {
    let old = take_ports(&mut f.ipt_ports, services);
    let mut write = BTreeSet::new();
    for p in plans {
        let rules = f.ipt.port(p);
        if old.get(&p.key) != Some(&rules) {
            write.insert(p.key.clone());
        }
        f.ipt_ports.insert(p.key.clone(), rules);
    }
    let kept: BTreeSet<&ChainName> = plans
        .iter()
        .filter_map(|p| f.ipt_ports.get(&p.key))
        .flat_map(|r| &r.chains)
        .collect();
    let delete: BTreeSet<String> = old
        .values()
        .flat_map(|r| &r.chains)
        .filter(|c| !kept.contains(c))
        .map(|c| c.to_string())
        .collect();
    let removed_ports = old.keys().any(|k| !f.ipt_ports.contains_key(k));
    if write.is_empty() && delete.is_empty() && !removed_ports {
        return Ok((0, Duration::ZERO));
    }
    report.written += write.len();
    if !f.active {
        // First rules of this family: write everything, hooks included.
        full_iptables(ipt, &f.ipt, &f.ipt_ports, None)?;
        f.active = true;
        return Ok((0, Duration::ZERO));
    }
    let mut changes: Vec<(Option<&PortRules>, Option<&PortRules>)> = write
        .iter()
        .map(|k| (old.get(k), f.ipt_ports.get(k)))
        .collect();
    changes.extend(
        old.iter()
            .filter(|(k, _)| !f.ipt_ports.contains_key(*k))
            .map(|(_, r)| (Some(r), None)),
    );
    let text = f.ipt.partial_restore(&changes, &delete);
    match restore(ipt, f.ipt.v6, &text) {
        Ok(x) => {
            f.active = true;
            Ok(x)
        }
        Err(e) => {
            // Nothing changed in the kernel: put the old rules back.
            for p in plans {
                f.ipt_ports.remove(&p.key);
            }
            f.ipt_ports.extend(old);
            Err(e)
        }
    }
}

/// Removes every rule, chain and table of the proxy (both modes, both
/// families, every installed iptables backend); returns what was removed.
pub fn cleanup() -> Result<Vec<String>, FirewallError> {
    let mut removed = Vec::new();
    for (ipt, v6) in weft_firewall::backend::installed()
        .into_iter()
        .flat_map(|i| [(i.clone(), false), (i, true)])
    {
        let mut text = String::new();
        for table in ["filter", "nat"] {
            let saved = match run(&ipt.save(v6), &["-t", table], None) {
                Ok(s) => s,
                Err(FirewallError::Exec { .. }) => continue,
                Err(e) => return Err(e),
            };
            // kubelet's chain and its jumps stay, as kube-proxy leaves them
            let ours: Vec<&str> = saved
                .lines()
                .filter_map(|l| l.strip_prefix(':'))
                .filter_map(|l| l.split(' ').next())
                .filter(|c| c.starts_with("KUBE-") && *c != iptables::LOCALNET_FIREWALL)
                .collect();
            let hooks: Vec<String> = HOOKS
                .iter()
                .filter(|h| h.table == table && !h.rule.ends_with(iptables::LOCALNET_FIREWALL))
                .map(|h| h.saved())
                .filter(|want| saved.lines().any(|l| l == want))
                .collect();
            if ours.is_empty() && hooks.is_empty() {
                continue;
            }
            text.push_str(&format!("*{table}\n"));
            for h in &hooks {
                text.push_str(&h.replacen("-A ", "-D ", 1));
                text.push('\n');
            }
            for c in &ours {
                text.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &ours {
                text.push_str(&format!("-X {c}\n"));
            }
            text.push_str("COMMIT\n");
            removed.push(format!(
                "{} ({}) {table}: {} chains",
                if v6 { "ip6tables" } else { "iptables" },
                ipt.backend.name(),
                ours.len()
            ));
        }
        if !text.is_empty() {
            restore_noflush(&ipt, v6, &text)?;
        }
    }
    for family in ["ip", "ip6"] {
        // `nft list tables` would fetch every rule: ask for each name.
        let legacy = (0..LEGACY_NFT_SHARDS).map(|i| format!("{}-{i}", nft::TABLE));
        for table in std::iter::once(nft::TABLE.to_string()).chain(legacy) {
            if run("nft", &["delete", "table", family, &table], None).is_ok() {
                removed.push(format!("nft table {family} {table}"));
            }
        }
    }
    Ok(removed)
}

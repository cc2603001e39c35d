//! kube-proxy's iptables rules, rendered as `iptables-restore` text: the
//! rules of the pinned kube-proxy (v1.36) exactly, chain names, comments
//! and matches, so operators replacing kube-proxy keep their scripts.
//!
//! Rules are written in the canonical form `iptables-save` prints (address
//! matches, protocol, comment, then the other matches, then the target), so
//! what is read back compares line for line with what was written.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::plan::names::{endpoint_chain, service_hash, ChainName};
use crate::plan::policy::{Masquerade, NodePolicy, PortPolicy, Verdict};
use crate::plan::{EndpointPlan, PortPlan};

mod transactions;
pub use transactions::{normalize_saved, CHAINS_PER_TRANSACTION};

pub const SERVICES: &str = "KUBE-SERVICES";
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const NODEPORTS: &str = "KUBE-NODEPORTS";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FORWARD: &str = "KUBE-FORWARD";
/// Drops load-balancer traffic from outside its source ranges.
pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// kubelet's chain, which kube-proxy also fills: it blocks connections to
/// 127.0.0.0/8 from elsewhere when node ports answer on localhost.
pub const LOCALNET_FIREWALL: &str = "KUBE-FIREWALL";

/// nfacct counters kube-proxy's rules feed (its metrics' sources).
pub const NFACCT_INVALID: &str = "ct_state_invalid_dropped_pkts";
pub const NFACCT_LOCALHOST: &str = "localhost_nps_accepted_pkts";

/// kube-proxy's large-cluster mode starts above this many endpoints:
/// endpoint rules lose their comments (40% less text).
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// Prefixes of the per-service chains weft owns in the nat table.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SEP-",
    "KUBE-EXT-",
    "KUBE-SVL-",
    "KUBE-FW-",
];

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

const fn hook(table: &'static str, chain: &'static str, rule: &'static str) -> Hook {
    Hook { table, chain, rule }
}

/// The jumps kube-proxy ensures, in its order: each missing one is put at
/// the top of its built-in chain, so the last listed ends up first.
pub const HOOKS: [Hook; 14] = [
    hook("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"),
    hook("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"),
    hook("filter", "INPUT", "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"),
    hook("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    hook("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    hook("filter", "FORWARD", "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"),
    hook("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    hook("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    hook("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    hook("nat", "OUTPUT", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    hook("nat", "PREROUTING", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    hook("nat", "POSTROUTING", "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"),
    hook("filter", "INPUT", "-j KUBE-FIREWALL"),
    hook("filter", "OUTPUT", "-j KUBE-FIREWALL"),
];

/// The rules of one service port, split by the chain they go to.
#[derive(Debug, Clone, Default)]
pub struct PortRules {
    /// nat chains owned by this port, in creation order.
    pub chains: Vec<ChainName>,
    /// Rules of the owned chains (emptied by [`PortRules::slim`] once
    /// applied: a change rewrites the chains whole, so only their digest
    /// is needed to tell whether they changed).
    pub nat: Vec<String>,
    /// Digest of each owned chain's rules, as `chains` (a partial sync
    /// rewrites only the chains that changed: one endpoint replaced in a
    /// Service of ten rewrites its service chain and the new endpoint's,
    /// not eleven chains).
    pub chain_digests: Vec<u64>,
    /// Its rules in nat `KUBE-SERVICES` and `KUBE-NODEPORTS`.
    pub services: Vec<String>,
    pub nodeports: Vec<String>,
    /// Its rules in filter `KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`,
    /// `KUBE-PROXY-FIREWALL` and `KUBE-NODEPORTS` (health check ports).
    pub filter_services: Vec<String>,
    pub filter_external: Vec<String>,
    pub filter_firewall: Vec<String>,
    pub filter_nodeports: Vec<String>,
}

/// The nat rules of a full sync's ports, one port after another in one
/// text, in the order of the ports' keys. Kept in each port until the
/// restore, 255,000 endpoints' rules were 765,000 small strings; freed
/// among what the ports keep, they left some 60 MiB of the heap resident.
/// Here they are one allocation, freed whole.
#[derive(Debug, Default)]
pub struct NatText {
    text: String,
    /// Where each port's rules end in `text`.
    ends: Vec<usize>,
}

impl NatText {
    /// Moves `r`'s nat rules to the end of the text: the next port's, in
    /// key order.
    pub fn take(&mut self, r: &mut PortRules) {
        for line in std::mem::take(&mut r.nat) {
            self.text.push_str(&line);
            self.text.push('\n');
        }
        self.ends.push(self.text.len());
    }

    /// Bytes of rules.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// How many ports' rules the text holds.
    pub fn ports(&self) -> usize {
        self.ends.len()
    }

    /// The rules of the `i`th port (in key order), a line each.
    pub fn port(&self, i: usize) -> &str {
        let start = i.checked_sub(1).and_then(|j| self.ends.get(j));
        let start = start.copied().unwrap_or(0);
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text.get(start..end).unwrap_or_default()
    }
}

/// Equal rules: the same lines in the shared chains and the same owned
/// chains with the same rules (by digest, so a slimmed copy compares).
impl PartialEq for PortRules {
    fn eq(&self, o: &Self) -> bool {
        self.chains == o.chains
            && self.chain_digests == o.chain_digests
            && self.services == o.services
            && self.nodeports == o.nodeports
            && self.filter_lines() == o.filter_lines()
    }
}

impl Eq for PortRules {}

/// The chain a rule line (`-A CHAIN …`) goes to.
pub(crate) fn rule_chain(line: &str) -> Option<&str> {
    line.strip_prefix("-A ")?.split(' ').next()
}

/// Each of `chains`' digest of its lines in `nat`, in one pass.
fn chain_digests(chains: &[ChainName], nat: &[String]) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    let mut hashers: std::collections::HashMap<&str, std::collections::hash_map::DefaultHasher> =
        chains
            .iter()
            .map(|c| (c.as_str(), Default::default()))
            .collect();
    for line in nat {
        if let Some(h) = rule_chain(line).and_then(|c| hashers.get_mut(c)) {
            line.hash(h);
        }
    }
    chains
        .iter()
        .map(|c| hashers.get(c.as_str()).map_or(0, Hasher::finish))
        .collect()
}

impl PortRules {
    /// The owned chains of `self` whose rules are those of the same chain
    /// in `old` (a partial sync leaves them alone).
    pub fn unchanged_chains<'a>(&'a self, old: Option<&PortRules>) -> BTreeSet<&'a str> {
        let Some(old) = old else {
            return BTreeSet::new();
        };
        let before: std::collections::HashMap<&str, u64> = old
            .chains
            .iter()
            .map(ChainName::as_str)
            .zip(old.chain_digests.iter().copied())
            .collect();
        self.chains
            .iter()
            .zip(&self.chain_digests)
            .filter(|(c, d)| before.get(c.as_str()) == Some(*d))
            .map(|(c, _)| c.as_str())
            .collect()
    }

    /// Drops the owned chains' rules (kept: their digest), which are most
    /// of a port's text: 10,000 services keep tens of MiB less.
    pub fn slim(&mut self) {
        self.nat = Vec::new();
    }

    /// nat rule count, for logs and benchmarks.
    pub fn rule_count(&self) -> usize {
        self.nat.len() + self.services.len() + self.nodeports.len()
    }

    /// The port's lines in the filter table's shared chains.
    fn filter_lines(&self) -> [&Vec<String>; 4] {
        [
            &self.filter_services,
            &self.filter_external,
            &self.filter_firewall,
            &self.filter_nodeports,
        ]
    }
}

/// Renders one address family's rules.
#[derive(Debug, Clone)]
pub struct IptablesRenderer {
    pub v6: bool,
    /// The node's settings every port's decisions depend on (pod network,
    /// `--masquerade-all`, node address).
    pub node: NodePolicy,
    /// Whether syncs of more than [`CHAINS_PER_TRANSACTION`] port chains
    /// are cut into several transactions (nf_tables; on legacy one
    /// transaction is cheapest: see `weft_firewall::Backend::chunked`).
    pub chunked: bool,
    /// IPv4 node ports answer on 127.0.0.1 too (kube-proxy's
    /// `--iptables-localhost-nodeports`, with `route_localnet`).
    pub localhost_node_ports: bool,
    /// The nfacct counters exist, so rules may feed them.
    pub nfacct: bool,
    /// `nf_conntrack_tcp_be_liberal` is set: no DROP of INVALID packets.
    pub conntrack_liberal: bool,
    /// More than [`LARGE_CLUSTER_ENDPOINTS`] endpoints: no comments on
    /// endpoint rules.
    pub large_cluster: bool,
    /// `--nodeport-addresses`: the node's addresses that serve node ports
    /// (`None`: every local address).
    pub node_port_ips: Option<Vec<IpAddr>>,
}

pub(super) fn host(ip: IpAddr) -> String {
    if ip.is_ipv6() {
        format!("{ip}/128")
    } else {
        format!("{ip}/32")
    }
}

/// One port's names and matches, shared by its rules.
struct Names {
    spn: String,
    proto: &'static str,
    svc: ChainName,
    svl: ChainName,
    ext: ChainName,
    fw: ChainName,
}

impl IptablesRenderer {
    /// A renderer with kube-proxy's defaults for everything but the family,
    /// the pod network and the transaction strategy.
    pub fn new(v6: bool, cluster_cidr: Option<IpNet>, chunked: bool) -> IptablesRenderer {
        IptablesRenderer {
            v6,
            node: NodePolicy {
                pods: cluster_cidr,
                ..NodePolicy::default()
            },
            chunked,
            localhost_node_ports: !v6,
            nfacct: false,
            conntrack_liberal: false,
            large_cluster: false,
            node_port_ips: None,
        }
    }

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

    /// Node ports on 127.0.0.1: IPv4 only.
    pub(super) fn localhost(&self) -> bool {
        self.localhost_node_ports && !self.v6
    }

    /// ` -m comment --comment "text"`, left out in large-cluster mode.
    fn endpoint_comment(&self, text: &str) -> String {
        if self.large_cluster {
            String::new()
        } else {
            format!(" -m comment --comment \"{text}\"")
        }
    }

    /// The rules of one service port, as kube-proxy's `syncProxyRules`
    /// writes them: the decisions of [`NodePolicy::decide`] in iptables'
    /// words.
    pub fn port(&self, p: &PortPlan) -> PortRules {
        let spn = p.key.svc_port_name();
        let hash = service_hash(&spn, p.key.protocol);
        let n = Names {
            proto: p.key.protocol.lower(),
            svc: ChainName::new("KUBE-SVC-", &hash),
            svl: ChainName::new("KUBE-SVL-", &hash),
            ext: ChainName::new("KUBE-EXT-", &hash),
            fw: ChainName::new("KUBE-FW-", &hash),
            spn,
        };
        let d = self.node.decide(p);
        let mut r = PortRules::default();
        self.destinations(&n, p, &d, &mut r);
        self.port_chains(&n, p, &d, &mut r);
        r
    }

    /// The chain a serving verdict balances in.
    fn policy_chain(n: &Names, v: Verdict) -> &str {
        if v == Verdict::Local {
            &n.svl
        } else {
            &n.svc
        }
    }

    /// The filter rule's comment and target for a verdict that serves no
    /// endpoint.
    fn refusal(&self, spn: &str, v: Verdict) -> (String, &'static str) {
        if v == Verdict::Reject {
            (format!("\"{spn} has no endpoints\""), self.reject())
        } else {
            (format!("\"{spn} has no local endpoints\""), "DROP")
        }
    }

    /// The jumps from kube-proxy's shared chains (`KUBE-SERVICES`,
    /// `KUBE-NODEPORTS`, the filter chains) to the port's own.
    fn destinations(&self, n: &Names, p: &PortPlan, d: &PortPolicy, r: &mut PortRules) {
        let (spn, proto) = (&n.spn, n.proto);
        let dest = |ip: IpAddr, comment: &str| {
            format!(
                "-d {} -p {proto} -m comment --comment {comment} -m {proto} --dport {}",
                host(ip),
                p.port
            )
        };
        let serving = d.internal != Verdict::Reject;
        if d.internal.serves() {
            r.services.push(format!(
                "-A {SERVICES} {} -j {}",
                dest(p.cluster_ip, &format!("\"{spn} cluster IP\"")),
                Self::policy_chain(n, d.internal)
            ));
        } else {
            let (comment, target) = self.refusal(spn, d.internal);
            r.filter_services.push(format!(
                "-A {SERVICES} {} -j {target}",
                dest(p.cluster_ip, &comment)
            ));
        }
        let refused = (!d.external.serves()).then(|| self.refusal(spn, d.external));
        for ip in &p.external_ips {
            if serving {
                r.services.push(format!(
                    "-A {SERVICES} {} -j {}",
                    dest(*ip, &format!("\"{spn} external IP\"")),
                    n.ext
                ));
            }
            if let Some((comment, target)) = &refused {
                r.filter_external.push(format!(
                    "-A {EXTERNAL_SERVICES} {} -j {target}",
                    dest(*ip, comment)
                ));
            }
        }
        let lb_chain = if d.source_ranges { &n.fw } else { &n.ext };
        for ip in &p.load_balancer_ips {
            if serving {
                r.services.push(format!(
                    "-A {SERVICES} {} -j {lb_chain}",
                    dest(*ip, &format!("\"{spn} loadbalancer IP\""))
                ));
            }
            if d.source_ranges {
                r.filter_firewall.push(format!(
                    "-A {PROXY_FIREWALL} {} -j DROP",
                    dest(*ip, &format!("\"{spn} traffic not accepted by {}\"", n.fw))
                ));
            }
        }
        if let Some((comment, target)) = &refused {
            for ip in &p.load_balancer_ips {
                r.filter_external.push(format!(
                    "-A {EXTERNAL_SERVICES} {} -j {target}",
                    dest(*ip, comment)
                ));
            }
        }
        if let Some(np) = p.node_port {
            if serving {
                if self.localhost() && self.nfacct {
                    r.nodeports.push(format!(
                        "-A {NODEPORTS} -d 127.0.0.0/8 -p {proto} -m comment --comment \"{spn}\" -m {proto} --dport {np} -m nfacct --nfacct-name  {NFACCT_LOCALHOST} -j {}",
                        n.ext
                    ));
                }
                r.nodeports.push(format!(
                    "-A {NODEPORTS} -p {proto} -m comment --comment \"{spn}\" -m {proto} --dport {np} -j {}",
                    n.ext
                ));
            }
            if let Some((comment, target)) = &refused {
                r.filter_external.push(format!(
                    "-A {EXTERNAL_SERVICES} -p {proto} -m comment --comment {comment} -m addrtype --dst-type LOCAL -m {proto} --dport {np} -j {target}"
                ));
            }
        }
        if let Some(hc) = p.health_check_node_port {
            r.filter_nodeports.push(format!(
                "-A {NODEPORTS} -p tcp -m comment --comment \"{spn} health check node port\" -m tcp --dport {hc} -j ACCEPT"
            ));
        }
    }

    /// The port's own nat chains, in kube-proxy's order: external,
    /// firewall, the balancing chains, then one per endpoint.
    fn port_chains(&self, n: &Names, p: &PortPlan, d: &PortPolicy, r: &mut PortRules) {
        let spn = &n.spn;
        let mut own: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        if d.internal.serves() {
            let chain = Self::policy_chain(n, d.internal);
            let cluster_ip = format!(
                "-d {} -p {proto} -m comment --comment \"{spn} cluster IP\" -m {proto} --dport {}",
                host(p.cluster_ip),
                p.port,
                proto = n.proto
            );
            let masquerade = match d.masquerade {
                Masquerade::All => Some(format!("-A {chain} {cluster_ip} -j {MARK_MASQ}")),
                Masquerade::FromOutside(pods) => Some(format!(
                    "-A {chain} ! -s {pods} {cluster_ip} -j {MARK_MASQ}"
                )),
                Masquerade::Never => None,
            };
            own.entry(chain).or_default().extend(masquerade);
        }
        let mut chains: Vec<ChainName> = Vec::new();
        if d.external_chain {
            chains.push(n.ext);
            let rules = self.external_chain(n, d);
            own.entry(&n.ext).or_default().extend(rules);
        }
        if d.source_ranges {
            chains.push(n.fw);
            let rules = self.firewall_chain(n, p, d);
            own.entry(&n.fw).or_default().extend(rules);
        }
        if d.cluster_chain {
            chains.push(n.svc);
            let eps: Vec<&EndpointPlan> = p.endpoints.iter().collect();
            let rules = self.balance(&n.svc, n, p, &eps);
            own.entry(&n.svc).or_default().extend(rules);
        }
        if d.local_chain {
            chains.push(n.svl);
            let eps: Vec<&EndpointPlan> = p.local.iter().collect();
            let rules = self.balance(&n.svl, n, p, &eps);
            own.entry(&n.svl).or_default().extend(rules);
        }
        let mut endpoints = Vec::new();
        for ep in p.reachable() {
            let (chain, rules) = self.endpoint(n, p, ep);
            chains.push(chain);
            endpoints.extend(rules);
        }
        // Per chain in creation order: its rules (the masquerade rule of
        // the internal chain first).
        let mut nat = Vec::new();
        for c in &chains {
            if let Some(rules) = own.remove(c.as_str()) {
                nat.extend(rules);
            }
        }
        nat.append(&mut endpoints);
        r.chain_digests = chain_digests(&chains, &nat);
        r.nat = nat;
        r.chains = chains;
    }

    /// `KUBE-EXT-…`: node ports, external and load-balancer IPs.
    fn external_chain(&self, n: &Names, d: &PortPolicy) -> Vec<String> {
        let (spn, ext) = (&n.spn, &n.ext);
        let mut rules = Vec::new();
        if !d.external_is_local() {
            rules.push(format!(
                "-A {ext} -m comment --comment \"masquerade traffic for {spn} external destinations\" -j {MARK_MASQ}"
            ));
        } else {
            if let Some(pods) = self.node.pods {
                rules.push(format!(
                    "-A {ext} -s {} -m comment --comment \"pod traffic for {spn} external destinations\" -j {}",
                    pods.trunc(),
                    n.svc
                ));
            }
            rules.push(format!(
                "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"
            ));
            rules.push(format!(
                "-A {ext} -m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {}",
                n.svc
            ));
        }
        if d.external.serves() {
            rules.push(format!("-A {ext} -j {}", Self::policy_chain(n, d.external)));
        }
        rules
    }

    /// `KUBE-FW-…`: the load balancer's source ranges.
    fn firewall_chain(&self, n: &Names, p: &PortPlan, d: &PortPolicy) -> Vec<String> {
        let head = format!("-A {}", n.fw);
        let comment = format!("-m comment --comment \"{} loadbalancer IP\"", n.spn);
        let mut rules: Vec<String> = p
            .source_ranges
            .iter()
            .map(|cidr| format!("{head} -s {} {comment} -j {}", cidr.trunc(), n.ext))
            .collect();
        if d.admit_load_balancer_ips {
            for ip in &p.load_balancer_ips {
                rules.push(format!("{head} -s {} {comment} -j {}", host(*ip), n.ext));
            }
        }
        rules.push(format!(
            "{head} -m comment --comment \"other traffic to {} will be dropped by KUBE-PROXY-FIREWALL\"",
            n.spn
        ));
        rules
    }

    /// Affinity checks, then random selection (`1/(n-i)`, last rule
    /// unconditional), in `chain`.
    fn balance(&self, chain: &str, n: &Names, p: &PortPlan, eps: &[&EndpointPlan]) -> Vec<String> {
        let mut out = Vec::new();
        let sep = |ep: &EndpointPlan| endpoint_chain(&n.spn, p.key.protocol, &ep.text());
        let comment =
            |ep: &EndpointPlan| self.endpoint_comment(&format!("{} -> {}", n.spn, ep.text()));
        if let Some(secs) = p.affinity_seconds {
            for ep in eps {
                let s = sep(ep);
                out.push(format!(
                    "-A {chain}{} -m recent --rcheck --seconds {secs} --reap --name {s} --mask {} --rsource -j {s}",
                    comment(ep),
                    self.mask()
                ));
            }
        }
        let count = eps.len();
        for (i, ep) in eps.iter().enumerate() {
            let s = sep(ep);
            if i + 1 < count {
                let prob = 1.0 / (count - i) as f64;
                out.push(format!(
                    "-A {chain}{} -m statistic --mode random --probability {prob:.10} -j {s}",
                    comment(ep)
                ));
            } else {
                out.push(format!("-A {chain}{} -j {s}", comment(ep)));
            }
        }
        out
    }

    /// `KUBE-SEP-…`: hairpin masquerade, then DNAT (recording affinity).
    fn endpoint(&self, n: &Names, p: &PortPlan, ep: &EndpointPlan) -> (ChainName, Vec<String>) {
        let proto = n.proto;
        let s = endpoint_chain(&n.spn, p.key.protocol, &ep.text());
        let comment = self.endpoint_comment(&n.spn);
        let recent = match p.affinity_seconds {
            Some(_) => format!(
                " -m recent --set --name {s} --mask {} --rsource",
                self.mask()
            ),
            None => String::new(),
        };
        let rules = vec![
            format!("-A {s} -s {}{comment} -j {MARK_MASQ}", host(ep.addr.ip())),
            format!(
                "-A {s} -p {proto}{comment}{recent} -m {proto} -j DNAT --to-destination {}",
                ep.text()
            ),
        ];
        (s, rules)
    }
}

/// Whether a nat chain name belongs to a service (owned by weft's proxy).
pub fn is_service_chain(name: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

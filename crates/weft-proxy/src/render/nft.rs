//! kube-proxy's nftables mode: table `ip kube-proxy` / `ip6 kube-proxy`
//! with verdict maps keyed by `daddr . l4proto . dport` (one lookup per
//! packet).
//!
//! A plain service port (no affinity, Cluster traffic policies) owns no
//! chain: its verdict-map element jumps to a balancing chain shared by all
//! ports with the same number of endpoints, which DNATs through one map
//! lookup keyed by `daddr . l4proto . dport . numgen random mod n` (see
//! [`Pool`]). Ports with ClientIP affinity or a Local traffic policy get
//! chains of their own, as in kube-proxy: a chain per service port and per
//! endpoint, and per-endpoint timeout sets for affinity.
//!
//! Each service port renders to a [`PortNft`]; [`NftRenderer::update`]
//! turns the difference between two of them into the few `nft -f`
//! commands that change only what changed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::plan::names::nft_hash;
use crate::plan::policy::{Masquerade, NodePolicy, PortPolicy, Verdict};
use crate::plan::{EndpointPlan, PortKey, PortPlan};
use crate::MASQ_MARK;

pub use super::nft_batch::{Added, ColdStart, NftBatch};
use super::nft_diff::{names, update_members, update_shared, Among};
pub use super::nft_element::{
    Element, ElementKey, ElementValue, MapName, Member, PoolMembers, SlotEndpoints,
};
pub use super::nft_names::{
    FixedMap, Pool, HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, REJECT_CHAIN,
    SERVICE_IPS, SERVICE_NODEPORTS,
};
use super::nft_port::PortDraft;
pub use super::nft_port::{
    set_size, OwnedObjects, PortNft, SetSize, SetSizes, SharedRefs, SharedSet, MIN_SET_SIZE,
};

/// The table's name, as kube-proxy's.
pub const TABLE: &str = "kube-proxy";
const MARK_CHAIN: &str = "mark-for-masquerade";

#[derive(Debug, Clone)]
pub struct NftRenderer {
    /// `kube-proxy`.
    pub table: String,
    pub v6: bool,
    /// The node's settings every port's decisions depend on (pod network,
    /// `--masquerade-all`, node address).
    pub node: NodePolicy,
}

/// Elements refusing the port's destinations (`value`: drop or reject).
fn refuse<'a>(
    out: &mut PortDraft,
    addrs: impl Iterator<Item = &'a ElementKey>,
    node_port: Option<ElementKey>,
    value: ElementValue,
) {
    for k in addrs {
        out.elements.push(Element::new(
            FixedMap::NoEndpointServices,
            *k,
            value.clone(),
        ));
    }
    if let Some(k) = node_port {
        out.elements
            .push(Element::new(FixedMap::NoEndpointNodeports, k, value));
    }
}

impl NftRenderer {
    /// kube-proxy's table for one family, with `pods` as the pod network.
    pub fn new(v6: bool, pods: Option<IpNet>) -> NftRenderer {
        NftRenderer {
            table: TABLE.to_string(),
            v6,
            node: NodePolicy {
                pods,
                ..NodePolicy::default()
            },
        }
    }

    /// `<family> <table>`, as nft commands name the table.
    pub fn target(&self) -> String {
        format!("{} {}", self.family(), self.table)
    }

    pub fn family(&self) -> &'static str {
        if self.v6 {
            "ip6"
        } else {
            "ip"
        }
    }

    fn addr_type(&self) -> &'static str {
        if self.v6 {
            "ipv6_addr"
        } else {
            "ipv4_addr"
        }
    }

    /// `ip` or `ip6`, as the address match keyword.
    fn l3(&self) -> &'static str {
        self.family()
    }

    fn loopback(&self) -> &'static str {
        if self.v6 {
            "::1"
        } else {
            "127.0.0.0/8"
        }
    }

    /// The readable tail of the chain names: `ns/name/proto/port`.
    fn base(p: &PortPlan) -> String {
        format!(
            "{}/{}/{}/{}",
            p.key.service.namespace,
            p.key.service.name,
            p.key.protocol.lower(),
            p.key.port_name
        )
    }

    fn named(kind: &str, p: &PortPlan) -> String {
        let base = Self::base(p);
        format!("{kind}-{}-{base}", nft_hash(&base))
    }

    fn endpoint_named(kind: &str, p: &PortPlan, ep: &EndpointPlan) -> String {
        let tail = format!(
            "{}__{}/{}",
            Self::base(p),
            ep.addr.ip().to_string().replace(':', "."),
            ep.addr.port()
        );
        format!("{kind}-{}-{tail}", nft_hash(&tail))
    }

    fn dnat(&self, p: &PortPlan, ep: &EndpointPlan) -> String {
        let dst = if self.v6 {
            format!("[{}]:{}", ep.addr.ip(), ep.addr.port())
        } else {
            ep.addr.to_string()
        };
        format!("meta l4proto {} dnat to {dst}", p.key.protocol.lower())
    }

    /// Every port's objects.
    pub fn ports(&self, plans: &[PortPlan]) -> BTreeMap<PortKey, PortNft> {
        crate::halves::map_halves(plans, |p| (p.key.clone(), self.port(p)))
            .into_iter()
            .collect()
    }

    /// What one service port owns, with no spare capacity (kept between
    /// syncs).
    pub fn port(&self, p: &PortPlan) -> PortNft {
        PortNft::from(self.render_port(p))
    }

    fn render_port(&self, p: &PortPlan) -> PortDraft {
        let d = self.node.decide(p);
        let mut out = PortDraft::default();
        let protocol = p.key.protocol;
        let key = ElementKey::addr(p.cluster_ip, protocol, p.port);
        let ip_key = |ip: &IpAddr| ElementKey::addr(*ip, protocol, p.port);
        let outside: Vec<ElementKey> = p
            .external_ips
            .iter()
            .chain(&p.load_balancer_ips)
            .map(ip_key)
            .collect();
        let node_port = p.node_port.map(|np| ElementKey::node_port(protocol, np));
        if d.internal == Verdict::Reject {
            refuse(
                &mut out,
                outside.iter().chain([&key]),
                node_port,
                ElementValue::Reject,
            );
            return out;
        }
        // Hairpin: a pod reaching itself through the service is masqueraded
        // (postrouting looks its source and destination pair up). Only pods
        // on this node (or on an unknown one) can: another node's pod is
        // DNATed by its own node.
        out.pairs = p
            .endpoints
            .iter()
            .filter(|ep| !ep.remote)
            .map(|ep| ep.addr.ip())
            .collect();
        // A plain port owns no chain: its elements live in the shared pools.
        let plain = p.affinity_seconds.is_none()
            && d.internal == Verdict::Cluster
            && !(d.external_chain && d.external_is_local())
            && outside.is_empty();
        if plain {
            self.pooled(p, key, &mut out);
            return out;
        }
        self.affinity_chains(p, &mut out);
        let service = Self::named("service", p);
        let local_chain = Self::named("local", p);
        out.chains
            .push((service.clone(), self.service_chain(p, &d)));
        if d.local_chain {
            let local: Vec<&EndpointPlan> = p.local.iter().collect();
            out.chains
                .push((local_chain.clone(), self.balance(p, &local)));
        }
        let goto = |chain: &str| ElementValue::Goto(chain.into());
        let policy_chain = |v: Verdict| {
            if v == Verdict::Local {
                &local_chain
            } else {
                &service
            }
        };
        if d.internal.serves() {
            out.elements.push(Element::new(
                FixedMap::ServiceIps,
                key,
                goto(policy_chain(d.internal)),
            ));
        } else {
            out.elements.push(Element::new(
                FixedMap::NoEndpointServices,
                key,
                ElementValue::Drop,
            ));
        }
        if !d.external_chain {
            return out;
        }
        let external = Self::named("external", p);
        let mut rules = Vec::new();
        if !d.external_is_local() {
            rules.push(format!("jump {MARK_CHAIN}"));
        } else {
            if let Some(pods) = self.node.pods {
                rules.push(format!(
                    "{} saddr {} goto {service}",
                    self.l3(),
                    pods.trunc()
                ));
            }
            rules.push(format!("fib saddr type local jump {MARK_CHAIN}"));
            rules.push(format!("fib saddr type local goto {service}"));
        }
        if d.external.serves() {
            rules.push(format!("goto {}", policy_chain(d.external)));
        } else {
            refuse(&mut out, outside.iter(), node_port, ElementValue::Drop);
        }
        out.chains.push((external.clone(), rules));
        for k in p.external_ips.iter().map(ip_key) {
            out.elements
                .push(Element::new(FixedMap::ServiceIps, k, goto(&external)));
        }
        let lb_target = if d.source_ranges {
            let firewall = Self::named("firewall", p);
            out.chains
                .push((firewall.clone(), self.firewall_chain(p, &d, &external)));
            firewall
        } else {
            external.clone()
        };
        for k in p.load_balancer_ips.iter().map(ip_key) {
            out.elements
                .push(Element::new(FixedMap::ServiceIps, k, goto(&lb_target)));
        }
        if let Some(k) = node_port {
            out.elements
                .push(Element::new(FixedMap::ServiceNodeports, k, goto(&external)));
        }
        out
    }

    /// ClientIP affinity needs a chain and a timeout set per endpoint, as
    /// in kube-proxy; without it, the service chain DNATs directly.
    fn affinity_chains(&self, p: &PortPlan, out: &mut PortDraft) {
        let Some(secs) = p.affinity_seconds else {
            return;
        };
        let l3 = self.l3();
        for ep in &p.endpoints {
            let affinity = Self::endpoint_named("affinity", p, ep);
            out.sets.push((affinity.clone(), secs));
            let rules = vec![
                format!("update @{affinity} {{ {l3} saddr }}"),
                self.dnat(p, ep),
            ];
            out.chains
                .push((Self::endpoint_named("endpoint", p, ep), rules));
        }
    }

    /// The chain balancing over the Cluster endpoints, after the cluster
    /// IP's masquerade rule.
    fn service_chain(&self, p: &PortPlan, d: &PortPolicy) -> Vec<String> {
        let l3 = self.l3();
        let dest = format!(
            "{l3} daddr {} {} dport {}",
            p.cluster_ip,
            p.key.protocol.lower(),
            p.port
        );
        let mut rules = Vec::new();
        match d.masquerade {
            Masquerade::All => rules.push(format!("{dest} jump {MARK_CHAIN}")),
            Masquerade::FromOutside(pods) => {
                rules.push(format!("{dest} {l3} saddr != {pods} jump {MARK_CHAIN}"))
            }
            Masquerade::Never => {}
        }
        let all: Vec<&EndpointPlan> = p.endpoints.iter().collect();
        rules.extend(self.balance(p, &all));
        rules
    }

    /// The load balancer's source ranges (and, when the node's address is
    /// inside one, its own IPs).
    fn firewall_chain(&self, p: &PortPlan, d: &PortPolicy, external: &str) -> Vec<String> {
        let mut sources: Vec<String> = p
            .source_ranges
            .iter()
            .map(|r| r.trunc().to_string())
            .collect();
        if d.admit_load_balancer_ips {
            sources.extend(p.load_balancer_ips.iter().map(IpAddr::to_string));
        }
        vec![
            format!(
                "{} saddr {{ {} }} goto {external}",
                self.l3(),
                sources.join(", ")
            ),
            "drop".into(),
        ]
    }

    /// A plain port: elements in the shared pools of its endpoint count.
    /// Slot i of the port's key maps to endpoint i.
    fn pooled(&self, p: &PortPlan, key: ElementKey, out: &mut PortDraft) {
        // a port's endpoints fit a u32 (they are an API server's objects)
        let n = u32::try_from(p.endpoints.len()).unwrap_or(u32::MAX);
        let mut keys = vec![(
            FixedMap::ServiceIps,
            key,
            Pool {
                node_port: false,
                n,
            },
        )];
        if let Some(np) = p.node_port {
            let nkey = ElementKey::node_port(p.key.protocol, np);
            keys.push((
                FixedMap::ServiceNodeports,
                nkey,
                Pool { node_port: true, n },
            ));
        }
        for (map, key, pool) in keys {
            out.elements
                .push(Element::new(map, key, ElementValue::GotoPool(pool)));
            out.members.push(PoolMembers {
                pool,
                key,
                endpoints: p
                    .endpoints
                    .iter()
                    .map(|ep| (ep.addr.ip(), ep.addr.port()))
                    .collect(),
            });
        }
    }

    /// The command that declares a pool's map, of `size` elements at
    /// most (on an existing map: raises its size).
    fn pool_map(&self, pool: Pool, size: u32) -> String {
        let (fam, t, l3) = (self.family(), &self.table, self.l3());
        let key = self.pool_key(pool);
        format!(
            "add map {fam} {t} {} {{ typeof {key} : {l3} daddr . th dport; size {size}; }}",
            pool.map()
        )
    }

    /// A pool map's key: the port's (address,) protocol and port, and
    /// the slot drawn at random.
    fn pool_key(&self, pool: Pool) -> String {
        let n = pool.n;
        if pool.node_port {
            format!("meta l4proto . th dport . numgen random mod {n}")
        } else {
            format!(
                "{} daddr . meta l4proto . th dport . numgen random mod {n}",
                self.l3()
            )
        }
    }

    /// The hairpin set's type and size, as declared after its name.
    fn hairpin_set(&self, size: u32) -> String {
        let a = self.addr_type();
        format!("{{ type {a} . {a}; size {size}; }}")
    }

    /// The commands that raise, in place, the size of each shared set
    /// that would hold more elements than its size: as [`set_size`] would
    /// make it for them, up to twice the size it was made with. They are a
    /// transaction of their own, before the one that adds the elements:
    /// the kernel counts a transaction's elements against the sizes the
    /// sets had before it. `Err` names a set that would hold more than
    /// twice its first size: its kernel hash table keeps the buckets it was
    /// made with (4/3 of that size at least), so the table is to be
    /// written again (a full sync).
    pub fn grow_sets(&self, refs: &mut SharedRefs) -> Result<String, String> {
        let (fam, t) = (self.family(), &self.table);
        let mut out = String::new();
        for (set, elements, size) in refs.outgrown() {
            if elements > 2 * size.made as usize {
                return Err(set.name());
            }
            let now = set_size(elements).min(size.made.saturating_mul(2));
            let _ = match set {
                SharedSet::Hairpin => {
                    refs.sizes.hairpin.now = now;
                    let decl = self.hairpin_set(now);
                    writeln!(out, "add set {fam} {t} {HAIRPIN} {decl}")
                }
                SharedSet::Pool(pool) => {
                    refs.sizes.pools.entry(pool).or_default().now = now;
                    writeln!(out, "{}", self.pool_map(pool, now))
                }
            };
        }
        Ok(out)
    }

    /// The commands that create a pool's map (of `size` elements at
    /// most) and chain.
    fn create_pool(&self, batch: &mut NftBatch, pool: Pool, size: u32) {
        let fam = self.family();
        let t = &self.table;
        let l3 = self.l3();
        let (map, chain, key) = (pool.map(), pool.chain(), self.pool_key(pool));
        let _ = writeln!(
            batch.create,
            "{}\nadd chain {fam} {t} {chain}",
            self.pool_map(pool, size)
        );
        if pool.node_port {
            let _ = writeln!(batch.rules, "add rule {fam} {t} {chain} jump {MARK_CHAIN}");
        } else {
            match self.node.masquerade() {
                Masquerade::All => {
                    let _ = writeln!(batch.rules, "add rule {fam} {t} {chain} jump {MARK_CHAIN}");
                }
                Masquerade::FromOutside(pods) => {
                    let _ = writeln!(
                        batch.rules,
                        "add rule {fam} {t} {chain} {l3} saddr != {pods} jump {MARK_CHAIN}"
                    );
                }
                Masquerade::Never => {}
            }
        }
        let _ = writeln!(
            batch.rules,
            "add rule {fam} {t} {chain} dnat {l3} to {key} map @{map}"
        );
    }

    /// Creates the pools `refs` has and `before` had not (sized for their
    /// elements, [`set_size`]), and deletes those it no longer has: called
    /// once per transaction, after every port's [`update`](Self::update),
    /// so that a pool one port leaves and another joins stays.
    pub fn update_pools(
        &self,
        batch: &mut NftBatch,
        before: &BTreeMap<Pool, usize>,
        refs: &mut SharedRefs,
    ) {
        let fam = self.family();
        let t = &self.table;
        for pool in refs.pools.keys().filter(|p| !before.contains_key(p)) {
            let size = set_size(refs.pool_elements(pool));
            self.create_pool(batch, *pool, size);
            refs.sizes.pools.insert(*pool, SetSize::made(size));
        }
        for pool in before.keys().filter(|p| !refs.pools.contains_key(p)) {
            let _ = writeln!(batch.flush, "flush chain {fam} {t} {}", pool.chain());
            let _ = writeln!(batch.delete_last, "delete chain {fam} {t} {}", pool.chain());
            let _ = writeln!(batch.delete_last, "delete map {fam} {t} {}", pool.map());
            refs.sizes.pools.remove(pool);
        }
    }

    /// Random selection over `eps` as iptables' statistic rules do it:
    /// rule i takes endpoint i with probability 1/(n-i), the last one
    /// always; after affinity lookups when the service has affinity.
    fn balance(&self, p: &PortPlan, eps: &[&EndpointPlan]) -> Vec<String> {
        let l3 = self.l3();
        let n = eps.len();
        let affinity = p.affinity_seconds.is_some();
        let mut rules = Vec::new();
        if affinity {
            for ep in eps {
                rules.push(format!(
                    "{l3} saddr @{} goto {}",
                    Self::endpoint_named("affinity", p, ep),
                    Self::endpoint_named("endpoint", p, ep)
                ));
            }
        }
        for (i, ep) in eps.iter().enumerate() {
            let action = if affinity {
                format!("goto {}", Self::endpoint_named("endpoint", p, ep))
            } else {
                self.dnat(p, ep)
            };
            if i + 1 < n {
                rules.push(format!("numgen random mod {} == 0 {action}", n - i));
            } else {
                rules.push(action);
            }
        }
        rules
    }

    /// The table without any service: maps, helper and hook chains; the
    /// hairpin set made for `hairpin_size` pairs at most.
    fn skeleton(&self, out: &mut String, hairpin_size: u32) {
        let hairpin = self.hairpin_set(hairpin_size);
        let t = &self.table;
        let fam = self.family();
        let a = self.addr_type();
        let l3 = self.l3();
        let lo = self.loopback();
        let _ = write!(
            out,
            "table {fam} {t} {{\n\
             \tcomment \"rules for kube-proxy (weft)\"\n\
             \tmap {SERVICE_IPS} {{ type {a} . inet_proto . inet_service : verdict; }}\n\
             \tmap {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict; }}\n\
             \tmap {NO_ENDPOINT_SERVICES} {{ type {a} . inet_proto . inet_service : verdict; }}\n\
             \tmap {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict; }}\n\
             \tset {HAIRPIN} {hairpin}\n\
             \tchain {MARK_CHAIN} {{ meta mark set meta mark | {MASQ_MARK}; }}\n\
             \tchain masquerading {{ ct status dnat {l3} saddr . {l3} daddr @{HAIRPIN} jump {MARK_CHAIN}; meta mark & {MASQ_MARK} == 0 return; meta mark set meta mark ^ {MASQ_MARK}; masquerade fully-random; }}\n\
             \tchain services {{ {l3} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}; fib daddr type local {l3} daddr != {lo} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}; }}\n\
             \tchain {REJECT_CHAIN} {{ reject; }}\n\
             \tchain service-endpoints-check {{ {l3} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}; }}\n\
             \tchain nodeport-endpoints-check {{ fib daddr type local {l3} daddr != {lo} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}; }}\n\
             \tchain filter-input {{ type filter hook input priority -110; policy accept; ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check; }}\n\
             \tchain filter-forward {{ type filter hook forward priority -110; policy accept; ct state new jump service-endpoints-check; }}\n\
             \tchain filter-output {{ type filter hook output priority -110; policy accept; ct state new jump service-endpoints-check; }}\n\
             \tchain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
             \tchain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
             \tchain nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; jump masquerading; }}\n\
             }}\n"
        );
    }

    /// The elements and maps of every port written from nothing; `refs`
    /// is reset to the hairpin pair reference counts of `ports`, and the
    /// shared sets' sizes to those made for them now.
    fn every_port(&self, ports: &BTreeMap<PortKey, PortNft>, refs: &mut SharedRefs) -> NftBatch {
        let mut batch = NftBatch::default();
        *refs = SharedRefs::new();
        for p in ports.values() {
            self.update(&mut batch, refs, PortNft::empty(), p);
        }
        self.update_pools(&mut batch, &BTreeMap::new(), refs);
        refs.sizes.hairpin = SetSize::made(set_size(refs.pairs.len()));
        batch
    }

    /// Replaces the whole table atomically with one holding `ports`.
    /// `refs` is reset to the hairpin pair reference counts of `ports`.
    pub fn full(&self, ports: &BTreeMap<PortKey, PortNft>, refs: &mut SharedRefs) -> String {
        let fam = self.family();
        let t = &self.table;
        let batch = self.every_port(ports, refs);
        let mut out = String::with_capacity(batch.len() + 4096);
        let _ = writeln!(out, "add table {fam} {t}\ndelete table {fam} {t}");
        self.skeleton(&mut out, refs.sizes.hairpin.now);
        batch.finish_into(&self.target(), &mut out);
        out
    }

    /// The first sync into a kernel without the table, as steps that
    /// together take less time than [`full`](Self::full)'s one
    /// transaction: nft spends most of a large sync parsing elements, and
    /// elements go over netlink without a parser (or, as text, are parsed
    /// by several `nft` processes at once). See [`ColdStart`]. `refs` is
    /// reset as by `full`.
    pub fn cold(&self, ports: &BTreeMap<PortKey, PortNft>, refs: &mut SharedRefs) -> ColdStart {
        let fam = self.family();
        let t = &self.table;
        let batch = self.every_port(ports, refs);
        let mut create = format!("create table {fam} {t}\n");
        self.skeleton(&mut create, refs.sizes.hairpin.now);
        let (loads, live) = batch.split_cold(&mut create);
        ColdStart {
            create,
            loads,
            live,
        }
    }

    /// Adds to `batch` the commands that turn `old` into `new` for one
    /// service port: only chains, sets and map elements that differ. Pools
    /// are only counted here; [`update_pools`](Self::update_pools) creates
    /// and deletes them.
    pub fn update(
        &self,
        batch: &mut NftBatch,
        refs: &mut SharedRefs,
        old: &PortNft,
        new: &PortNft,
    ) {
        let fam = self.family();
        let t = &self.table;
        let a = self.addr_type();
        update_shared(batch, refs, old, new);
        let (old_sets, new_sets) = (names(old.sets()), names(new.sets()));
        let (old_sets, new_sets) = (Among::new(&old_sets), Among::new(&new_sets));
        for (name, secs) in new.sets() {
            if !old_sets.has(&name.as_str()) {
                let _ = writeln!(
                    batch.create,
                    "add set {fam} {t} {name} {{ type {a}; flags dynamic,timeout; timeout {secs}s; }}"
                );
            }
        }
        let (old_chains, old_chain_names) = (Among::new(old.chains()), names(old.chains()));
        let old_chain_names = Among::new(&old_chain_names);
        for (name, rules) in new.chains().iter().filter(|c| !old_chains.has(c)) {
            let _ = writeln!(batch.create, "add chain {fam} {t} {name}");
            if old_chain_names.has(&name.as_str()) {
                let _ = writeln!(batch.rules, "flush chain {fam} {t} {name}");
            }
            for r in rules {
                let _ = writeln!(batch.rules, "add rule {fam} {t} {name} {r}");
            }
        }
        let (old_elements, new_elements) = (Among::new(&old.elements), Among::new(&new.elements));
        for e in old.elements.iter() {
            if !new_elements.has(e) {
                batch.remove(e.map, Member::Key(e.key));
            }
        }
        for e in new.elements.iter() {
            if !old_elements.has(e) {
                batch.add(e.map, Member::Key(e.key), Some(e.value.clone()));
            }
        }
        update_members(batch, &old.members, &new.members);
        let new_chain_names = names(new.chains());
        let new_chain_names = Among::new(&new_chain_names);
        for (name, _) in old
            .chains()
            .iter()
            .filter(|(n, _)| !new_chain_names.has(&n.as_str()))
        {
            let _ = writeln!(batch.flush, "flush chain {fam} {t} {name}");
            let _ = writeln!(batch.delete, "delete chain {fam} {t} {name}");
        }
        for (name, _) in old
            .sets()
            .iter()
            .filter(|(n, _)| !new_sets.has(&n.as_str()))
        {
            let _ = writeln!(batch.delete, "delete set {fam} {t} {name}");
        }
    }
}

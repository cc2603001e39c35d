//! Golden tests: the article's service renders as kube-proxy writes it;
//! affinity, traffic policies, no endpoints and nft text are compared with
//! files under `tests/golden/` (`WEFT_UPDATE_GOLDEN=1` rewrites them).

use std::collections::{BTreeMap, BTreeSet};

use super::iptables::{normalize_saved, IptablesRenderer, NatText, CHAINS_PER_TRANSACTION, HOOKS};
use super::nft::{NftBatch, NftRenderer, PortNft, SharedRefs};
use crate::plan::catalog::Catalog;
use crate::plan::PortPlan;
use crate::spec::{parse_documents, ServiceName};

const ARTICLE: &str = include_str!("../../tests/golden/article.yaml");
const CASES: &str = include_str!("../../tests/golden/cases.yaml");

/// The article's service as the pinned kube-proxy (v1.36) writes it, seen
/// with `iptables-save | grep example-service` on a real cluster. The
/// article's 2017 kube-proxy named the unnamed port `default/example-service:`
/// (`KUBE-SVC-BR4KARPIGKMRMN3E`, see `plan::names`); today's drops the
/// colon, comments each endpoint and sends node ports through `KUBE-EXT-`.
const ARTICLE_SAVED: &str = r#"-A KUBE-EXT-QLK4GP7H447Z7HSM -m comment --comment "masquerade traffic for default/example-service external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-QLK4GP7H447Z7HSM -j KUBE-SVC-QLK4GP7H447Z7HSM
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/example-service" -m tcp --dport 32663 -j KUBE-EXT-QLK4GP7H447Z7HSM
-A KUBE-SEP-E4ZYPU7XJJSL73XT -s 172.30.46.2/32 -m comment --comment "default/example-service" -j KUBE-MARK-MASQ
-A KUBE-SEP-E4ZYPU7XJJSL73XT -p tcp -m comment --comment "default/example-service" -m tcp -j DNAT --to-destination 172.30.46.2:80
-A KUBE-SEP-K3P44OZ7P7LXNPVT -s 172.30.14.2/32 -m comment --comment "default/example-service" -j KUBE-MARK-MASQ
-A KUBE-SEP-K3P44OZ7P7LXNPVT -p tcp -m comment --comment "default/example-service" -m tcp -j DNAT --to-destination 172.30.14.2:80
-A KUBE-SERVICES -d 10.254.180.209/32 -p tcp -m comment --comment "default/example-service cluster IP" -m tcp --dport 80 -j KUBE-SVC-QLK4GP7H447Z7HSM
-A KUBE-SVC-QLK4GP7H447Z7HSM -m comment --comment "default/example-service -> 172.30.14.2:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-K3P44OZ7P7LXNPVT
-A KUBE-SVC-QLK4GP7H447Z7HSM -m comment --comment "default/example-service -> 172.30.46.2:80" -j KUBE-SEP-E4ZYPU7XJJSL73XT"#;

fn plans(text: &str, node: &str) -> Vec<PortPlan> {
    let mut c = Catalog::default();
    for o in parse_documents(text, "golden").expect("valid golden input") {
        c.put(o);
    }
    c.plan_all(node)
}

fn golden(name: &str, got: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("writing golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("golden file exists");
    assert_eq!(got, want, "{name} differs (WEFT_UPDATE_GOLDEN=1 to accept)");
}

#[test]
fn article_service_renders_as_kube_proxy_writes_it_today() {
    let r = IptablesRenderer::new(false, None, true);
    let ports: BTreeMap<_, _> = plans(ARTICLE, "host1")
        .iter()
        .map(|p| (p.key.clone(), r.port(p)))
        .collect();
    let mut got: Vec<String> = r
        .expected_saved(&ports)
        .into_iter()
        .filter(|(_, l)| l.contains("example-service") || l.contains("QLK4GP7H447Z7HSM"))
        .map(|(_, l)| normalize_saved(&l))
        .collect();
    got.sort();
    let mut want: Vec<String> = ARTICLE_SAVED.lines().map(normalize_saved).collect();
    want.sort();
    assert_eq!(got, want);
    // Two endpoints: 2 + 3n nat rules, as the notes count, and the
    // external chain's two.
    assert_eq!(
        ports.values().map(|p| p.rule_count()).sum::<usize>(),
        2 + 3 * 2 + 2
    );
}

#[test]
fn iptables_cases_golden() {
    let r = IptablesRenderer::new(false, Some("172.30.0.0/16".parse().expect("cidr")), true);
    let ports: BTreeMap<_, _> = plans(CASES, "host1")
        .iter()
        .filter(|p| !p.v6())
        .map(|p| (p.key.clone(), r.port(p)))
        .collect();
    golden(
        "cases.iptables",
        &r.restore(
            &ports,
            &BTreeSet::from(["KUBE-SVC-STALE".to_string()]),
            &HOOKS,
            true,
        ),
    );
}

#[test]
fn ipv6_cases_golden() {
    let r = IptablesRenderer::new(true, Some("fd00:30::/56".parse().expect("cidr")), true);
    let n = NftRenderer::new(true, r.node.pods);
    let v6: Vec<PortPlan> = plans(CASES, "host1")
        .into_iter()
        .filter(|p| p.v6())
        .collect();
    assert!(!v6.is_empty());
    let ipt: BTreeMap<_, _> = v6.iter().map(|p| (p.key.clone(), r.port(p))).collect();
    let nft = n.ports(&v6);
    golden(
        "cases6.txt",
        &format!(
            "{}{}",
            r.restore(&ipt, &BTreeSet::new(), &[], true),
            n.full(&nft, &mut Default::default())
        ),
    );
}

#[test]
fn nft_cases_golden() {
    let n = NftRenderer::new(false, Some("172.30.0.0/16".parse().expect("cidr")));
    let v4: Vec<PortPlan> = plans(CASES, "host1")
        .into_iter()
        .filter(|p| !p.v6())
        .collect();
    let ports = n.ports(&v4);
    golden("cases.nft", &n.full(&ports, &mut Default::default()));
}

#[test]
fn nft_update_touches_only_what_changed() {
    let n = NftRenderer::new(false, None);
    let before = plans(ARTICLE, "host1");
    let mut after = before.clone();
    // One endpoint goes away.
    after[0].endpoints.remove(1);
    let old = n.port(&before[0]);
    let mut refs = Default::default();
    n.full(
        &BTreeMap::from([(before[0].key.clone(), old.clone())]),
        &mut refs,
    );
    let new = n.port(&after[0]);
    let mut batch = NftBatch::default();
    let shared = refs.clone();
    n.update(&mut batch, &mut refs, &old, &new);
    n.update_pools(&mut batch, &shared.pools, &mut refs);
    let mut text = String::new();
    batch.finish_into(&n.target(), &mut text);
    golden("update.nft", &text);
    // Removing the service entirely unmaps it before deleting the pools it
    // was the last user of.
    let mut batch = NftBatch::default();
    let shared = refs.clone();
    n.update(&mut batch, &mut refs, &new, PortNft::empty());
    n.update_pools(&mut batch, &shared.pools, &mut refs);
    let mut text = String::new();
    batch.finish_into(&n.target(), &mut text);
    let unmap = text.find("delete element").expect("element deleted");
    let flush = text.find("flush chain").expect("pool chain flushed");
    let delete = text.find("delete chain").expect("pool chain deleted");
    let map = text.find("delete map").expect("pool map deleted");
    assert!(unmap < flush && flush < delete && delete < map, "{text}");
    // No change, no commands.
    let mut batch = NftBatch::default();
    n.update(&mut batch, &mut refs, &new, &new);
    assert!(batch.is_empty());
}

/// A large port (more objects than a linear search is used for): one
/// endpoint leaving a sticky Service of 60 removes its pair, its chain
/// and its affinity set, rewrites the service chain, and keeps the rest.
#[test]
fn nft_update_of_a_large_port_touches_only_what_changed() {
    let eps: Vec<String> = (0..60)
        .map(|j| format!("{{addresses: [172.30.1.{}]}}", j + 2))
        .collect();
    let yaml = format!(
        "kind: Service\nmetadata: {{name: big, namespace: bulk}}\nspec: {{clusterIP: 10.254.9.9, sessionAffinity: ClientIP, ports: [{{port: 80}}]}}\n---\n\
         kind: EndpointSlice\nmetadata: {{name: big, namespace: bulk}}\nendpoints: [{}]\nports: [{{port: 8080}}]\n",
        eps.join(", ")
    );
    let n = NftRenderer::new(false, None);
    let before = plans(&yaml, "host1");
    let mut after = before.clone();
    after[0].endpoints.remove(7);
    let (old, new) = (n.port(&before[0]), n.port(&after[0]));
    assert_eq!((old.pairs.len(), old.sets().len()), (60, 60));
    let mut refs = SharedRefs::of([&old]);
    let mut batch = NftBatch::default();
    n.update(&mut batch, &mut refs, &old, &new);
    let mut text = String::new();
    batch.finish_into(&n.target(), &mut text);
    let count = |what: &str| text.lines().filter(|l| l.starts_with(what)).count();
    assert_eq!(
        count("delete element ip kube-proxy hairpin-endpoints"),
        1,
        "{text}"
    );
    assert!(!text.contains("add element"), "{text}");
    assert_eq!(count("delete chain"), 1, "{text}");
    assert_eq!(count("delete set"), 1, "{text}");
    assert_eq!(count("add chain"), 1, "{text}");
    assert_eq!(count("add set"), 0, "{text}");
    let mut unchanged = NftBatch::default();
    n.update(&mut unchanged, &mut refs, &new, &new);
    assert!(unchanged.is_empty());
}

#[test]
fn probability_is_normalized_from_save_output() {
    assert_eq!(
        normalize_saved("-m statistic --mode random --probability 0.33333333349 -j X"),
        "-m statistic --mode random --probability 0.333333 -j X"
    );
}

#[test]
fn a_pool_one_port_leaves_and_another_joins_in_one_batch_stays() {
    let n = NftRenderer::new(false, None);
    let before = plans(ARTICLE, "host1");
    let (two, mut one) = (before[0].clone(), before[0].clone());
    one.endpoints.truncate(1);
    let mut other = one.clone();
    other.key.service = ServiceName::parse("default/other").expect("name");
    other.cluster_ip = "10.254.0.99".parse().expect("ip");
    other.node_port = None;
    // Port A has 2 endpoints, port B 1; then A drops to 1 and B... goes.
    let (a2, a1, b1) = (n.port(&two), n.port(&one), n.port(&other));
    let mut refs = SharedRefs::new();
    n.full(
        &BTreeMap::from([
            (two.key.clone(), a2.clone()),
            (other.key.clone(), b1.clone()),
        ]),
        &mut refs,
    );
    let shared = refs.clone();
    let mut batch = NftBatch::default();
    n.update(&mut batch, &mut refs, &b1, PortNft::empty());
    n.update(&mut batch, &mut refs, &a2, &a1);
    n.update_pools(&mut batch, &shared.pools, &mut refs);
    let mut text = String::new();
    batch.finish_into(&n.target(), &mut text);
    assert!(
        !text.contains("chain ip kube-proxy service-balance-1"),
        "{text}"
    );
    assert!(
        !text.contains("map ip kube-proxy service-endpoints-1"),
        "{text}"
    );
    assert!(
        text.contains("delete chain ip kube-proxy service-balance-2"),
        "{text}"
    );
    assert_eq!(
        refs.pools.keys().map(|p| p.chain()).collect::<Vec<_>>(),
        ["service-balance-1", "nodeport-balance-1"]
    );
}

/// `n` ClusterIP services of `e` endpoints each, as YAML documents.
fn many_services(first: usize, n: usize, e: usize) -> String {
    let mut y = String::new();
    for i in first..first + n {
        let eps: Vec<String> = (0..e)
            .map(|j| format!("{{addresses: [172.30.{}.{}]}}", i % 250, j + 2))
            .collect();
        y.push_str(&format!(
            "kind: Service\nmetadata: {{name: s{i}, namespace: bulk}}\nspec: {{clusterIP: 10.254.{}.{}, ports: [{{port: 80}}]}}\n---\n\
             kind: EndpointSlice\nmetadata: {{name: s{i}, namespace: bulk}}\nendpoints: [{}]\nports: [{{port: 8080}}]\n---\n",
            i / 250,
            i % 250 + 1,
            eps.join(", ")
        ));
    }
    y
}

/// Checks the transactions of a restore text: every jump reaches a chain
/// declared earlier (in its own or an earlier transaction), and the
/// shared chains are only written in the last nat transaction. Returns
/// the number of nat transactions.
fn check_transactions(text: &str, shared_last: bool) -> usize {
    let mut declared: BTreeSet<&str> = ["KUBE-MARK-MASQ", "KUBE-POSTROUTING"].into();
    let blocks: Vec<&str> = text
        .split("COMMIT\n")
        .filter(|b| b.starts_with("*nat"))
        .collect();
    for (i, b) in blocks.iter().enumerate() {
        for l in b.lines() {
            if let Some(c) = l.strip_prefix(':') {
                declared.insert(c.split(' ').next().unwrap_or(c));
            }
            if let Some((_, target)) = l.rsplit_once(" -j ") {
                if target.starts_with("KUBE-") {
                    assert!(declared.contains(target), "{l}: {target} not yet declared");
                }
            }
            let shared = [
                " KUBE-SERVICES ",
                " KUBE-NODEPORTS ",
                ":KUBE-SERVICES ",
                ":KUBE-NODEPORTS ",
            ]
            .iter()
            .any(|c| l.contains(c));
            if shared_last && shared {
                assert_eq!(i, blocks.len() - 1, "shared chain written early: {l}");
            }
        }
    }
    blocks.len()
}

#[test]
fn a_large_sync_writes_port_chains_in_transactions_of_their_own_and_switches_last() {
    let r = IptablesRenderer::new(false, Some("172.30.0.0/16".parse().expect("cidr")), true);
    let rules = |text: &str| -> BTreeMap<_, _> {
        plans(text, "host1")
            .iter()
            .filter(|p| !p.v6())
            .map(|p| (p.key.clone(), r.port(p)))
            .collect()
    };
    // 100 services x 5 endpoints: 600 port chains.
    let big = rules(&format!("{}{CASES}", many_services(0, 100, 5)));
    let text = r.restore(
        &big,
        &BTreeSet::from(["KUBE-SVC-STALE".to_string()]),
        &HOOKS,
        true,
    );
    let n = check_transactions(&text, true);
    assert!(n >= 4, "{n} nat transactions");
    for t in text.split("COMMIT\n").filter(|b| b.starts_with("*nat")) {
        let chains = t.lines().filter(|l| l.starts_with(":KUBE-S")).count();
        assert!(
            chains <= CHAINS_PER_TRANSACTION + 11,
            "{chains} chains in one transaction"
        );
    }
    // The same text, line for line, as the one-transaction form would hold.
    let lines = |t: &str| -> BTreeSet<String> {
        t.lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_string)
            .collect()
    };
    let all: BTreeSet<String> = r.expected_saved(&big).into_iter().map(|(_, l)| l).collect();
    assert!(all.is_subset(&lines(&text)));

    // A partial sync adding more chains than one transaction takes splits
    // the same way.
    let added = rules(&many_services(100, CHAINS_PER_TRANSACTION / 6 + 10, 5));
    let changes: Vec<_> = added.values().map(|p| (None, Some(p))).collect();
    let text = r.partial_restore(&changes, &BTreeSet::new());
    assert!(check_transactions(&text, true) >= 3);
    // A small one stays one transaction per table.
    let text = r.partial_restore(&changes[..3], &BTreeSet::new());
    assert_eq!(check_transactions(&text, true), 1);
    assert_eq!(text.matches("COMMIT").count(), 2);

    // On the legacy backend every sync is one transaction per table, as
    // kube-proxy's, holding the same rules.
    let legacy = IptablesRenderer {
        chunked: false,
        ..r.clone()
    };
    let one = legacy.restore(
        &big,
        &BTreeSet::from(["KUBE-SVC-STALE".to_string()]),
        &HOOKS,
        true,
    );
    assert_eq!(one.matches("COMMIT").count(), 2, "filter and nat");
    let chunked = r.restore(
        &big,
        &BTreeSet::from(["KUBE-SVC-STALE".to_string()]),
        &HOOKS,
        true,
    );
    assert_eq!(lines(&one), lines(&chunked));
    let partial = legacy.partial_restore(&changes, &BTreeSet::new());
    assert_eq!(partial.matches("COMMIT").count(), 2);

    // A full sync's rules moved out of the ports into one text restore
    // byte for byte as the ports' own, in both forms.
    let stale = BTreeSet::from(["KUBE-SVC-STALE".to_string()]);
    let mut slim = big.clone();
    let mut nat = NatText::default();
    slim.values_mut().for_each(|p| nat.take(p));
    assert!(slim.values().all(|p| p.nat.is_empty()));
    assert_eq!(nat.ports(), big.len());
    for renderer in [&legacy, &r] {
        assert_eq!(
            renderer.restore_with(&slim, &nat, &stale, &HOOKS, true),
            renderer.restore(&big, &stale, &HOOKS, true)
        );
    }
}

/// Elements of the `add element` commands of `text`: `(set, element)`.
fn nft_elements(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("add element ") else {
            continue;
        };
        let (head, body) = rest.split_once(" { ").expect("element braces");
        let set = head.rsplit(' ').next().expect("set name").to_string();
        for e in body.trim_end_matches(" }").split(", ") {
            out.insert((set.clone(), e.to_string()));
        }
    }
    out
}

#[test]
fn a_cold_start_loads_the_elements_of_a_full_sync_with_services_last() {
    let n = NftRenderer::new(false, Some("172.30.0.0/16".parse().expect("cidr")));
    let v4: Vec<PortPlan> = plans(&format!("{}{CASES}", many_services(0, 1500, 3)), "host1")
        .into_iter()
        .filter(|p| !p.v6())
        .collect();
    let ports = n.ports(&v4);
    let (mut full_refs, mut cold_refs) = (SharedRefs::new(), SharedRefs::new());
    let full = n.full(&ports, &mut full_refs);
    let cold = n.cold(&ports, &mut cold_refs);
    assert_eq!(full_refs, cold_refs);
    assert!(cold.create.starts_with("create table ip kube-proxy\n"));
    assert!(!cold.create.contains("add element"));
    assert!(cold.live.elements_only() && cold.loads.elements_only());
    let loads = cold.text_loads(&n.target(), 2);
    assert_eq!(loads.len(), 2);
    let mut live = String::new();
    cold.live.finish_into(&n.target(), &mut live);
    let live = nft_elements(&live);
    let live_maps = [
        "service-ips",
        "service-nodeports",
        "no-endpoint-services",
        "no-endpoint-nodeports",
    ];
    assert!(live.iter().all(|(s, _)| live_maps.contains(&s.as_str())));
    let mut all = live;
    for l in &loads {
        let part = nft_elements(l);
        assert!(part.iter().all(|(s, _)| !live_maps.contains(&s.as_str())));
        all.extend(part);
    }
    assert_eq!(all, nft_elements(&full));
    // Objects and rules are the same as the full sync's.
    let objects = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("add element") && !l.contains(" table "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(objects(&cold.create), objects(&full));
}

/// A load balancer with source ranges holding the node's address, and a
/// plain service beside it.
const LB_AND_PLAIN: &str = "kind: Service\nmetadata: {name: lb, namespace: d}\n\
    spec: {type: LoadBalancer, clusterIP: 10.0.0.1, sessionAffinity: ClientIP,\n\
    loadBalancerSourceRanges: [192.0.2.0/24], ports: [{port: 80, nodePort: 30080}]}\n\
    status: {loadBalancer: {ingress: [{ip: 198.18.5.5}]}}\n---\n\
    kind: EndpointSlice\nmetadata: {name: lb-1, namespace: d, labels: {kubernetes.io/service-name: lb}}\n\
    addressType: IPv4\nports: [{port: 8080}]\n\
    endpoints: [{addresses: [100.64.1.2], nodeName: n2, conditions: {ready: true}}]\n---\n\
    kind: Service\nmetadata: {name: plain, namespace: d}\n\
    spec: {clusterIP: 10.0.0.2, ports: [{port: 53, protocol: UDP}]}\n---\n\
    kind: EndpointSlice\nmetadata: {name: plain-1, namespace: d, labels: {kubernetes.io/service-name: plain}}\n\
    addressType: IPv4\nports: [{port: 53, protocol: UDP}]\n\
    endpoints: [{addresses: [100.64.1.3], conditions: {ready: true}}]\n";

#[test]
fn both_modes_write_the_same_masquerade_all_and_source_range_decisions() {
    use crate::plan::policy::NodePolicy;
    let node = NodePolicy {
        pods: Some("100.64.0.0/10".parse().expect("cidr")),
        masquerade_all: true,
        node_ip: Some("192.0.2.7".parse().expect("ip")),
    };
    let ipt = IptablesRenderer {
        node: node.clone(),
        ..IptablesRenderer::new(false, None, true)
    };
    let nft = NftRenderer {
        node,
        ..NftRenderer::new(false, None)
    };
    let ps = plans(LB_AND_PLAIN, "n1");
    let ports: BTreeMap<_, _> = ps.iter().map(|p| (p.key.clone(), ipt.port(p))).collect();
    let saved = ipt.restore(&ports, &BTreeSet::new(), &[], true);
    // every packet to the cluster IP is marked, not only off-pod ones
    assert!(saved.contains(
        "-d 10.0.0.1/32 -p tcp -m comment --comment \"d/lb cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"
    ));
    assert!(!saved.contains("! -s 100.64.0.0/10"));
    // the node is inside the source ranges: the VIP is a source too
    assert!(saved.contains("-s 198.18.5.5/32 -m comment --comment \"d/lb loadbalancer IP\""));
    let text = nft.full(&nft.ports(&ps), &mut Default::default());
    assert!(text.contains("ip daddr 10.0.0.1 tcp dport 80 jump mark-for-masquerade"));
    assert!(text.contains("ip saddr { 192.0.2.0/24, 198.18.5.5 } goto external-"));
    assert!(!text.contains("saddr != 100.64.0.0/10"));
    // the plain port's shared pool marks every packet as well
    let pool = text
        .lines()
        .find(|l| {
            l.starts_with("add rule ip kube-proxy")
                && l.contains("mark-for-masquerade")
                && !l.contains("daddr")
        })
        .expect("the pool chain's masquerade rule");
    assert!(pool.ends_with(" jump mark-for-masquerade"), "{pool}");
}

/// As kube-proxy v1.36: iptables mode drops packets conntrack marks
/// INVALID in KUBE-FORWARD unless `nf_conntrack_tcp_be_liberal` is set;
/// nftables mode has no such rule.
#[test]
fn invalid_packets_are_dropped_as_kube_proxy_drops_them_in_each_mode() {
    let strict = IptablesRenderer::new(false, None, true);
    let text = strict.restore(&BTreeMap::new(), &BTreeSet::new(), &HOOKS, true);
    assert!(text.contains("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"));
    let liberal = IptablesRenderer {
        conntrack_liberal: true,
        ..strict
    };
    let text = liberal.restore(&BTreeMap::new(), &BTreeSet::new(), &HOOKS, true);
    assert!(!text.contains("INVALID"));
    let nft = NftRenderer::new(false, None);
    let text = nft.full(&BTreeMap::new(), &mut Default::default());
    assert!(!text.to_lowercase().contains("invalid"), "{text}");
}

#[test]
fn a_partial_restore_rewrites_only_the_chains_that_changed() {
    let r = IptablesRenderer::new(false, None, true);
    let port = |text: &str| r.port(&plans(text, "host1")[0]);
    let mut old = port(ARTICLE);
    old.slim();
    let new = port(&ARTICLE.replace("172.30.46.2", "172.30.46.9"));
    let text = r.partial_restore(&[(Some(&old), Some(&new))], &BTreeSet::new());
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    // the service chain (its jumps changed) and the new endpoint's chain;
    // the kept endpoint's chain and the external chain stay as they are
    assert_eq!(declared.len(), 2, "{text}");
    assert!(declared.contains(&"KUBE-SVC-QLK4GP7H447Z7HSM"), "{text}");
    assert!(!text.contains("KUBE-SEP-K3P44OZ7P7LXNPVT -"), "{text}");
    assert!(!text.contains("-A KUBE-EXT-"), "{text}");
    assert!(text.contains("--to-destination 172.30.46.9:80"), "{text}");
    // nothing kept without an old copy: a new port is written whole
    let whole = r.partial_restore(&[(None, Some(&new))], &BTreeSet::new());
    assert_eq!(whole.lines().filter(|l| l.starts_with(':')).count(), 4);
}

#[test]
fn shared_sets_are_made_half_again_as_large_as_their_elements() {
    use super::nft::{set_size, MIN_SET_SIZE};
    assert_eq!(set_size(0), MIN_SET_SIZE);
    assert_eq!(set_size(682), 1024);
    assert_eq!(set_size(683), 1024);
    assert_eq!(set_size(684), 2048);
    assert_eq!(set_size(250_000), 375_808);
    assert_eq!(set_size(usize::MAX), u32::MAX);
}

/// A full sync declares each pool map and the hairpin set with a size
/// that holds its elements. Ports added past it raise the size in place,
/// up to twice the size the set was made with; past that the table is to
/// be written again.
#[test]
fn a_shared_set_filled_past_its_size_grows_in_place_then_is_made_again() {
    let n = NftRenderer::new(false, None);
    let ports = n.ports(&plans(&many_services(0, 100, 5), "host1"));
    let mut refs = SharedRefs::new();
    let text = n.full(&ports, &mut refs);
    assert!(
        text.contains("numgen random mod 5 : ip daddr . th dport; size 1024; }"),
        "{text}"
    );
    assert!(
        text.contains("set hairpin-endpoints { type ipv4_addr . ipv4_addr; size 1024; }"),
        "{text}"
    );
    assert!(refs.outgrown().is_empty());
    let add = |first: usize, count: usize, refs: &mut SharedRefs| {
        let more = n.ports(&plans(&many_services(first, count, 5), "host1"));
        let before = refs.pools.clone();
        let mut batch = NftBatch::default();
        for p in more.values() {
            n.update(&mut batch, refs, PortNft::empty(), p);
        }
        n.update_pools(&mut batch, &before, refs);
        (n.grow_sets(refs), more)
    };
    // 200 more ports of 5: 1,500 pool elements and 1,250 endpoint IPs
    // (the addresses repeat every 250 services), past 1,024: raised, to
    // twice the size they were made with at most
    let (grown, more) = add(100, 200, &mut refs);
    let text = grown.expect("raised in place");
    assert!(text.starts_with(
        "add set ip kube-proxy hairpin-endpoints { type ipv4_addr . ipv4_addr; size 2048; }\n\
         add map ip kube-proxy service-endpoints-5 { typeof ip daddr . meta l4proto . th dport . numgen random mod 5 : ip daddr . th dport; size 2048; }\n"
    ), "{text}");
    assert!(refs.outgrown().is_empty());
    let (made, now) = (refs.sizes.hairpin.made, refs.sizes.hairpin.now);
    assert_eq!((made, now), (1024, 2048));
    // 200 more: 2,500 pool elements, past twice the 1,024 it was made with
    let (grown, more2) = add(300, 200, &mut refs);
    assert_eq!(grown, Err("service-endpoints-5".to_string()));
    // a full sync makes them again for what they hold
    let mut all = ports;
    all.extend(more);
    all.extend(more2);
    n.full(&all, &mut refs);
    assert!(refs.outgrown().is_empty());
    let pool = refs
        .sizes
        .pools
        .values()
        .next()
        .copied()
        .unwrap_or_default();
    assert_eq!(
        (refs.sizes.hairpin.made, pool.made, pool.now),
        (2048, 4096, 4096)
    );
}

//! The sync shell against a real kernel, in a fresh network namespace:
//! rules are applied with the real iptables-restore / nft, read back and
//! compared; a run of partial syncs ends exactly where a full sync from
//! scratch does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use weft_firewall::backend::detect;
use weft_firewall::{Backend, BackendChoice, Iptables};
use weft_lab::{in_netns, sh, Lab};
use weft_proxy::plan::catalog::Catalog;
use weft_proxy::plan::PortPlan;
use weft_proxy::render::iptables::{normalize_saved, CHAINS_PER_TRANSACTION, HOOKS};
use weft_proxy::shell::sync::{cleanup, ProxyMode, SyncReport, Syncer};
use weft_proxy::spec::{parse_documents, ServiceName};

const CASES: &str = include_str!("golden/cases.yaml");
const ARTICLE: &str = include_str!("golden/article.yaml");

fn catalog(texts: &[&str]) -> Catalog {
    let mut c = Catalog::default();
    for t in texts {
        for o in parse_documents(t, "test").expect("valid") {
            c.put(o);
        }
    }
    c
}

fn syncer(mode: ProxyMode) -> Syncer {
    syncer_with(mode, Iptables::plain(Backend::Nft))
}

fn syncer_with(mode: ProxyMode, ipt: Iptables) -> Syncer {
    let mut s = Syncer::new(
        mode,
        ipt,
        Some("172.30.0.0/16".parse().expect("cidr")),
        Some("fd00:30::/56".parse().expect("cidr")),
        &weft_proxy::shell::sync::HostSettings {
            localhost_node_ports: true,
            ..Default::default()
        },
    );
    // every rule kept, to compare with what the kernel reads back
    s.keep_rules = true;
    s
}

/// The programs of `backend` (both are installed here, and the kernel has both).
fn iptables_of(backend: Backend) -> Iptables {
    let ipt = detect(BackendChoice::Only(backend)).expect("the backend's programs are installed");
    assert_eq!(ipt.backend, backend);
    ipt
}

fn out(ns: &str, program: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns, program];
    a.extend_from_slice(args);
    let o = sh("ip", &a).expect("tool runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The rules of KUBE-* chains as iptables-save prints them, normalized.
fn saved_rules(ns: &str, save: &str) -> BTreeSet<(String, String)> {
    let mut rules = BTreeSet::new();
    for table in ["filter", "nat"] {
        for l in out(ns, save, &["-t", table]).lines() {
            if l.starts_with("-A KUBE-") {
                rules.insert((table.to_string(), normalize_saved(l)));
            }
        }
    }
    rules
}

fn expected(s: &Syncer, v6: bool) -> BTreeSet<(String, String)> {
    s.expected_iptables(v6)
        .into_iter()
        .map(|(t, l)| (t.to_string(), normalize_saved(&l)))
        .collect()
}

fn hook_count(ns: &str, save: &str) -> usize {
    ["filter", "nat"]
        .iter()
        .map(|t| {
            out(ns, save, &["-t", t])
                .lines()
                .filter(|l| {
                    l.starts_with("-A ") && !l.starts_with("-A KUBE-") && l.contains("-j KUBE-")
                })
                .count()
        })
        .sum()
}

fn changed(c: &mut Catalog) -> (BTreeSet<ServiceName>, Vec<PortPlan>) {
    // Endpoint removed from one service, a service deleted, one added.
    let sticky = ServiceName::parse("shop/sticky").expect("name");
    if let Some(slice) = c.slices(&sticky).first().cloned() {
        let mut set = slice.set;
        set.endpoints.remove(0);
        c.put_slice(slice.key, set);
    }
    let dns = ServiceName::parse("kube-system/dns").expect("name");
    c.remove_service(&dns);
    for o in parse_documents(ARTICLE, "article").expect("valid") {
        c.put(o);
    }
    let article = ServiceName::parse("default/example-service").expect("name");
    let services = BTreeSet::from([sticky, dns, article]);
    let plans = services.iter().flat_map(|s| c.plan(s, "host1")).collect();
    (services, plans)
}

#[test]
fn iptables_rules_read_back_equal_and_partial_equals_full_on_nf_tables() {
    rules_read_back_equal_and_partial_equals_full(Backend::Nft);
}

#[test]
fn iptables_rules_read_back_equal_and_partial_equals_full_on_legacy() {
    rules_read_back_equal_and_partial_equals_full(Backend::Legacy);
}

fn rules_read_back_equal_and_partial_equals_full(backend: Backend) {
    let mut lab = Lab::new("wpi", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let mut c = catalog(&[CASES]);
    let ipt = iptables_of(backend);
    let (save4, save6) = (ipt.save(false), ipt.save(true));
    in_netns(&ns, || {
        let mut s = syncer_with(ProxyMode::Iptables, ipt.clone());
        let r = s.full(c.plan_all("host1")).expect("full sync");
        assert_eq!(r.ports, 8);
        assert_eq!(saved_rules(&ns, &save4), expected(&s, false));
        assert_eq!(saved_rules(&ns, &save6), expected(&s, true));
        assert_eq!(hook_count(&ns, &save4), HOOKS.len());
        // A second full sync changes nothing and adds no second hook.
        s.full(c.plan_all("host1")).expect("full sync again");
        assert_eq!(hook_count(&ns, &save4), HOOKS.len());
        assert_eq!(saved_rules(&ns, &save4), expected(&s, false));

        let (services, plans) = changed(&mut c);
        let r = s.partial(&services, plans).expect("partial sync");
        assert!(r.written >= 2, "{r:?}");
        let after_partial = saved_rules(&ns, &save4);
        assert_eq!(after_partial, expected(&s, false));
        assert!(!after_partial
            .iter()
            .any(|(_, l)| l.contains("kube-system/dns")));
        assert!(after_partial
            .iter()
            .any(|(_, l)| l.contains("KUBE-SVC-QLK4GP7H447Z7HSM")));
        // A partial sync writes a port's chains in order: the external
        // chain marks for masquerade before it jumps (set equality above
        // cannot see that).
        let nat = out(&ns, &save4, &["-t", "nat"]);
        let at = |needle: &str| {
            nat.lines()
                .position(|l| l.starts_with("-A KUBE-EXT-QLK4GP7H447Z7HSM") && l.ends_with(needle))
        };
        assert!(at("-j KUBE-MARK-MASQ").is_some());
        assert!(
            at("-j KUBE-MARK-MASQ") < at("-j KUBE-SVC-QLK4GP7H447Z7HSM"),
            "{nat}"
        );
        assert!(nat
            .lines()
            .rfind(|l| l.starts_with("-A KUBE-SERVICES"))
            .is_some_and(|l| l.contains("KUBE-NODEPORTS")));
        // No chain of the deleted service is left behind.
        let nat = out(&ns, &save4, &["-t", "nat"]);
        let chains = nat.lines().filter(|l| l.starts_with(":KUBE-S")).count();
        let mut fresh = syncer_with(ProxyMode::Iptables, ipt.clone());
        fresh.full(c.plan_all("host1")).expect("full from scratch");
        assert_eq!(saved_rules(&ns, &save4), after_partial);
        let nat = out(&ns, &save4, &["-t", "nat"]);
        assert_eq!(
            nat.lines().filter(|l| l.starts_with(":KUBE-S")).count(),
            chains
        );

        let removed = cleanup().expect("cleanup");
        assert!(!removed.is_empty());
        // kubelet's KUBE-FIREWALL stays, as kube-proxy's cleanup leaves it
        let kubelet = |r: &(String, String)| r.1.starts_with("-A KUBE-FIREWALL ");
        assert_eq!(hook_count(&ns, &save4), 2);
        assert!(saved_rules(&ns, &save4).iter().all(kubelet));
        assert!(saved_rules(&ns, &save6).iter().all(kubelet));
    })
    .expect("in netns");
}

/// Services `first..first + n` of `e` endpoints each, as YAML documents.
fn bulk(first: usize, n: usize, e: usize) -> String {
    (first..first + n)
        .map(|i| {
            let eps: Vec<String> = (0..e)
                .map(|j| format!("{{addresses: [172.30.{}.{}]}}", i % 250, j + 2))
                .collect();
            format!(
                "kind: Service\nmetadata: {{name: b{i}, namespace: bulk}}\nspec: {{clusterIP: 10.254.{}.{}, ports: [{{port: 80}}]}}\n---\n\
                 kind: EndpointSlice\nmetadata: {{name: b{i}, namespace: bulk}}\nendpoints: [{}]\nports: [{{port: 8080}}]\n---\n",
                100 + i / 250,
                i % 250 + 1,
                eps.join(", ")
            )
        })
        .collect()
}

/// Past `CHAINS_PER_TRANSACTION` port chains a sync takes several iptables-restore transactions
/// (iptables-nft is quadratic in the chains of one): the kernel still ends
/// up holding exactly the rules of the one-transaction form, after a full
/// sync, a large partial one that adds and removes services, and a fresh
/// full sync that must remove the chains nobody wants any more.
#[test]
fn iptables_large_syncs_in_several_transactions_read_back_equal() {
    large_syncs_read_back_equal(Backend::Nft);
}

/// On legacy the same syncs are one transaction each (see
/// `Backend::chunked`), with the same outcome.
#[test]
fn iptables_large_syncs_on_legacy_read_back_equal() {
    large_syncs_read_back_equal(Backend::Legacy);
}

fn large_syncs_read_back_equal(backend: Backend) {
    let mut lab = Lab::new("wpl", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let mut c = catalog(&[CASES, &bulk(0, 80, 5)]);
    let ipt = iptables_of(backend);
    let save4 = ipt.save(false);
    in_netns(&ns, || {
        let mut s = syncer_with(ProxyMode::Iptables, ipt.clone());
        s.full(c.plan_all("host1")).expect("full sync");
        let (got, want) = (saved_rules(&ns, &save4), expected(&s, false));
        assert!(
            got == want,
            "in the kernel only: {:?}\nwritten only: {:?}",
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        );
        assert_eq!(hook_count(&ns, &save4), HOOKS.len());
        let nat_chains = || {
            out(&ns, &save4, &["-t", "nat"])
                .lines()
                .filter(|l| l.starts_with(":KUBE-S"))
                .count()
        };
        // KUBE-SERVICES and the cases' own chains, besides 6 per bulk service.
        let base = nat_chains() - 80 * 6;

        // Services added (more chains than one transaction takes), 40 removed.
        let add = CHAINS_PER_TRANSACTION / 6 + 10;
        let mut services = BTreeSet::new();
        for i in 0..40 {
            let name = ServiceName::parse(&format!("bulk/b{i}")).expect("name");
            c.remove_service(&name);
            services.insert(name);
        }
        for o in parse_documents(&bulk(80, add, 5), "test").expect("valid") {
            c.put(o);
        }
        for i in 80..80 + add {
            services.insert(ServiceName::parse(&format!("bulk/b{i}")).expect("name"));
        }
        let plans = services.iter().flat_map(|n| c.plan(n, "host1")).collect();
        s.partial(&services, plans).expect("partial sync");
        let after_partial = saved_rules(&ns, &save4);
        assert_eq!(after_partial, expected(&s, false));
        assert!(!after_partial
            .iter()
            .any(|(_, l)| l.contains("\"bulk/b3 ") || l.contains("\"bulk/b3\"")));
        assert!(after_partial
            .iter()
            .any(|(_, l)| l.contains("\"bulk/b50 cluster IP\"")));
        assert_eq!(nat_chains(), base + (40 + add) * 6);

        // A full sync from scratch with 50 more services gone removes
        // their chains (stale) in its last transaction.
        for i in 40..90 {
            c.remove_service(&ServiceName::parse(&format!("bulk/b{i}")).expect("name"));
        }
        let mut fresh = syncer_with(ProxyMode::Iptables, ipt.clone());
        fresh.full(c.plan_all("host1")).expect("full from scratch");
        assert_eq!(saved_rules(&ns, &save4), expected(&fresh, false));
        assert_eq!(nat_chains(), base + (add - 10) * 6);
        assert_eq!(hook_count(&ns, &save4), HOOKS.len());
        cleanup().expect("cleanup");
        assert!(saved_rules(&ns, &save4)
            .iter()
            .all(|(_, l)| l.starts_with("-A KUBE-FIREWALL ")));
    })
    .expect("in netns");
}

/// Chains (with their rules) and map elements of the kube-proxy tables.
fn nft_state(ns: &str) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let table = "kube-proxy";
    for fam in ["ip", "ip6"] {
        let json = out(ns, "nft", &["-j", "list", "table", fam, table]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("nft json");
        for o in v["nftables"].as_array().expect("array") {
            if let Some(r) = o.get("rule") {
                let chain = format!("{fam} {table} chain {}", r["chain"]);
                let entry = state.entry(chain).or_insert_with(String::new);
                entry.push_str(&r["expr"].to_string());
                entry.push('\n');
            } else if let Some(m) = o.get("map") {
                let mut elems: Vec<String> = m["elem"]
                    .as_array()
                    .map(|a| a.iter().map(|e| e.to_string()).collect())
                    .unwrap_or_default();
                elems.sort();
                state.insert(format!("{fam} {table} map {}", m["name"]), elems.join("\n"));
            } else if let Some(s) = o.get("set") {
                let elems = s["elem"].to_string();
                state.insert(
                    format!("{fam} {table} set {}", s["name"]),
                    format!("{} {elems}", s["timeout"]),
                );
            } else if let Some(ch) = o.get("chain") {
                state
                    .entry(format!("{fam} chain {}", ch["name"]))
                    .or_default();
            }
        }
    }
    state
}

#[test]
fn nft_partial_syncs_end_where_a_full_sync_does() {
    let mut lab = Lab::new("wpn", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let mut c = catalog(&[CASES]);
    in_netns(&ns, || {
        // A table of an earlier version (16 shard tables) goes on the first
        // full sync.
        sh("nft", &["add", "table", "ip", "kube-proxy-3"]).expect("legacy table");
        let mut s = syncer(ProxyMode::Nftables);
        let r = s.full(c.plan_all("host1")).expect("full sync");
        assert!(!out(&ns, "nft", &["list", "tables"]).contains("kube-proxy-3"));
        assert_eq!(r.ports, 8);
        let before = nft_state(&ns);
        assert!(before.keys().any(|k| k.contains("affinity-")), "{before:?}");
        let (services, plans) = changed(&mut c);
        s.partial(&services, plans).expect("partial sync");
        let after_partial = nft_state(&ns);
        assert_ne!(before, after_partial);
        let mut fresh = syncer(ProxyMode::Nftables);
        fresh.full(c.plan_all("host1")).expect("full from scratch");
        assert_eq!(nft_state(&ns), after_partial);
        // A partial sync with nothing changed sends nothing.
        let sticky = ServiceName::parse("shop/sticky").expect("name");
        let r = fresh
            .partial(&BTreeSet::from([sticky.clone()]), c.plan(&sticky, "host1"))
            .expect("no-op");
        assert_eq!(r.bytes, 0);
        cleanup().expect("cleanup");
        assert!(!out(&ns, "nft", &["list", "tables"]).contains("kube-proxy"));
    })
    .expect("in netns");
}

/// A first sync into a kernel without the table loads it in several steps
/// (elements over netlink): it ends with exactly the table a
/// one-transaction full sync writes over an existing one.
#[test]
fn nft_cold_start_loads_the_table_a_full_sync_writes() {
    let mut lab = Lab::new("wpc", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    // 1,500 services x 3 endpoints: 4,500 pool elements, more than one
    // `add element` command holds, so the load has several parts.
    let c = catalog(&[CASES, &bulk(0, 1500, 3)]);
    in_netns(&ns, || {
        use weft_firewall::fallback::{count, FastPath};
        let fallbacks = count(FastPath::NftNetlink);
        let mut s = syncer(ProxyMode::Nftables);
        let r = s.full(c.plan_all("host1")).expect("cold start");
        assert!(r.cold, "{r:?}");
        assert_eq!(count(FastPath::NftNetlink), fallbacks, "loaded as text");
        let cold = nft_state(&ns);
        assert!(cold.values().any(|v| v.contains("10.254.105.250")));
        // The table exists now: a new syncer's first full sync replaces it
        // in one transaction.
        let mut again = syncer(ProxyMode::Nftables);
        let r = again.full(c.plan_all("host1")).expect("full over it");
        assert!(!r.cold, "{r:?}");
        assert_eq!(nft_state(&ns), cold);
        cleanup().expect("cleanup");
    })
    .expect("in netns");
}

/// The `size` line of set or map `name` in the kube-proxy table.
fn declared_size(ns: &str, kind: &str, name: &str) -> u32 {
    let text = out(ns, "nft", &["list", kind, "ip", "kube-proxy", name]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("size "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{kind} {name} has no size: {text}"))
}

/// The pool maps and the hairpin set are fixed-size hash tables in the
/// kernel, made half again as large as their elements. A partial sync
/// that would fill one past its size raises the size in place, up to
/// twice the size it was made with; past that it writes the table again
/// with larger sets. Each time the kernel ends up holding what a full sync
/// from scratch writes, and the next change goes over netlink again.
#[test]
fn nft_sets_outgrown_by_a_partial_sync_grow_in_place_then_are_made_again() {
    let mut lab = Lab::new("wpg", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    // (an IPv6 Service too: `nft_state` reads both families' tables)
    let mut c = catalog(&[PLAIN6, &bulk(0, 10, 5)]);
    let sizes = |ns: &str| {
        (
            declared_size(ns, "map", "service-endpoints-5"),
            declared_size(ns, "set", "hairpin-endpoints"),
        )
    };
    in_netns(&ns, || {
        let mut s = syncer(ProxyMode::Nftables);
        let r = s.full(c.plan_all("host1")).expect("cold start");
        assert!(r.cold, "{r:?}");
        // 10 ports x 5 endpoints, 50 hairpin pairs: the smallest sizes
        assert_eq!(sizes(&ns), (1024, 1024));
        // 200 more: 1,050 pool elements and pairs, past 1,024: raised in place
        let r = grow(&mut s, &mut c, 10, 200);
        assert!(r.netlink && !r.full, "not elements over netlink: {r:?}");
        assert_eq!(sizes(&ns), (2048, 2048));
        same_as_a_full_sync(&ns, &c);
        // 200 more: 2,050 pool elements (1,250 pairs: the addresses repeat
        // every 250 services), past twice the 1,024 the map was made with
        let r = grow(&mut s, &mut c, 210, 200);
        assert!(r.full, "not written again: {r:?}");
        assert_eq!(sizes(&ns), (4096, 2048));
        same_as_a_full_sync(&ns, &c);
        // within the sizes, an endpoint replaced is elements over netlink
        endpoint_replaced_over_netlink(&ns, &mut s, &mut c);
        // (this kernel raises sizes in place: no fallback to a rewrite)
        let resized = weft_firewall::fallback::FastPath::NftSetResize;
        assert_eq!(weft_firewall::fallback::count(resized), 0);
        cleanup().expect("cleanup");
    })
    .expect("in netns");
}

/// Adds bulk Services `first..first + count` of 5 endpoints in one partial sync.
fn grow(s: &mut Syncer, c: &mut Catalog, first: usize, count: usize) -> SyncReport {
    for o in parse_documents(&bulk(first, count, 5), "grown").expect("valid") {
        c.put(o);
    }
    let more: BTreeSet<ServiceName> = (first..first + count).map(bulk_name).collect();
    let plans = more.iter().flat_map(|s| c.plan(s, "host1")).collect();
    s.partial(&more, plans)
        .expect("partial sync past the sizes")
}

fn bulk_name(i: usize) -> ServiceName {
    ServiceName::parse(&format!("bulk/b{i}")).expect("name")
}

/// The kernel holds what a fresh syncer's full sync of `c` writes.
fn same_as_a_full_sync(ns: &str, c: &Catalog) {
    let now = nft_state(ns);
    let mut fresh = syncer(ProxyMode::Nftables);
    fresh.full(c.plan_all("host1")).expect("full from scratch");
    assert_eq!(nft_state(ns), now);
}

/// Replaces an endpoint of bulk Service 3 (5 endpoints): elements only,
/// sent over netlink without a fallback.
fn endpoint_replaced_over_netlink(ns: &str, s: &mut Syncer, c: &mut Catalog) {
    use weft_firewall::fallback::{count, FastPath};
    let moved = "kind: EndpointSlice\nmetadata: {name: b3, namespace: bulk}\n\
        endpoints: [{addresses: [172.30.3.2]}, {addresses: [172.30.3.3]}, {addresses: [172.30.3.4]}, \
        {addresses: [172.30.3.5]}, {addresses: [172.30.251.9]}]\nports: [{port: 8080}]\n";
    for o in parse_documents(moved, "moved").expect("valid") {
        c.put(o);
    }
    let fallbacks = count(FastPath::NftNetlink);
    let r = s.partial(
        &BTreeSet::from([bulk_name(3)]),
        c.plan(&bulk_name(3), "host1"),
    );
    let r = r.expect("partial sync");
    assert!(r.netlink && !r.full, "{r:?}");
    assert_eq!(count(FastPath::NftNetlink), fallbacks, "fell back to text");
    assert!(nft_state(ns).values().any(|v| v.contains("172.30.251.9")));
}

/// A plain IPv6 Service (its elements live in the shared pools).
const PLAIN6: &str = "kind: Service\nmetadata: {name: w6, namespace: bulk}\n\
    spec: {clusterIP: 'fd00:254::31', ports: [{port: 443, protocol: SCTP}]}\n---\n\
    kind: EndpointSlice\nmetadata: {name: w6, namespace: bulk}\naddressType: IPv6\n\
    endpoints: [{addresses: ['fd00:30:0:65::7']}, {addresses: ['fd00:30:0:66::7']}]\n\
    ports: [{port: 8443, protocol: SCTP}]\n";

/// Endpoint churn that changes only map and set elements: addresses
/// replaced in a Service (its pool stays), in both families, a Service
/// gone from a pool others still use, hairpin pairs with them.
fn churned(c: &mut Catalog) -> (BTreeSet<ServiceName>, Vec<PortPlan>) {
    let moved = "kind: EndpointSlice\nmetadata: {name: b3, namespace: bulk}\n\
                 endpoints: [{addresses: [172.30.9.7]}, {addresses: [172.30.9.8]}, {addresses: [172.30.3.2]}]\n\
                 ports: [{port: 8080}]\n---\n\
                 kind: EndpointSlice\nmetadata: {name: w6, namespace: bulk}\naddressType: IPv6\n\
                 endpoints: [{addresses: ['fd00:30:0:65::7']}, {addresses: ['fd00:30:0:67::9']}]\n\
                 ports: [{port: 8443, protocol: SCTP}]\n";
    for o in parse_documents(moved, "churn").expect("valid") {
        c.put(o);
    }
    let b3 = ServiceName::parse("bulk/b3").expect("name");
    let b4 = ServiceName::parse("bulk/b4").expect("name");
    let w6 = ServiceName::parse("bulk/w6").expect("name");
    c.remove_service(&b4);
    let services = BTreeSet::from([b3, b4, w6]);
    let plans = services.iter().flat_map(|s| c.plan(s, "host1")).collect();
    (services, plans)
}

/// Element-only changes go over nf_tables netlink (no fallback to text),
/// and the kernel then holds what a full sync from scratch writes.
#[test]
fn nft_element_changes_over_netlink_end_where_a_full_sync_does() {
    use weft_firewall::fallback::{count, FastPath};
    let mut lab = Lab::new("wpe", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let mut c = catalog(&[CASES, PLAIN6, &bulk(0, 10, 3)]);
    in_netns(&ns, || {
        let mut s = syncer(ProxyMode::Nftables);
        s.full(c.plan_all("host1")).expect("full sync");
        let before = nft_state(&ns);
        let fallbacks = count(FastPath::NftNetlink);
        let (services, plans) = churned(&mut c);
        let r = s.partial(&services, plans).expect("partial sync");
        assert!(r.netlink, "went as text: {r:?}");
        assert_eq!(count(FastPath::NftNetlink), fallbacks, "fell back to text");
        let after = nft_state(&ns);
        assert_ne!(before, after);
        for new in ["172.30.9.7", "fd00:30:0:67::9"] {
            assert!(after.values().any(|v| v.contains(new)), "{new}: {after:?}");
        }
        let mut fresh = syncer(ProxyMode::Nftables);
        fresh.full(c.plan_all("host1")).expect("full from scratch");
        assert_eq!(nft_state(&ns), after);
        refused_transactions_change_nothing(&ns);
        cleanup().expect("cleanup");
    })
    .expect("in netns");
}

/// A transaction the kernel refuses (an element deleted that is not
/// there) is refused whole, with a one-line error naming the set.
fn refused_transactions_change_nothing(ns: &str) {
    use weft_proxy::render::nft::{
        Added, ElementKey, ElementValue, FixedMap, MapName, Member, NftBatch, NftRenderer,
    };
    use weft_proxy::shell::nft_apply::NftApplier;
    use weft_proxy::spec::Protocol;
    let before = nft_state(ns);
    let r = NftRenderer::new(false, None);
    let mut batch = NftBatch::default();
    let key = |ip: &str| ElementKey::addr(ip.parse().expect("ip"), Protocol::Tcp, 80);
    batch.map.insert(
        MapName::Fixed(FixedMap::ServiceIps),
        vec![Added {
            member: Member::Key(key("10.254.200.1")),
            value: Some(ElementValue::Drop),
        }],
    );
    batch.unmap.insert(
        MapName::Fixed(FixedMap::ServiceIps),
        vec![Member::Key(key("10.254.200.2"))],
    );
    let err = NftApplier::new(true)
        .apply_batch(&r, batch)
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("deleting elements from nf_tables set service-ips") && !msg.contains('\n'),
        "{msg}"
    );
    assert_eq!(nft_state(ns), before);
}

/// The register bytes weft sends for elements are the words libnftables
/// sends for the same batch as text (`nft --debug=netlink --check`), for
/// both families: deletions and additions, pool endpoints, verdicts and
/// hairpin pairs.
#[test]
fn nft_netlink_elements_are_the_words_libnftables_sends() {
    use weft_proxy::render::nft::{NftBatch, NftRenderer, PortNft, SharedRefs};
    let mut lab = Lab::new("wpw", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let mut c = catalog(&[CASES, PLAIN6, &bulk(0, 10, 3)]);
    let old_plans = c.plan_all("host1");
    let (_, _) = churned(&mut c);
    let new_plans = c.plan_all("host1");
    in_netns(&ns, || {
        let mut s = syncer(ProxyMode::Nftables);
        s.full(old_plans.clone()).expect("full sync");
        for v6 in [false, true] {
            let pods = if v6 { "fd00:30::/56" } else { "172.30.0.0/16" };
            let r = NftRenderer::new(v6, Some(pods.parse().expect("cidr")));
            let of_family = |plans: &[PortPlan]| -> Vec<PortPlan> {
                let family = plans.iter().filter(|p| p.cluster_ip.is_ipv6() == v6);
                family.cloned().collect()
            };
            let old = r.ports(&of_family(&old_plans));
            let new = r.ports(&of_family(&new_plans));
            let mut refs = SharedRefs::new();
            r.full(&old, &mut refs);
            let mut batch = NftBatch::default();
            for (k, p) in &old {
                r.update(
                    &mut batch,
                    &mut refs,
                    p,
                    new.get(k).unwrap_or(PortNft::empty()),
                );
            }
            for (_, p) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
                r.update(&mut batch, &mut refs, PortNft::empty(), p);
            }
            let want = expected_debug_lines(&batch);
            assert!(want.len() > 3, "{want:?}");
            let mut text = String::new();
            batch.finish_into(&r.target(), &mut text);
            let check = ["--debug=netlink", "--check", "-f", "-"];
            let o = weft_firewall::apply::run("nft", &check, Some(&text)).expect("nft checks it");
            assert_eq!(debug_lines(&o), want, "family v6={v6}:\n{text}");
        }
        cleanup().expect("cleanup");
    })
    .expect("in netns");
}

/// `(set, element line)` of `nft --debug=netlink` output, sorted.
fn debug_lines(out: &str) -> Vec<(String, String)> {
    let mut set = String::new();
    let mut lines = Vec::new();
    for l in out.lines() {
        if l.trim_start().starts_with("element ") {
            // a message's elements share a line
            for e in l.split("element ").skip(1) {
                lines.push((
                    set.clone(),
                    e.split_whitespace().collect::<Vec<_>>().join(" "),
                ));
            }
        } else if l.ends_with(" kube-proxy 0") {
            set = l.split_whitespace().next().unwrap_or("").to_string();
        }
    }
    lines.sort();
    lines
}

/// What `nft --debug=netlink` would print for `batch`'s elements, from
/// weft's own encoding.
fn expected_debug_lines(batch: &weft_proxy::render::nft::NftBatch) -> Vec<(String, String)> {
    use weft_proxy::render::nft_wire::{
        debug_words, put_endpoint, put_member, wire_value, WireValue,
    };
    let mut lines = Vec::new();
    let key = |m| {
        let mut b = Vec::new();
        put_member(&mut b, m);
        debug_words(&b)
    };
    for (set, members) in &batch.unmap {
        for m in members {
            lines.push((set.to_string(), format!("{} : 0 [end]", key(m))));
        }
    }
    for (set, added) in &batch.map {
        for a in added {
            let mut chain = String::new();
            let value = match a.value.as_ref().map(|v| wire_value(v, &mut chain)) {
                None => String::new(),
                Some(WireValue::Drop) => "drop ".into(),
                Some(WireValue::Goto(c)) => format!("goto -> {c} "),
                Some(WireValue::Endpoint(ep)) => {
                    let mut b = Vec::new();
                    put_endpoint(&mut b, ep);
                    format!("{} ", debug_words(&b))
                }
            };
            lines.push((
                set.to_string(),
                format!("{} : {value}0 [end]", key(&a.member)),
            ));
        }
    }
    lines.sort();
    lines
}

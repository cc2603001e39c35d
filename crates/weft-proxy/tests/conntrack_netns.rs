//! The proxy's conntrack cleaner against the kernel, both families, in a
//! namespace of its own: entries of UDP Services (IPv4 with a node port,
//! IPv6) DNATed to endpoints that serve, that went away, or that
//! are not DNATed at all; after a whole-table and after a per-frontend
//! cleanup exactly the stale ones are gone and counted.

use std::net::SocketAddr;
use std::path::Path;

use weft_kernel::{Conntrack, DumpFilter, Flow, IPPROTO_UDP};
use weft_lab::{in_netns, Lab};
use weft_proxy::plan::catalog::Catalog;
use weft_proxy::plan::conntrack::Frontends;
use weft_proxy::shell::conntrack::{Cleaner, ConntrackStats, Scope};
use weft_proxy::spec::parse_documents;

/// A UDP Service per family (weft's Services have one cluster IP; see
/// the closing note on `clusterIPs`), the IPv4 one with a node port.
const DUAL_STACK: &str = "kind: Service\nmetadata: {name: dns, namespace: d}\n\
    spec: {type: NodePort, clusterIP: 10.254.0.10, ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]}\n---\n\
    kind: EndpointSlice\nmetadata: {name: dns-4, namespace: d, labels: {kubernetes.io/service-name: dns}}\n\
    addressType: IPv4\nports: [{name: dns, port: 53, protocol: UDP}]\n\
    endpoints: [{addresses: [100.64.1.2], nodeName: n1, conditions: {ready: true}}]\n---\n\
    kind: Service\nmetadata: {name: dns6, namespace: d}\n\
    spec: {clusterIP: 'fd00:254::10', ports: [{name: dns, port: 53, protocol: UDP}]}\n---\n\
    kind: EndpointSlice\nmetadata: {name: dns6-1, namespace: d, labels: {kubernetes.io/service-name: dns6}}\n\
    addressType: IPv6\nports: [{name: dns, port: 53, protocol: UDP}]\n\
    endpoints: [{addresses: ['fd00:64::2'], nodeName: n1, conditions: {ready: true}}]\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn flow(client: &str, service: &str, answered_by: &str) -> Flow {
    Flow {
        protocol: IPPROTO_UDP,
        orig_src: sa(client),
        orig_dst: sa(service),
        reply_src: sa(answered_by),
        reply_dst: sa(client),
    }
}

fn frontends() -> Frontends {
    let mut c = Catalog::default();
    for o in parse_documents(DUAL_STACK, "test").expect("valid") {
        c.put(o);
    }
    let plans = c.plan_all("n1");
    assert_eq!(plans.len(), 2, "one port per Service");
    Frontends::of(&plans)
}

fn remaining(ct: &mut Conntrack) -> Vec<Flow> {
    let mut out = Vec::new();
    for ipv6 in [false, true] {
        out.extend(
            ct.dump(&DumpFilter {
                ipv6,
                protocol: IPPROTO_UDP,
                dst_ip: None,
                dst_port: None,
            })
            .expect("dump"),
        );
    }
    out.sort_by_key(|f| (f.orig_src, f.orig_dst));
    out
}

fn run(scope: Scope, tag: &str) {
    let mut lab = Lab::new(tag, Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("ct").expect("netns");
    let path = format!("/run/netns/{ns}");
    let mut ct = Conntrack::open_in_netns(Path::new(&path)).expect("ctnetlink");
    let live4 = flow("198.18.0.5:4000", "10.254.0.10:53", "100.64.1.2:53");
    let live6 = flow("[2001:db8::5]:4000", "[fd00:254::10]:53", "[fd00:64::2]:53");
    let live_node_port = flow("198.18.0.7:4000", "198.18.0.11:30053", "100.64.1.2:53");
    let other_service = flow("198.18.0.5:4001", "10.254.0.11:53", "100.64.9.9:53");
    let stale = [
        flow("198.18.0.5:4002", "10.254.0.10:53", "100.64.7.7:53"),
        flow("198.18.0.5:4003", "10.254.0.10:53", "10.254.0.10:53"),
        flow("[2001:db8::5]:4001", "[fd00:254::10]:53", "[fd00:64::7]:53"),
        flow("198.18.0.8:4000", "198.18.0.11:30053", "100.64.7.7:53"),
    ];
    let mut all = vec![live4, live6, live_node_port, other_service];
    all.extend(stale);
    ct.insert(&all, 300).expect("insert");

    let stats = ConntrackStats::default();
    let mut cleaner = Cleaner::new(true, stats.clone());
    in_netns(&ns, || cleaner.clean(frontends(), scope)).expect("in netns");

    let mut kept = vec![live4, live6, live_node_port, other_service];
    kept.sort_by_key(|f| (f.orig_src, f.orig_dst));
    assert_eq!(remaining(&mut ct), kept);
    let deleted = stats
        .deleted
        .get_or_create(&weft_proxy::shell::conntrack::ProtocolLabel {
            protocol: "udp".into(),
        })
        .get();
    assert_eq!(deleted, 4);
    assert_eq!(stats.errors.get(), 0);
}

#[test]
fn a_whole_table_cleanup_deletes_exactly_the_stale_entries_of_both_families() {
    run(Scope::WholeTable, "wcw");
}

#[test]
fn a_per_frontend_cleanup_deletes_exactly_the_stale_entries_of_both_families() {
    run(Scope::Frontends, "wcf");
}

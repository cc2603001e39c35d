//! The swap an operator makes, on a live cluster, as
//! docs/replacing-flannel-and-kube-proxy.md tells it: a real cluster
//! networked by upstream flanneld v0.26.7 and kube-proxy v1.36.3, with
//! pods and a Service running; weft's image loaded on every node, the old
//! agent and proxy removed, dist/kubernetes applied. Running pods keep
//! their addresses and reach each other and the Service by name; new pods
//! get addresses from the same Node ranges; the Nodes' flannel annotations
//! stay. Then the rollback: weft's DaemonSets deleted, flanneld and
//! kube-proxy back, and the same checks.

use std::path::Path;
use std::time::Duration;

use weft_lab::eventually;
use weft_lab::kube_cluster::{workloads, ClusterOptions, KubeCluster, Network};

/// The Node annotations flannel keeps its lease in.
fn leases(c: &KubeCluster) -> String {
    c.kubectl(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.flannel\.alpha\.coreos\.com/public-ip} {.metadata.annotations.flannel\.alpha\.coreos\.com/backend-data}{"\n"}{end}"#,
    ])
    .expect("nodes")
}

/// Pod `a` (n1) reaches pod `b` (n2) by address and the Service `web` by
/// name; a new pod `fresh` on n2 gets an address in n2's range and
/// answers `a`.
fn everything_works(c: &mut KubeCluster, b: &str, fresh: &str, image: &str, when: &str) {
    let got = eventually(
        Duration::from_secs(60),
        &format!("{when}: a reaches b"),
        || c.fetch_from("a", &format!("http://{b}:8080/hostname")),
    );
    assert_eq!(got, "b", "{when}");
    eventually(
        Duration::from_secs(60),
        &format!("{when}: a reaches the Service by name"),
        || {
            c.fetch_from("a", "http://web/hostname")
                .filter(|s| s.starts_with("web-"))
        },
    );
    c.api
        .apply(&workloads::netexec_pod(fresh, "n2", image))
        .expect("new pod");
    let ip = eventually(
        Duration::from_secs(90),
        &format!("{when}: {fresh} running"),
        || c.running_pod_ip(fresh),
    );
    let cidr = c
        .kubectl(&["get", "node", "n2", "-o", "jsonpath={.spec.podCIDR}"])
        .expect("cidr");
    let prefix = cidr.rsplit_once('.').map(|(p, _)| p).unwrap_or("?");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "{when}: {ip} outside {cidr}"
    );
    let got = eventually(
        Duration::from_secs(30),
        &format!("{when}: a reaches {fresh}"),
        || c.fetch_from("a", &format!("http://{ip}:8080/hostname")),
    );
    assert_eq!(got, fresh, "{when}");
}

#[test]
fn a_live_cluster_swaps_from_flannel_and_kube_proxy_to_weft_and_back() {
    let archive = std::env::var_os("WEFT_IMAGE").expect(
        "WEFT_IMAGE: weft's image archive (scripts/test.sh builds it with scripts/image.sh)",
    );
    let opts = ClusterOptions {
        network: Network::Upstream,
        ..ClusterOptions::default()
    };
    let mut c =
        KubeCluster::start("ksw", Path::new(env!("CARGO_BIN_EXE_weft")), &opts).expect("cluster");
    c.wait_ready(Duration::from_secs(180)).expect("ready");
    let image = c.images.agnhost.clone();
    c.api
        .apply(&workloads::netexec_pod("a", "n1", &image))
        .expect("a");
    c.api
        .apply(&workloads::netexec_pod("b", "n2", &image))
        .expect("b");
    c.netexec_service("web", &image, 2)
        .expect("a Deployment behind a Service");
    eventually(Duration::from_secs(90), "a running", || {
        c.running_pod_ip("a")
    });
    let b = eventually(Duration::from_secs(90), "b running", || {
        c.running_pod_ip("b")
    });
    everything_works(&mut c, &b, "c1", &image, "on flannel + kube-proxy");
    let before = leases(&c);

    // the swap: weft's image on every node, the old agent and proxy gone
    // (their DaemonSets deleted), weft's manifests applied
    for i in 0..c.nodes.len() {
        c.import_archive(i, Path::new(&archive)).expect("import");
        c.stop_node_network(i);
    }
    let manifests = c.weft_manifests(&opts);
    c.api.apply(&manifests).expect("apply dist/kubernetes");
    c.wait_weft_daemonsets(
        std::time::Instant::now() + Duration::from_secs(120),
        Duration::from_secs(120),
    )
    .expect("weft's DaemonSets ready");
    everything_works(&mut c, &b, "c2", &image, "after the swap to weft");
    assert_eq!(leases(&c), before, "the Nodes' leases changed in the swap");
    assert_eq!(c.running_pod_ip("b").as_deref(), Some(b.as_str()));

    // the rollback: weft's DaemonSets deleted, flanneld and kube-proxy back
    c.kubectl(&[
        "-n",
        "kube-flannel",
        "delete",
        "daemonset",
        "kube-flannel-ds",
        "--wait=true",
    ])
    .expect("delete weft agent");
    c.kubectl(&[
        "-n",
        "kube-system",
        "delete",
        "daemonset",
        "weft-proxy",
        "--wait=true",
    ])
    .expect("delete weft proxy");
    eventually(Duration::from_secs(60), "weft's pods gone", || {
        let pods = c
            .kubectl(&["get", "pods", "-A", "-l", "app=flannel", "-o", "name"])
            .unwrap_or_default();
        let proxies = c
            .kubectl(&[
                "get",
                "pods",
                "-A",
                "-l",
                "k8s-app=weft-proxy",
                "-o",
                "name",
            ])
            .unwrap_or_default();
        (pods.trim().is_empty() && proxies.trim().is_empty()).then_some(())
    });
    for i in 0..c.nodes.len() {
        c.start_node_network(i, &opts)
            .expect("flanneld and kube-proxy again");
    }
    everything_works(&mut c, &b, "c3", &image, "after the rollback");
    assert_eq!(
        leases(&c),
        before,
        "the Nodes' leases changed in the rollback"
    );
}

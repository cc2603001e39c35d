//! The swap an operator makes, on a live cluster, as
//! docs/replacing-flannel-and-kube-proxy.md tells it: a real cluster
//! networked by upstream flanneld v0.28.10 and kube-proxy v1.36.3, with
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

/// The image the manifests name, as containerd's CRI calls it, and the
/// tag the upgrade moves to.
const TAG: &str = concat!("weft:", env!("CARGO_PKG_VERSION"));
const FULL_IMAGE: &str = concat!("docker.io/library/weft:", env!("CARGO_PKG_VERSION"));
const NEXT_TAG: &str = "weft:0.0.0-upgrade";

/// weft's DaemonSets: namespace, (name, pod label selector).
const DAEMONSETS: [(&str, (&str, &str)); 2] = [
    ("kube-flannel", ("kube-flannel-ds", "app=flannel")),
    ("kube-system", ("weft-proxy", "k8s-app=weft-proxy")),
];

/// The guide's `kubectl rollout status` of both DaemonSets.
fn guide_rollout_status(c: &KubeCluster) {
    for (ns, (ds, _)) in DAEMONSETS {
        c.kubectl(&[
            "-n",
            ns,
            "rollout",
            "status",
            "daemonset",
            ds,
            "--timeout=180s",
        ])
        .unwrap_or_else(|e| panic!("rollout status {ns}/{ds}: {e:#}"));
    }
}

/// The guide's "Checking it": the old pod keeps its address, and
/// `weft status --ping` and `weft doctor` in the agent's pod are clean.
fn guide_checks(c: &KubeCluster, b: &str) {
    let pods = c
        .kubectl(&["get", "pods", "-A", "-o", "wide"])
        .expect("pods");
    assert!(pods.contains(b), "{pods}");
    let in_agent = |args: &[&str]| {
        let mut all = vec![
            "-n",
            "kube-flannel",
            "exec",
            "ds/kube-flannel-ds",
            "-c",
            "kube-flannel",
            "--",
        ];
        all.extend(args);
        c.kubectl(&all)
    };
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let last = match in_agent(&["weft", "status", "--kube-subnet-mgr", "--ping"]) {
            Ok(s) => s,
            Err(e) => format!("{e:#}"),
        };
        let unreachable = last.split_whitespace().any(|w| w == "NO");
        if last.contains("data path: in sync") && !unreachable {
            break last;
        }
        assert!(
            std::time::Instant::now() < end,
            "weft status --ping:\n{last}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(status.contains("<- this host"), "{status}");
    // exit code 1 is warnings (e.g. vxlan checksum offload on this
    // kernel), 2 failures
    let doctor = match in_agent(&["weft", "doctor", "--kube-subnet-mgr"]) {
        Ok(s) => s,
        Err(e) => format!("{e:#}"),
    };
    assert!(!doctor.contains("exit code 2"), "{doctor}");
    assert!(!doctor.contains("[FAIL]"), "{doctor}");
    assert!(doctor.contains("[ok] kubernetes"), "{doctor}");
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
    c.netexec_service("web", &image, 2)
        .expect("a Deployment behind a Service");
    let (_, b) = c
        .netexec_pair(&image, Duration::from_secs(90))
        .expect("pods a and b running");
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
    guide_rollout_status(&c);
    everything_works(&mut c, &b, "c2", &image, "after the swap to weft");
    assert_eq!(leases(&c), before, "the Nodes' leases changed in the swap");
    assert_eq!(c.running_pod_ip("b").as_deref(), Some(b.as_str()));
    guide_checks(&c, &b);

    // the guide's upgrade: a new tag on every node, both manifests
    // applied with it, the DaemonSets roll node by node
    for i in 0..c.nodes.len() {
        c.tag_image(i, FULL_IMAGE, &FULL_IMAGE.replace(TAG, NEXT_TAG))
            .expect("the new tag");
    }
    let upgraded = manifests.replace(TAG, NEXT_TAG);
    assert_ne!(upgraded, manifests, "the manifests name {TAG}");
    c.api.apply(&upgraded).expect("apply the new tag");
    guide_rollout_status(&c);
    for (ns, (ds, selector)) in DAEMONSETS {
        eventually(
            Duration::from_secs(60),
            &format!("{ns}/{ds}'s pods all on {NEXT_TAG}"),
            || {
                let images = c
                    .kubectl(&[
                        "-n",
                        ns,
                        "get",
                        "pods",
                        "-l",
                        selector,
                        "-o",
                        "jsonpath={..image}",
                    ])
                    .ok()?;
                (images.contains(NEXT_TAG) && !images.contains(TAG)).then_some(())
            },
        );
    }
    everything_works(&mut c, &b, "c4", &image, "after the upgrade");
    assert_eq!(
        leases(&c),
        before,
        "the Nodes' leases changed in the upgrade"
    );
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

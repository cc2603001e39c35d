//! A real Kubernetes cluster networked only by weft: kube-apiserver,
//! kube-controller-manager and kube-scheduler, and on two nodes (each its
//! own network and mount namespaces) containerd 2.x + runc and the
//! kubelet, which call weft's CNI plugin for every pod; weft's agent in
//! Kubernetes mode and weft's proxy instead of kube-proxy, run as
//! dist/kubernetes's DaemonSets from weft's image (scripts/image.sh). Pods are
//! scheduled by the scheduler, get addresses from their Node's pod range,
//! reach each other across nodes and reach a Service as the seed
//! article's `kubectl expose` makes it, by its address and by its name
//! through the cluster's DNS (CoreDNS, itself reached through weft proxy).

use std::path::Path;
use std::time::Duration;

use weft_lab::eventually;
use weft_lab::kube_cluster::{ClusterOptions, KubeCluster, Network};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn pods_and_services_work(mode: &str, tag: &str) {
    // weft as shipped: dist/kubernetes's DaemonSets from its image
    let image = std::env::var_os("WEFT_IMAGE").expect(
        "WEFT_IMAGE: weft's image archive (scripts/test.sh builds it with scripts/image.sh)",
    );
    let opts = ClusterOptions {
        proxy_mode: mode.into(),
        network: Network::WeftDaemonSets(image.into()),
        ..ClusterOptions::default()
    };
    let mut c = KubeCluster::start(tag, Path::new(WEFT), &opts).expect("cluster");
    c.wait_ready(Duration::from_secs(120)).expect("nodes ready");
    // each node is a machine of its own name (host-network pods see it)
    let hostname = c.nodes[0].run("hostname", &[]).expect("hostname");
    assert_eq!(hostname.trim(), "n1");
    let image = c.images.agnhost.clone();
    let (a, b) = c
        .netexec_pair(&image, Duration::from_secs(120))
        .expect("pods a and b running");
    // each pod's address is in its Node's pod range
    for (pod, node, ip) in [("a", "n1", &a), ("b", "n2", &b)] {
        let cidr = c
            .kubectl(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"])
            .expect("pod cidr");
        let prefix = cidr.rsplit_once('.').map(|(p, _)| p).unwrap_or("?");
        assert!(
            ip.starts_with(&format!("{prefix}.")),
            "pod {pod} has {ip}, outside {node}'s {cidr}"
        );
    }
    // pod to pod across nodes (vxlan), by address
    let got = eventually(Duration::from_secs(30), "a reaches b", || {
        c.fetch_from("a", &format!("http://{b}:8080/hostname"))
    });
    assert_eq!(got, "b");
    // a Deployment behind a Service as `kubectl expose` makes it, through
    // weft proxy: by address, then by name through CoreDNS
    c.netexec_service("web", &image, 2)
        .expect("a Deployment behind a Service");
    let vip = c
        .kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .expect("cluster ip");
    let is_web = |s: Option<String>| s.filter(|s| s.starts_with("web-"));
    eventually(Duration::from_secs(60), "a reaches the Service", || {
        is_web(c.fetch_from("a", &format!("http://{vip}/hostname")))
    });
    for name in ["web", "web.default.svc.cluster.local"] {
        eventually(
            Duration::from_secs(30),
            "a reaches the Service by name",
            || is_web(c.fetch_from("a", &format!("http://{name}/hostname"))),
        );
    }

    // nothing left behind: processes, cgroups, namespaces
    let prefix = c.lab.prefix.clone();
    let kubelets: Vec<u32> = c.nodes.iter().filter_map(|n| n.pid("kubelet")).collect();
    assert_eq!(kubelets.len(), 2);
    drop(c);
    for pid in kubelets {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "kubelet {pid} still runs"
        );
    }
    for node in ["n1", "n2"] {
        let cg = format!("/sys/fs/cgroup/pids/{prefix}-{node}");
        assert!(!Path::new(&cg).exists(), "{cg} left behind");
        let ns = format!("/run/netns/{prefix}-{node}");
        assert!(!Path::new(&ns).exists(), "{ns} left behind");
    }
}

#[test]
fn pods_reach_each_other_and_services_on_a_real_cluster_in_nftables_mode() {
    pods_and_services_work("nftables", "kcn");
}

#[test]
fn pods_reach_each_other_and_services_on_a_real_cluster_in_iptables_mode() {
    pods_and_services_work("iptables", "kci");
}

/// `weft demo --kubernetes` (built with the kubernetes-demo feature, as
/// scripts/test.sh and scripts/demo.sh build it): the article's nginx
/// Deployment behind a NodePort Service on a real cluster, then nothing
/// left behind.
#[test]
fn the_kubernetes_demo_serves_nginx_through_weft_and_leaves_nothing() {
    let out = std::process::Command::new(WEFT)
        .args(["demo", "--kubernetes", "--hosts", "2"])
        .output()
        .expect("demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "(from outside the nodes) -> Welcome to nginx!",
        "(on n1) -> Welcome to nginx!",
        "example-service.default.svc.cluster.local/ -> Welcome to nginx!",
        "[demo] OK: pods, the NodePort, the cluster IP and the cluster DNS work on weft",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    let prefix = text
        .split("(lab ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the demo names its lab");
    let listed = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip")
            .stdout,
    )
    .into_owned();
    assert!(!listed.contains(prefix), "{prefix} left behind: {listed}");
    let cg = format!("/sys/fs/cgroup/pids/{prefix}-n1");
    assert!(!Path::new(&cg).exists(), "{cg} left behind");
}

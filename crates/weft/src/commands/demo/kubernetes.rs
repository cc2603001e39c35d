//! `weft demo --kubernetes`: the seed article's Kubernetes part on a real
//! cluster whose only network is weft. The lab's cluster (kube-apiserver,
//! controller-manager, scheduler; on each node containerd, runc and the
//! kubelet calling weft's CNI plugin; weft's agent in Kubernetes mode and
//! weft proxy instead of kube-flannel and kube-proxy; CoreDNS), then the
//! article's steps: nginx pods, `kubectl expose … --type=NodePort --name=
//! example-service`, the page through the NodePort on every node, through
//! the cluster IP from a node, and by name from a pod. Then everything is
//! torn down by PID.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_lab::kube_cluster::{ClusterOptions, KubeCluster};

const NGINX: &str = "registry.k8s.io/e2e-test-images/nginx:1.15-4";

pub fn tour(nodes: u8) -> Result<()> {
    let started = Instant::now();
    let weft = std::env::current_exe().context("locating the weft binary")?;
    println!("[demo] building the images and starting a {nodes}-node Kubernetes cluster in network namespaces");
    let opts = ClusterOptions {
        nodes: nodes.into(),
        ..ClusterOptions::default()
    };
    let mut c = KubeCluster::start("wkdemo", &weft, &opts)?;
    c.wait_ready(Duration::from_secs(180))?;
    println!(
        "[demo] cluster ready in {:.1} s (lab {})",
        started.elapsed().as_secs_f64(),
        c.lab.prefix
    );
    show(&c, "kubectl get nodes", &["get", "nodes", "-o", "custom-columns=NODE:.metadata.name,ADDRESS:.status.addresses[0].address,POD-RANGE:.spec.podCIDR,READY:.status.conditions[?(@.type==\"Ready\")].status"])?;

    // the article: kubectl run nginx --replicas=2 --labels=run=load-balancer-example
    c.kubectl(&[
        "create",
        "deployment",
        "nginx",
        &format!("--image={NGINX}"),
        &format!("--replicas={nodes}"),
        "--port=80",
    ])?;
    c.kubectl(&[
        "expose",
        "deployment",
        "nginx",
        "--type=NodePort",
        "--name=example-service",
    ])?;
    println!("[demo] kubectl create deployment nginx --replicas={nodes} --port=80; kubectl expose deployment nginx --type=NodePort --name=example-service");
    wait_available(&c, "nginx", Duration::from_secs(120))?;
    show(
        &c,
        "kubectl get pods -o wide",
        &["get", "pods", "-o", "wide"],
    )?;
    show(
        &c,
        "kubectl describe svc example-service",
        &["describe", "svc", "example-service"],
    )?;

    let port = c.kubectl(&[
        "get",
        "svc",
        "example-service",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])?;
    let vip = c.kubectl(&[
        "get",
        "svc",
        "example-service",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    for n in &c.nodes {
        let url = format!("http://{}:{port}/", n.host.ip);
        let title = fetch_title(&c.api.host.ns, &url)?;
        println!("[demo] curl {url} (from outside the nodes) -> {title}");
    }
    let node = &c.nodes[0];
    let url = format!("http://{vip}/");
    let title = title_of(&node.run("curl", &["-s", "-m", "5", &url])?)?;
    println!("[demo] curl {url} (on {}) -> {title}", node.name());

    // by name, from a pod, through CoreDNS (itself behind weft proxy)
    let client = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  containers:\n  - name: c\n    image: {}\n    imagePullPolicy: Never\n",
        c.images.agnhost
    );
    c.api.apply(&client)?;
    wait_running(&c, "client", Duration::from_secs(60))?;
    let page = c.kubectl(&[
        "exec",
        "client",
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "http://example-service.default.svc.cluster.local/",
    ])?;
    println!(
        "[demo] kubectl exec client -- curl http://example-service.default.svc.cluster.local/ -> {}",
        title_of(&page)?
    );
    let kubeconfig = c.api.admin_kubeconfig()?;
    let status = node.run(
        &weft.display().to_string(),
        &[
            "status",
            "--kube-subnet-mgr",
            &format!("--kubeconfig-file={}", kubeconfig.display()),
            "--iface",
            "eth0",
            "--ping",
        ],
    )?;
    println!("[demo] weft status (on {}):", node.name());
    for line in status.lines() {
        println!("         {line}");
    }
    println!(
        "[demo] OK: pods, the NodePort, the cluster IP and the cluster DNS work on weft ({:.1} s); tearing down",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn show(c: &KubeCluster, what: &str, args: &[&str]) -> Result<()> {
    println!("[demo] {what}:");
    for line in c.kubectl(args)?.lines() {
        println!("         {line}");
    }
    Ok(())
}

/// curl from the control plane's namespace (outside every node).
fn fetch_title(ns: &str, url: &str) -> Result<String> {
    let out = weft_lab::sh("ip", &["netns", "exec", ns, "curl", "-s", "-m", "5", url])?;
    title_of(&String::from_utf8_lossy(&out.stdout))
}

fn title_of(page: &str) -> Result<String> {
    let start = page.find("<title>").map(|i| i + "<title>".len());
    let end = page.find("</title>");
    match (start, end) {
        (Some(s), Some(e)) if s <= e => Ok(page[s..e].to_string()),
        _ => bail!(
            "no nginx page: {:?}",
            page.chars().take(120).collect::<String>()
        ),
    }
}

fn wait_available(c: &KubeCluster, deployment: &str, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let out = c.kubectl(&[
            "get",
            "deployment",
            deployment,
            "-o",
            "jsonpath={.spec.replicas} {.status.availableReplicas}",
        ])?;
        let mut it = out.split_whitespace();
        if let (Some(a), Some(b)) = (it.next(), it.next()) {
            if a == b {
                return Ok(());
            }
        }
        if Instant::now() > end {
            bail!("deployment {deployment} not available after {timeout:?} ({out})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_running(c: &KubeCluster, pod: &str, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let phase = c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])?;
        if phase == "Running" {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("pod {pod} not running after {timeout:?} (phase {phase:?})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

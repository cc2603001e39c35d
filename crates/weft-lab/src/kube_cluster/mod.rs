//! A real Kubernetes cluster in the lab whose only network is weft: the
//! pinned kube-apiserver, kube-controller-manager (allocating each Node's
//! pod range from net-conf's Network, as flannel needs) and
//! kube-scheduler on a control-plane host, and on each node (its own
//! network and mount namespaces, see [`node`]) containerd 2.x with runc,
//! the kubelet, weft's agent in Kubernetes mode and weft's proxy in
//! place of kube-proxy. weft is installed as the DaemonSets' init
//! containers install it (the CNI plugin as `/opt/cni/bin/flannel`, the
//! conflist from the manifest's ConfigMap) and runs with the manifests'
//! own RBAC (dist/kubernetes). Images are built here and imported into
//! each node's containerd. Everything stops by PID when the cluster is
//! dropped.

pub mod config;
pub mod images;
pub mod network;
pub mod node;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kubernetes::{ApiServer, SERVICE_CIDR};
use crate::lab::Lab;
use crate::process::Proc;
use crate::upstream::upstream_cluster;
pub use images::LabImages;
pub use network::{Network, NetworkPrograms};
pub use node::KubeNode;

/// The pod network (net-conf's Network, the controller-manager's
/// --cluster-cidr).
pub const POD_NETWORK: &str = "172.30.0.0/16";
const FLANNEL_MANIFEST: &str = include_str!("../../../../dist/kubernetes/weft-flannel.yml");
const PROXY_MANIFEST: &str = include_str!("../../../../dist/kubernetes/weft-proxy.yml");
const COREDNS_MANIFEST: &str = include_str!("coredns.yml");

/// How the cluster is made.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// weft proxy's --proxy-mode (iptables or nftables).
    pub proxy_mode: String,
    /// net-conf's Backend.Type.
    pub backend: String,
    /// weft, or flanneld + kube-proxy (the conformance run's control).
    pub network: Network,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 2,
            proxy_mode: "iptables".into(),
            backend: "vxlan".into(),
            network: Network::Weft,
        }
    }
}

/// A running cluster. Fields drop in order: nodes, then the control
/// plane, then the lab (etcd, namespaces, folder).
pub struct KubeCluster {
    pub nodes: Vec<KubeNode>,
    control: Vec<Proc>,
    pub api: ApiServer,
    pub images: LabImages,
    /// None: the network's DaemonSets start it.
    network: Option<NetworkPrograms>,
    /// Set by whoever wants the waits to give up (a signal).
    abort: Arc<AtomicBool>,
    daemonset_image: Option<PathBuf>,
    /// The pinned cluster programs (kubelet, containerd, …).
    pub bin: PathBuf,
    pub lab: Lab,
}

impl KubeCluster {
    /// Starts a cluster named after `tag` whose nodes run `weft`.
    pub fn start(tag: &str, weft: &Path, opts: &ClusterOptions) -> Result<KubeCluster> {
        let bin = upstream_cluster()?;
        // nodes run it from their own mount namespace: an absolute path
        let weft = std::fs::canonicalize(weft)
            .with_context(|| format!("the weft binary {}", weft.display()))?;
        let mut lab = Lab::new(tag, &weft)?;
        lab.start_etcd()?;
        let cp = lab.etcd_host(0)?;
        let api = lab.start_apiserver(&cp)?;
        let images = images::build(&bin, &lab.dir().join("images"))?;
        let network = NetworkPrograms::find(&opts.network, &weft, &api.bin)?;
        let daemonset_image = opts.network.image().map(Path::to_path_buf);
        let mut cluster = KubeCluster {
            nodes: Vec::new(),
            control: Vec::new(),
            api,
            images,
            network,
            daemonset_image,
            abort: Arc::default(),
            bin,
            lab,
        };
        cluster
            .start_control_plane()
            .context("starting the control plane")?;
        cluster.apply_weft_manifests(opts)?;
        cluster
            .api
            .apply(
                &COREDNS_MANIFEST
                    .replace("CLUSTER_DNS", config::CLUSTER_DNS)
                    .replace("COREDNS_IMAGE", images::COREDNS_IMAGE),
            )
            .context("applying the CoreDNS manifest")?;
        for i in 0..opts.nodes {
            let name = format!("n{}", i + 1);
            let node = KubeNode::create(&mut cluster.lab, &name, 21 + i as u8)
                .with_context(|| format!("creating node {name}"))?;
            // a machine has a default route (here to the control-plane
            // host, which forwards nothing): a node's own connections to
            // a Service address need a route before weft proxy's DNAT
            crate::netns::sh(
                "ip",
                &[
                    "-n",
                    &node.host.ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &cluster.api.host.ip.to_string(),
                ],
            )
            .with_context(|| format!("node {name}: default route"))?;
            cluster.nodes.push(node);
            cluster
                .start_node(i, opts)
                .with_context(|| format!("starting node {name}"))?;
        }
        Ok(cluster)
    }

    fn start_control_plane(&mut self) -> Result<()> {
        let api = &self.api;
        let cm = api.kubeconfig("system:kube-controller-manager", &[])?;
        let sched = api.kubeconfig("system:kube-scheduler", &[])?;
        let f = |p: PathBuf| p.display().to_string();
        let cm_args: Vec<String> = vec![
            format!("--kubeconfig={}", f(cm.clone())),
            format!("--authentication-kubeconfig={}", f(cm.clone())),
            format!("--authorization-kubeconfig={}", f(cm)),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={POD_NETWORK}"),
            "--node-cidr-mask-size=24".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!(
                "--service-account-private-key-file={}",
                f(api.file("sa.key"))
            ),
            format!("--root-ca-file={}", f(api.file("ca.pem"))),
            format!("--cluster-signing-cert-file={}", f(api.file("ca.pem"))),
            format!("--cluster-signing-key-file={}", f(api.file("ca.key"))),
            "--use-service-account-credentials=true".into(),
            "--configure-cloud-routes=false".into(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ];
        let sched_args: Vec<String> = vec![
            format!("--kubeconfig={}", f(sched.clone())),
            format!("--authentication-kubeconfig={}", f(sched.clone())),
            format!("--authorization-kubeconfig={}", f(sched)),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ];
        let dir = self.lab.dir().join("kubernetes");
        for (name, args) in [
            ("kube-controller-manager", cm_args),
            ("kube-scheduler", sched_args),
        ] {
            let program = self.bin.join(name).display().to_string();
            let p = Proc::spawn(
                &self.api.host.ns,
                name,
                dir.join(format!("{name}.log")),
                &program,
                &args,
                &[],
            )?;
            self.control.push(p);
        }
        Ok(())
    }

    /// dist/kubernetes's manifests, as an operator applies them: their
    /// DaemonSets too when weft runs from its image; else their RBAC and
    /// ConfigMaps, and weft runs on the nodes as the init containers would
    /// install it.
    fn apply_weft_manifests(&self, opts: &ClusterOptions) -> Result<()> {
        let text = network::weft_manifests(
            &[FLANNEL_MANIFEST, PROXY_MANIFEST],
            &opts.backend,
            &opts.proxy_mode,
            &self.api.url,
            self.daemonset_image.is_some(),
        );
        self.api
            .apply(&text)
            .context("applying dist/kubernetes manifests")?;
        Ok(())
    }

    /// One key of the kube-flannel ConfigMap, as the cluster holds it.
    fn flannel_config(&self, key: &str) -> Result<String> {
        let path = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
        self.api.kubectl(&[
            "-n",
            "kube-flannel",
            "get",
            "configmap",
            "kube-flannel-cfg",
            "-o",
            &path,
        ])
    }

    fn start_node(&mut self, i: usize, opts: &ClusterOptions) -> Result<()> {
        self.install_cni(i)?;
        self.start_containerd(i)?;
        self.import_images(i)?;
        self.start_kubelet(i)?;
        self.start_network(i, opts)
    }

    /// The reference plugins flannel's chains (a node's packages); unless
    /// the DaemonSet's init containers do it, also what they do: the
    /// plugin binary and the conflist.
    fn install_cni(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let bin_dir = node.path("/opt/cni/bin");
        for p in ["bridge", "host-local", "portmap", "loopback"] {
            std::fs::copy(self.bin.join(p), bin_dir.join(p))
                .with_context(|| format!("installing CNI plugin {p}"))?;
        }
        let Some(network) = &self.network else {
            return Ok(());
        };
        std::fs::copy(&network.cni_plugin, bin_dir.join("flannel"))
            .context("installing the CNI plugin")?;
        let mut conflist = self.flannel_config("cni-conf.json")?;
        if let Some(v) = network.cni_version {
            conflist = conflist.replace(
                "\"cniVersion\": \"1.0.0\"",
                &format!("\"cniVersion\": \"{v}\""),
            );
        }
        std::fs::write(node.path("/etc/cni/net.d/10-flannel.conflist"), conflist)?;
        let net_conf = self.flannel_config("net-conf.json")?;
        std::fs::create_dir_all(node.path("/etc/kube-flannel"))?;
        std::fs::write(node.path("/etc/kube-flannel/net-conf.json"), net_conf)?;
        Ok(())
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("containerd.sock")
    }

    fn start_containerd(&mut self, i: usize) -> Result<()> {
        let sock = self.socket(i);
        let node = &mut self.nodes[i];
        let dir = node.dir.join("containerd");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("config.toml");
        std::fs::write(
            &conf,
            config::containerd_toml(
                &dir,
                &sock,
                &self.bin.join("runc"),
                &self.images.pause,
                !config::may_lower_oom_scores(),
            ),
        )?;
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let program = self.bin.join("containerd").display().to_string();
        node.spawn(
            "containerd",
            &program,
            &[format!("--config={}", conf.display())],
            &[("PATH".into(), path)],
        )?;
        let end = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            node.check_running()?;
            if Instant::now() > end {
                bail!("containerd on {} did not listen in 30 s", node.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn import_images(&self, i: usize) -> Result<()> {
        self.import_archive(i, &self.images.archive)
            .with_context(|| format!("the lab's images ({})", self.images.names.join(", ")))?;
        if let Some(image) = &self.daemonset_image {
            self.import_archive(i, image).context("weft's image")?;
        }
        Ok(())
    }

    fn start_kubelet(&mut self, i: usize) -> Result<()> {
        let sock = self.socket(i);
        let name = self.nodes[i].name().to_string();
        let kubeconfig = self
            .api
            .kubeconfig(&format!("system:node:{name}"), &["system:nodes"])?;
        let node = &mut self.nodes[i];
        let resolv = node.dir.join("resolv.conf");
        std::fs::write(&resolv, "nameserver 192.0.2.53\n")?;
        let yaml = config::kubelet_yaml(&config::KubeletSetup {
            node_ip: node.host.ip,
            runtime_socket: &sock,
            client_ca: &self.api.file("ca.pem"),
            cgroup_root: &node.cgroup_root,
            resolv_conf: &resolv,
        });
        let conf = node.dir.join("kubelet.yaml");
        std::fs::write(&conf, yaml)?;
        let program = self.bin.join("kubelet").display().to_string();
        let args = vec![
            format!("--config={}", conf.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", node.dir.join("kubelet").display()),
            format!("--hostname-override={name}"),
            format!("--node-ip={}", node.host.ip),
            "--v=1".into(),
        ];
        node.spawn("kubelet", &program, &args, &[])
    }

    /// The network's agent (flannel's kube mode) and proxy on the node,
    /// with the identities and flags of the manifests' DaemonSets.
    fn start_network(&mut self, i: usize, opts: &ClusterOptions) -> Result<()> {
        let Some(network) = &self.network else {
            return Ok(());
        };
        let agent_kc = self
            .api
            .kubeconfig(network.agent.user, network.agent.groups)?;
        let proxy_kc = self
            .api
            .kubeconfig(network.proxy.user, network.proxy.groups)?;
        let node = &mut self.nodes[i];
        let name = node.name().to_string();
        let agent = &network.agent;
        let args = [
            "--ip-masq".to_string(),
            "--kube-subnet-mgr".into(),
            format!("--kubeconfig-file={}", agent_kc.display()),
            "--net-config-path=/etc/kube-flannel/net-conf.json".into(),
            "--iface=eth0".into(),
        ];
        node.spawn(
            agent.name,
            &agent.path.display().to_string(),
            &[&agent.leading_args[..], &args, &agent.extra_args].concat(),
            &[("NODE_NAME".into(), name.clone())],
        )?;
        let proxy = &network.proxy;
        let args = [
            format!("--kubeconfig={}", proxy_kc.display()),
            format!("--hostname-override={name}"),
            format!("--cluster-cidr={POD_NETWORK}"),
            format!("--proxy-mode={}", opts.proxy_mode),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            "--healthz-bind-address=0.0.0.0:10256".into(),
        ];
        node.spawn(
            proxy.name,
            &proxy.path.display().to_string(),
            &[&proxy.leading_args[..], &args, &proxy.extra_args].concat(),
            &[],
        )
    }

    /// A flag that, once set, makes the waits give up.
    pub fn abort_flag(&self) -> Arc<AtomicBool> {
        self.abort.clone()
    }

    /// Fails when a node's program died or the waits were told to give up.
    fn check_alive(&mut self) -> Result<()> {
        if self.abort.load(Ordering::Relaxed) {
            bail!("stopped while waiting for the cluster");
        }
        for n in &mut self.nodes {
            n.check_running()?;
        }
        Ok(())
    }

    /// What deleting the network's DaemonSets does on node `i`: its agent
    /// and proxy stop (node processes; a DaemonSet-run weft is deleted
    /// with kubectl). Devices, routes, rules and files stay, as they do.
    pub fn stop_node_network(&mut self, i: usize) {
        if let Some(n) = &self.network {
            let (agent, proxy) = (n.agent.name, n.proxy.name);
            self.nodes[i].stop_program(agent);
            self.nodes[i].stop_program(proxy);
        }
    }

    /// Starts the network's agent and proxy on node `i` again.
    pub fn start_node_network(&mut self, i: usize, opts: &ClusterOptions) -> Result<()> {
        self.start_network(i, opts)
    }

    /// `ctr -n k8s.io images import FILE` on node `i` (what an operator
    /// does with weft's image on each node).
    pub fn import_archive(&self, i: usize, archive: &Path) -> Result<()> {
        let ctr = self.bin.join("ctr").display().to_string();
        let address = format!("--address={}", self.socket(i).display());
        self.nodes[i]
            .run(
                &ctr,
                &[
                    &address,
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    &archive.display().to_string(),
                ],
            )
            .with_context(|| format!("importing {}", archive.display()))?;
        Ok(())
    }

    /// `ctr -n k8s.io images tag FROM TO` on node `i` (an upgrade's new
    /// tag, without a second build).
    pub fn tag_image(&self, i: usize, from: &str, to: &str) -> Result<()> {
        let ctr = self.bin.join("ctr").display().to_string();
        let address = format!("--address={}", self.socket(i).display());
        self.nodes[i]
            .run(
                &ctr,
                &[&address, "--namespace=k8s.io", "images", "tag", from, to],
            )
            .with_context(|| format!("tagging {from} as {to}"))?;
        Ok(())
    }

    /// dist/kubernetes's manifests with their DaemonSets, as an operator
    /// applies them (the lab's addresses filled in).
    pub fn weft_manifests(&self, opts: &ClusterOptions) -> String {
        network::weft_manifests(
            &[FLANNEL_MANIFEST, PROXY_MANIFEST],
            &opts.backend,
            &opts.proxy_mode,
            &self.api.url,
            true,
        )
    }

    /// Runs kubectl as the administrator; stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.api.kubectl(args)
    }

    /// Waits until every node is Ready (its runtime, CNI config and
    /// network up) and the cluster DNS answers; fails with the first dead
    /// program's log.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        self.wait_nodes(end, timeout)?;
        self.route_pod_ranges()?;
        if self.daemonset_image.is_some() {
            self.wait_weft_daemonsets(end, timeout)?;
        }
        self.wait_dns(end, timeout)
    }

    /// Waits until weft's two DaemonSets have a ready pod on every node.
    pub fn wait_weft_daemonsets(&mut self, end: Instant, timeout: Duration) -> Result<()> {
        for (ns, ds) in [
            ("kube-flannel", "kube-flannel-ds"),
            ("kube-system", "weft-proxy"),
        ] {
            self.wait_daemonset(ns, ds, end, timeout)?;
        }
        Ok(())
    }

    /// Waits until DaemonSet `ns/name` has a ready pod on every node.
    fn wait_daemonset(
        &mut self,
        ns: &str,
        name: &str,
        end: Instant,
        timeout: Duration,
    ) -> Result<()> {
        loop {
            let out = self
                .kubectl(&[
                    "-n",
                    ns,
                    "get",
                    "daemonset",
                    name,
                    "-o",
                    "jsonpath={.status.numberReady}",
                ])
                .unwrap_or_default();
            if out.trim() == self.nodes.len().to_string() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > end {
                let pods = self
                    .kubectl(&["-n", ns, "get", "pods", "-o", "wide"])
                    .unwrap_or_default();
                let logs = self
                    .kubectl(&["-n", ns, "logs", &format!("daemonset/{name}"), "--tail=10"])
                    .unwrap_or_default();
                bail!("DaemonSet {ns}/{name}: {out:?} of {} pods ready after {timeout:?}:\n{pods}\n{logs}", self.nodes.len());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The control-plane host is no Node (no kubelet, no agent), yet the
    /// API server dials pods (its service and pod proxy) and so does
    /// e2e.test: it reaches each Node's pod range through that Node, as
    /// a host-gw peer would.
    fn route_pod_ranges(&self) -> Result<()> {
        for n in &self.nodes {
            let cidr =
                self.kubectl(&["get", "node", n.name(), "-o", "jsonpath={.spec.podCIDR}"])?;
            let cidr: ipnet::Ipv4Net = cidr
                .trim()
                .parse()
                .with_context(|| format!("node {}: podCIDR {cidr:?}", n.name()))?;
            crate::netns::sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.api.host.ns,
                    "ip",
                    "route",
                    "replace",
                    &cidr.to_string(),
                    "via",
                    &n.host.ip.to_string(),
                ],
            )
            .with_context(|| format!("routing {cidr} via node {}", n.name()))?;
        }
        Ok(())
    }

    /// Waits until CoreDNS's Deployment has all its replicas available.
    fn wait_dns(&mut self, end: Instant, timeout: Duration) -> Result<()> {
        loop {
            let out = self
                .kubectl(&[
                    "-n",
                    "kube-system",
                    "get",
                    "deployment",
                    "coredns",
                    "-o",
                    "jsonpath={.spec.replicas} {.status.availableReplicas}",
                ])
                .unwrap_or_default();
            let mut it = out.split_whitespace();
            if let (Some(want), Some(have)) = (it.next(), it.next()) {
                if want == have {
                    return Ok(());
                }
            }
            self.check_alive()?;
            if Instant::now() > end {
                let pods = self
                    .kubectl(&["-n", "kube-system", "get", "pods", "-o", "wide"])
                    .unwrap_or_default();
                bail!("CoreDNS not available after {timeout:?} (available: {out:?}):\n{pods}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn wait_nodes(&mut self, end: Instant, timeout: Duration) -> Result<()> {
        let want = self.nodes.len();
        loop {
            let out = self
                .kubectl(&[
                    "get",
                    "nodes",
                    "-o",
                    r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
                ])
                .unwrap_or_default();
            if out.lines().filter(|l| l.trim() == "True").count() == want {
                return Ok(());
            }
            self.check_alive()?;
            for p in &mut self.control {
                if let Some(code) = p.exit_code() {
                    bail!(
                        "control plane: {} exited with {code} (log {}):\n{}",
                        p.name,
                        p.log.display(),
                        p.log_tail(20)
                    );
                }
            }
            if Instant::now() > end {
                let tails: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("{} kubelet:\n{}", n.name(), n.log_tail("kubelet", 15)))
                    .collect();
                bail!(
                    "{} of {want} nodes Ready after {timeout:?}:\n{}",
                    out.lines().filter(|l| l.trim() == "True").count(),
                    tails.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

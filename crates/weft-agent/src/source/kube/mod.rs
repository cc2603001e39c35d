//! Leases from the Kubernetes API (`-kube-subnet-mgr`), as the
//! kube-flannel DaemonSet's flanneld keeps them: no etcd; the network
//! config is a file (`-net-config-path`, the ConfigMap's `net-conf.json`);
//! this node's subnet is its Node's `spec.podCIDR(s)`, assigned by the
//! controller-manager; its lease attributes are annotations on its Node
//! ([`annotations`]), written with one patch of the Node's status
//! ([`announce`]); the other hosts' leases are every Node carrying
//! `kube-subnet-manager: "true"` ([`watch`]).

mod announce;
pub mod node;
mod watch;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::sleep;
use weft_core::config::NetConfig;
use weft_core::kube_node::proto::{Node, NodeKind};
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::MacAddr;
use weft_kube::follow::{Collection, Signal};
use weft_kube::{is_not_found, words, FlagNames, Retry};

use self::node::LeaseNode;
use crate::network::Network;
use crate::options::KubeSourceOptions;
use weft_core::kube_node::annotations::{pod_cidrs, AnnotationNames};

/// The agent's flags for the connection, in error messages.
const FLAGS: FlagNames = FlagNames {
    kubeconfig: "-kubeconfig-file",
    url: "-kube-api-url",
    alternative: "",
};

/// Every Node, listed then watched in protobuf.
fn follow_nodes(client: Client) -> mpsc::Receiver<Signal<Node>> {
    let nodes = Collection {
        path: "/api/v1/nodes",
        what: "Nodes",
        labels: "",
    };
    weft_kube::follow::spawn::<NodeKind>(client, nodes)
}

pub struct KubeSource {
    nodes: Api<LeaseNode>,
    /// Every Node, followed from the moment the source opens: the list is
    /// on its way while the data path is set up.
    events: Option<mpsc::Receiver<Signal<Node>>>,
    /// This host's Node.
    name: String,
    names: AnnotationNames,
    net_config_path: PathBuf,
    set_network_unavailable: bool,
    /// This host's Node as last read.
    node: LeaseNode,
    /// The networks of the config (IPv4, IPv6): the families read, and
    /// where a peer's pod range must lie.
    networks: (Option<IpNet>, Option<IpNet>),
    /// The attributes this node publishes, once its lease is known.
    published: Option<LeaseAttrs>,
    /// Nodes whose lease could not be read, each logged once.
    warned: HashSet<String>,
    /// Nodes left out because their pod range is taken, as told (once).
    told: HashSet<String>,
}

impl KubeSource {
    /// Connects, finds this host's Node name (`NODE_NAME`, else the Node
    /// of pod `POD_NAMESPACE/POD_NAME`) and reads the Node, waiting for it
    /// to exist.
    pub async fn open(options: &KubeSourceOptions) -> Result<KubeSource> {
        check_event_queue_depth(std::env::var("EVENT_QUEUE_DEPTH").ok().as_deref())?;
        let names = AnnotationNames::new(&options.annotation_prefix).map_err(|e| anyhow!(e))?;
        let client = weft_kube::client(
            options.kubeconfig.as_deref(),
            options.api_url.as_deref(),
            FLAGS,
        )
        .await?;
        let name = node_name(&client).await?;
        let nodes: Api<LeaseNode> = Api::all(client);
        let node = read_node(&nodes, &name).await?;
        let events = Some(follow_nodes(nodes.clone().into_client()));
        tracing::info!(node = %name, prefix = %options.annotation_prefix, "leases from the Kubernetes API (Node annotations)");
        Ok(KubeSource {
            nodes,
            events,
            name,
            names,
            net_config_path: options.net_config_path.clone(),
            set_network_unavailable: options.set_network_unavailable,
            node,
            networks: (None, None),
            published: None,
            warned: HashSet::new(),
            told: HashSet::new(),
        })
    }

    /// The network config file (`-net-config-path`); a missing or bad one
    /// is fatal, as for flanneld (the DaemonSet restarts the agent).
    pub fn network(&mut self) -> Result<Network> {
        let path = self.net_config_path.display();
        let text = std::fs::read_to_string(&self.net_config_path)
            .with_context(|| format!("-net-config-path {path}: reading the network config"))?;
        let config =
            NetConfig::parse(&text).map_err(|e| anyhow!("-net-config-path {path}: {e}"))?;
        let network =
            Network::from_config(config).map_err(|e| anyhow!("-net-config-path {path}: {e}"))?;
        let net = |p: &Option<weft_core::subnet::SubnetPool>| p.as_ref().map(|p| p.network());
        self.networks = (net(&network.pools.v4), net(&network.pools.v6));
        Ok(network)
    }

    pub fn stored_public_ips(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        self.names.stored_public_ips(&self.node.view())
    }

    pub fn previous_macs(&self) -> (Option<MacAddr>, Option<MacAddr>) {
        self.names.stored_macs(&self.node.view())
    }

    /// This node's subnets are its pod ranges: waits until the Node has
    /// them, checks they lie in the network, then publishes `attrs`.
    pub async fn acquire(&mut self, network: &Network, attrs: &LeaseAttrs) -> Result<LeaseKey> {
        let mut said = false;
        let key = loop {
            let (v4, v6) = pod_cidrs(&self.node.view()).map_err(|e| anyhow!(e))?;
            if v4.is_some() || v6.is_some() {
                break own_key(network, &self.name, v4, v6)?;
            }
            if !said {
                tracing::warn!(
                    "Node {} has no spec.podCIDR yet (the controller-manager assigns one with --allocate-node-cidrs); waiting",
                    self.name
                );
                said = true;
            }
            sleep(Duration::from_secs(1)).await;
            self.node = read_node(&self.nodes, &self.name).await?;
        };
        self.published = Some(attrs.clone());
        self.announce().await?;
        tracing::info!(node = %self.name, subnet = %key, "this Node's pod range is the lease");
        Ok(key)
    }
}

/// Every Node's lease, read as the agent reads them (for `weft status`
/// and `weft doctor`).
pub struct NodeLeases {
    /// (Node name, its lease), in the API server's order (by name).
    pub leases: Vec<(String, weft_core::lease::Lease)>,
    /// Nodes whose lease cannot be used, with why.
    pub left_out: Vec<String>,
    /// Nodes that publish no lease (no `kube-subnet-manager` annotation).
    pub without_lease: Vec<String>,
}

/// Lists the Nodes once and reads their leases under `prefix` for
/// `network`.
pub async fn list_leases(client: Client, prefix: &str, network: &Network) -> Result<NodeLeases> {
    let names = AnnotationNames::new(prefix).map_err(|e| anyhow!(e))?;
    let nodes: Api<LeaseNode> = Api::all(client);
    let list = nodes
        .list(&Default::default())
        .await
        .map_err(|e| anyhow!("listing the Nodes: {}", words(&e)))?;
    let net = |p: &Option<weft_core::subnet::SubnetPool>| p.as_ref().map(|p| p.network());
    let networks = (net(&network.pools.v4), net(&network.pools.v6));
    let mut out = NodeLeases {
        leases: Vec::new(),
        left_out: Vec::new(),
        without_lease: Vec::new(),
    };
    for n in list {
        match watch::node_lease(&names, networks, &n.view()) {
            Ok(Some(l)) => out.leases.push((n.name().to_string(), l)),
            Ok(None) => out.without_lease.push(n.name().to_string()),
            Err(e) => out.left_out.push(e),
        }
    }
    Ok(out)
}

/// The lease key of this node's pod ranges: one per family the network
/// enables, each inside that family's network.
fn own_key(
    network: &Network,
    node: &str,
    v4: Option<ipnet::Ipv4Net>,
    v6: Option<ipnet::Ipv6Net>,
) -> Result<LeaseKey> {
    let check = |pool: &Option<weft_core::subnet::SubnetPool>,
                 range: Option<IpNet>,
                 family: &str,
                 field: &str|
     -> Result<bool> {
        let Some(pool) = pool else { return Ok(false) };
        let Some(range) = range else {
            bail!("Node {node} has no {family} pod range in spec.podCIDRs, but the network config enables {family}");
        };
        if !pool.network().contains(&range) {
            bail!(
                "Node {node}'s pod range {range} is outside the network {} (field {field} of the network config); the controller-manager's --cluster-cidr must lie inside it",
                pool.network()
            );
        }
        Ok(true)
    };
    let key = LeaseKey {
        v4: if check(&network.pools.v4, v4.map(IpNet::V4), "IPv4", "Network")? {
            v4
        } else {
            None
        },
        v6: if check(&network.pools.v6, v6.map(IpNet::V6), "IPv6", "IPv6Network")? {
            v6
        } else {
            None
        },
    };
    if key.primary().is_none() {
        bail!("the network config enables neither IPv4 nor IPv6");
    }
    Ok(key)
}

/// kube-flannel's `EVENT_QUEUE_DEPTH`, checked as flanneld checks it (a
/// value that is not a whole number stops the agent). weft has no event
/// queue to size: its Node watch coalesces changes per Node.
fn check_event_queue_depth(value: Option<&str>) -> Result<()> {
    match value {
        Some(v) if !v.is_empty() && v.parse::<i64>().is_err() => {
            bail!("env EVENT_QUEUE_DEPTH={v}: not a whole number")
        }
        _ => Ok(()),
    }
}

/// `NODE_NAME`, else the Node that pod `POD_NAMESPACE/POD_NAME` runs on.
async fn node_name(client: &Client) -> Result<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(n) = env("NODE_NAME") {
        return Ok(n);
    }
    let (Some(pod), Some(ns)) = (env("POD_NAME"), env("POD_NAMESPACE")) else {
        bail!("-kube-subnet-mgr needs the node's name: set NODE_NAME, or POD_NAME and POD_NAMESPACE (the DaemonSet sets them from the downward API)");
    };
    for (var, value) in [("POD_NAMESPACE", &ns), ("POD_NAME", &pod)] {
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            bail!("{var} {value:?}: not a Kubernetes object name (lower-case letters, digits, '-', '.')");
        }
    }
    // only spec.nodeName is read: a Pod's full type is a large decoder
    #[derive(serde::Deserialize)]
    struct PodNode {
        spec: Option<PodNodeSpec>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PodNodeSpec {
        node_name: Option<String>,
    }
    let request = http::Request::get(format!("/api/v1/namespaces/{ns}/pods/{pod}"))
        .body(Vec::new())
        .map_err(|e| anyhow!("reading pod {ns}/{pod}: {e}"))?;
    let p: PodNode = client
        .request(request)
        .await
        .map_err(|e| anyhow!("reading pod {ns}/{pod} for its node name: {}", words(&e)))?;
    p.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("pod {ns}/{pod} has no spec.nodeName"))
}

/// Node `name`, retried while the API server is unreachable or busy
/// (5xx, 429) or the Node does not exist yet; other API errors
/// (forbidden, …) are fatal.
async fn read_node(nodes: &Api<LeaseNode>, name: &str) -> Result<LeaseNode> {
    let mut backoff = Retry::default();
    let mut said = String::new();
    loop {
        let problem = match nodes.get(name).await {
            Ok(n) => return Ok(n),
            Err(e) if is_not_found(&e) => format!("Node {name} does not exist yet"),
            Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
                bail!("reading Node {name}: {}", s.message)
            }
            Err(e) => format!("reading Node {name}: {}", words(&e)),
        };
        if problem != said {
            tracing::warn!("{problem}; retrying");
            said = problem;
        }
        sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> Network {
        Network::from_config(NetConfig::parse(json).expect("config")).expect("usable")
    }

    #[test]
    fn event_queue_depth_is_checked_as_flanneld_checks_it() {
        for ok in [None, Some(""), Some("5000"), Some("-1")] {
            assert!(check_event_queue_depth(ok).is_ok(), "{ok:?}");
        }
        let e = check_event_queue_depth(Some("lots")).expect_err("not a number");
        assert_eq!(
            e.to_string(),
            "env EVENT_QUEUE_DEPTH=lots: not a whole number"
        );
    }

    #[test]
    fn own_key_is_the_pod_range_inside_the_network() {
        let n = network(r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan"}}"#);
        let key =
            own_key(&n, "n1", Some("172.30.7.0/24".parse().expect("net")), None).expect("inside");
        assert_eq!(key.to_string(), "172.30.7.0-24");
        let e = own_key(&n, "n1", Some("10.244.7.0/24".parse().expect("net")), None)
            .expect_err("outside");
        let e = e.to_string();
        assert!(
            e.contains("10.244.7.0/24") && e.contains("172.30.0.0/16") && e.contains("Network"),
            "{e}"
        );
        // a v6 range on a v4-only network is simply not used
        let key = own_key(
            &n,
            "n1",
            Some("172.30.7.0/24".parse().expect("net")),
            Some("fd00::/64".parse().expect("v6")),
        )
        .expect("dual range, v4 network");
        assert_eq!(key.v6, None);
        let dual = network(
            r#"{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"host-gw"}}"#,
        );
        let e = own_key(
            &dual,
            "n1",
            Some("172.30.7.0/24".parse().expect("net")),
            None,
        )
        .expect_err("no v6 range");
        assert!(e.to_string().contains("IPv6"), "{e}");
    }
}

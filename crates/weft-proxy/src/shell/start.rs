//! What the proxy learns before its first sync: the source of Services
//! started, the pod networks (given, or flannel's from etcd) and this
//! node's addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use tokio::sync::mpsc;
use weft_etcd::connect;

use super::options::{NodeOptions, SourceOptions};
use super::source::{self, Change};
use super::store::Store;
use super::sync::HostSettings;

/// The running source and what was learnt of the host.
pub struct Started {
    pub changes: mpsc::Receiver<Change>,
    /// Pod networks (at most one per family is used).
    pub networks: Vec<IpNet>,
    pub host: HostSettings,
}

/// The node's addresses: `--bind-address`, else (Kubernetes source) its
/// Node's InternalIPs.
async fn node_ips(node: &NodeOptions, client: Option<&kube::Client>) -> Vec<IpAddr> {
    if let Some(ip) = node.ip.filter(|ip| !ip.is_unspecified()) {
        return vec![ip];
    }
    let Some(client) = client else {
        return Vec::new();
    };
    match source::kubernetes::node_addresses(client, &node.name).await {
        Ok(ips) => ips,
        Err(e) => {
            tracing::warn!("node {:?}: {e}; its address is unknown", node.name);
            Vec::new()
        }
    }
}

/// `--nodeport-addresses` resolved to this host's addresses.
fn node_port_ips(given: &[String], node_ips: &[IpAddr]) -> anyhow::Result<Option<Vec<IpAddr>>> {
    if given.is_empty() {
        return Ok(None);
    }
    let mut cidrs = Vec::new();
    let mut out = Vec::new();
    for g in given {
        if g == "primary" {
            out.extend(node_ips.iter().copied());
        } else {
            let net: IpNet = g.parse().map_err(|_| {
                anyhow::anyhow!("--nodeport-addresses {g:?}: expected CIDRs or \"primary\"")
            })?;
            cidrs.push(net);
        }
    }
    if !cidrs.is_empty() {
        let mut nl = weft_kernel::Netlink::open()?;
        for iface in weft_kernel::list_interfaces(&mut nl)? {
            for a in iface.addrs {
                if cidrs.iter().any(|c| c.contains(&a.addr())) && !out.contains(&a.addr()) {
                    out.push(a.addr());
                }
            }
        }
    }
    Ok(Some(out))
}

/// Reads the pod networks from flannel's config (`Network`, `IPv6Network`).
async fn flannel_networks(store: &Store, flannel_prefix: &str) -> Vec<IpNet> {
    let key = format!("{}/config", flannel_prefix.trim_end_matches('/'));
    let resp = match store.etcd().get(&key, None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}: off-cluster sources to cluster IPs are not masqueraded");
            return Vec::new();
        }
    };
    let Some(kv) = resp.kvs().first() else {
        tracing::warn!(
            "no flannel config at {key}: off-cluster sources to cluster IPs are not masqueraded"
        );
        return Vec::new();
    };
    match weft_core::config::NetConfig::parse(&String::from_utf8_lossy(kv.value())) {
        Ok(c) => [c.ipv4, c.ipv6]
            .iter()
            .flatten()
            .map(|p| p.network())
            .collect(),
        Err(e) => {
            tracing::warn!("flannel config at {key}: {e}");
            Vec::new()
        }
    }
}

/// Starts the source and learns the pod networks and the node's
/// addresses.
pub async fn start(source: &SourceOptions, node: &NodeOptions) -> anyhow::Result<Started> {
    let (tx, changes) = mpsc::channel(1024);
    let mut networks = node.cluster_cidr.clone();
    let ips;
    match source {
        SourceOptions::Etcd {
            etcd,
            prefix,
            flannel_prefix,
        } => {
            let store = Store::new(connect(etcd).await?, prefix);
            if networks.is_empty() {
                networks = flannel_networks(&store, flannel_prefix).await;
            }
            ips = node_ips(node, None).await;
            tokio::spawn(source::etcd::run(store, tx));
        }
        SourceOptions::Kubernetes { kubeconfig, master } => {
            let client =
                source::kubernetes::client(kubeconfig.as_deref(), master.as_deref()).await?;
            if networks.is_empty() {
                tracing::warn!(
                    "no --cluster-cidr: off-cluster sources to cluster IPs are not masqueraded"
                );
            }
            // the listings start first: they take longest
            tokio::spawn(source::kubernetes::run(client.clone(), tx));
            ips = node_ips(node, Some(&client)).await;
        }
    }
    let host = HostSettings {
        masquerade_all: node.masquerade_all,
        node_port_ips: node_port_ips(&node.node_port_addresses, &ips)?,
        node_ips: ips,
        localhost_node_ports: node.localhost_node_ports,
    };
    Ok(Started {
        changes,
        networks,
        host,
    })
}

//! `weft proxy`'s options, parsed once by the command and grouped by the
//! part that uses them: the source of Services, the rules' firewall, the
//! node, the sync timing and the health endpoint. Each part is handed its
//! own group only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use weft_etcd::EtcdOptions;

use super::sync::ProxyMode;

/// Where Services and endpoints come from.
#[derive(Debug, Clone)]
pub enum SourceOptions {
    /// weft's own store in etcd.
    Etcd {
        etcd: EtcdOptions,
        /// weft's service prefix (`/weft`).
        prefix: String,
        /// flannel's prefix, to read the pod network from its config.
        flannel_prefix: String,
    },
    /// The Kubernetes API (`--kubeconfig`, `--master`, else in-cluster).
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        master: Option<String>,
    },
}

/// Which firewall the rules go to.
#[derive(Debug, Clone, Copy)]
pub struct RulesOptions {
    pub mode: ProxyMode,
    /// iptables mode: which iptables backend (auto-detected by default).
    pub iptables_backend: weft_firewall::BackendChoice,
}

/// This node, as kube-proxy's flags describe it.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// This node's name (`nodeName` of local endpoints).
    pub name: String,
    /// `--bind-address`: this node's address (else the Node object's,
    /// with the Kubernetes source).
    pub ip: Option<IpAddr>,
    /// `--cluster-cidr`: pod networks; with the etcd source read from
    /// flannel's config when not given.
    pub cluster_cidr: Vec<IpNet>,
    /// `--nodeport-addresses`: CIDRs, or `primary` (the node's addresses);
    /// empty: every local address.
    pub node_port_addresses: Vec<String>,
    /// `--iptables-localhost-nodeports`.
    pub localhost_node_ports: bool,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
}

/// When syncs happen.
#[derive(Debug, Clone, Copy)]
pub struct SyncTiming {
    /// Full sync period (`--sync-period`).
    pub period: Duration,
    /// Events arriving within this window are synced together
    /// (`--min-sync-period`).
    pub min_period: Duration,
}

/// How the proxy runs (`weft proxy` flags).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub source: SourceOptions,
    pub rules: RulesOptions,
    pub node: NodeOptions,
    pub timing: SyncTiming,
    /// `--healthz-bind-address`: where `/healthz` and `/livez` answer.
    pub healthz: Option<SocketAddr>,
    /// Delete the UDP/SCTP conntrack entries a sync leaves stale, as
    /// kube-proxy does (`--conntrack-cleanup`, default on).
    pub conntrack_cleanup: bool,
}

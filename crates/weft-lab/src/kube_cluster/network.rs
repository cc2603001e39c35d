//! The cluster's network on a node: weft (its CNI plugin, `weft agent` in
//! Kubernetes mode, `weft proxy`) or, as the conformance run's control,
//! upstream flannel and kube-proxy (flannel's CNI plugin, flanneld
//! v0.26.7, kube-proxy v1.36.3). Both run with the same flags and the
//! same identities, the ones of the DaemonSets in dist/kubernetes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::upstream::{upstream_flannel_cni, upstream_flanneld};

/// Which programs network the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Weft,
    /// flanneld + flannel's CNI plugin + kube-proxy.
    Upstream,
}

impl Network {
    pub fn parse(s: &str) -> Result<Network> {
        match s {
            "weft" => Ok(Network::Weft),
            "upstream" => Ok(Network::Upstream),
            other => bail!("network {other:?}: weft or upstream"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Weft => "weft",
            Network::Upstream => "upstream",
        }
    }
}

/// The programs of one network, and how each is called.
pub struct NetworkPrograms {
    /// Installed as `/opt/cni/bin/flannel`.
    pub cni_plugin: PathBuf,
    pub agent: Program,
    pub proxy: Program,
}

/// A program and the arguments that come before the shared flags.
pub struct Program {
    pub name: &'static str,
    pub path: PathBuf,
    pub leading_args: Vec<String>,
    /// Flags only this program takes.
    pub extra_args: Vec<String>,
}

impl NetworkPrograms {
    /// `weft` is the binary weft's nodes run; `bin` the folder holding
    /// kube-proxy (the pinned Kubernetes set).
    pub fn find(network: Network, weft: &Path, kubernetes_bin: &Path) -> Result<NetworkPrograms> {
        Ok(match network {
            Network::Weft => NetworkPrograms {
                cni_plugin: weft.to_path_buf(),
                agent: Program {
                    name: "agent",
                    path: weft.to_path_buf(),
                    leading_args: vec!["agent".into()],
                    extra_args: Vec::new(),
                },
                proxy: Program {
                    name: "proxy",
                    path: weft.to_path_buf(),
                    leading_args: vec!["proxy".into()],
                    extra_args: Vec::new(),
                },
            },
            Network::Upstream => NetworkPrograms {
                cni_plugin: upstream_flannel_cni()?,
                agent: Program {
                    name: "flanneld",
                    path: upstream_flanneld()?,
                    leading_args: Vec::new(),
                    extra_args: Vec::new(),
                },
                proxy: Program {
                    name: "kube-proxy",
                    path: kubernetes_bin.join("kube-proxy"),
                    leading_args: Vec::new(),
                    // the conntrack table's size is the machine's, not a
                    // namespace's: leave it alone
                    extra_args: vec!["--conntrack-max-per-core=0".into()],
                },
            },
        })
    }
}

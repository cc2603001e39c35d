//! The cluster's network on a node: weft (its CNI plugin, `weft agent` in
//! Kubernetes mode, `weft proxy`) or, as the conformance run's control,
//! upstream flannel and kube-proxy (flannel's CNI plugin, flanneld
//! v0.28.10, kube-proxy v1.36.3). Both run with the same flags and the
//! same identities, the ones of the DaemonSets in dist/kubernetes; weft
//! can also run as those DaemonSets themselves, from its image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::upstream::{upstream_flannel_cni, upstream_flanneld};

/// Which programs network the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// weft's agent and proxy as node processes (as the systemd units run
    /// them), the CNI plugin installed as the init containers would.
    Weft,
    /// dist/kubernetes's DaemonSets as shipped, from weft's image archive
    /// (`scripts/image.sh`), imported into each node's containerd.
    WeftDaemonSets(PathBuf),
    /// flanneld + flannel's CNI plugin + kube-proxy, node processes.
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

    pub fn name(&self) -> &'static str {
        match self {
            Network::Weft => "weft",
            Network::WeftDaemonSets(_) => "weft (DaemonSets)",
            Network::Upstream => "upstream",
        }
    }

    /// The image archive the DaemonSets run from, if they do.
    pub fn image(&self) -> Option<&Path> {
        match self {
            Network::WeftDaemonSets(image) => Some(image),
            _ => None,
        }
    }
}

/// The programs of one network, and how each is called.
pub struct NetworkPrograms {
    /// Installed as `/opt/cni/bin/flannel`.
    pub cni_plugin: PathBuf,
    /// The conflist's cniVersion, when the plugin needs an older one than
    /// dist/kubernetes's.
    pub cni_version: Option<&'static str>,
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
    /// The user (and groups) its kubeconfig's client certificate names.
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

/// The agent's identity: the manifests' `kube-flannel/flannel` service
/// account (kube-flannel's own manifest binds the same rights to it).
const FLANNEL_SA: &str = "system:serviceaccount:kube-flannel:flannel";
const FLANNEL_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:kube-flannel",
];

impl NetworkPrograms {
    /// `weft` is the binary weft's nodes run; `kubernetes_bin` the folder
    /// holding kube-proxy (the pinned Kubernetes set). None: the network's
    /// DaemonSets start everything.
    pub fn find(
        network: &Network,
        weft: &Path,
        kubernetes_bin: &Path,
    ) -> Result<Option<NetworkPrograms>> {
        Ok(Some(match network {
            Network::WeftDaemonSets(_) => return Ok(None),
            Network::Weft => NetworkPrograms {
                cni_plugin: weft.to_path_buf(),
                cni_version: None,
                agent: Program {
                    name: "agent",
                    path: weft.to_path_buf(),
                    leading_args: vec!["agent".into()],
                    extra_args: Vec::new(),
                    user: FLANNEL_SA,
                    groups: FLANNEL_GROUPS,
                },
                proxy: Program {
                    name: "proxy",
                    path: weft.to_path_buf(),
                    leading_args: vec!["proxy".into()],
                    extra_args: Vec::new(),
                    // dist/kubernetes/weft-proxy.yml's service account
                    user: "system:serviceaccount:kube-system:weft-proxy",
                    groups: &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:kube-system",
                    ],
                },
            },
            Network::Upstream => NetworkPrograms {
                cni_plugin: upstream_flannel_cni()?,
                // kube-flannel's own conflist says 0.3.1; this plugin
                // speaks up to 0.4.0
                cni_version: Some("0.3.1"),
                agent: Program {
                    name: "flanneld",
                    path: upstream_flanneld()?,
                    leading_args: Vec::new(),
                    extra_args: Vec::new(),
                    user: FLANNEL_SA,
                    groups: FLANNEL_GROUPS,
                },
                proxy: Program {
                    name: "kube-proxy",
                    path: kubernetes_bin.join("kube-proxy"),
                    leading_args: Vec::new(),
                    // the conntrack table's size is the machine's, not a
                    // namespace's: leave it alone
                    extra_args: vec!["--conntrack-max-per-core=0".into()],
                    // the built-in system:node-proxier binding's user
                    user: "system:kube-proxy",
                    groups: &[],
                },
            },
        }))
    }
}

/// dist/kubernetes's manifests as the lab applies them: the pod network,
/// the backend, the proxy mode and the API server's address filled in
/// where an operator fills them in; without the DaemonSets unless
/// `daemonsets` (then weft runs as node processes or not at all).
pub fn weft_manifests(
    manifests: &[&str],
    backend: &str,
    proxy_mode: &str,
    api_server: &str,
    daemonsets: bool,
) -> String {
    let docs: Vec<&str> = manifests
        .iter()
        .flat_map(|m| m.split("\n---\n"))
        .filter(|d| daemonsets || !d.contains("\nkind: DaemonSet"))
        .collect();
    docs.join("\n---\n")
        .replace("10.244.0.0/16", super::POD_NETWORK)
        .replace("\"Type\": \"vxlan\"", &format!("\"Type\": \"{backend}\""))
        .replace(
            "\n    mode: iptables\n",
            &format!("\n    mode: {proxy_mode}\n"),
        )
        .replace("https://API-SERVER-ADDRESS:6443", api_server)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLANNEL: &str = include_str!("../../../../dist/kubernetes/weft-flannel.yml");
    const PROXY: &str = include_str!("../../../../dist/kubernetes/weft-proxy.yml");

    #[test]
    fn the_lab_fills_in_what_an_operator_fills_in() {
        let all = weft_manifests(
            &[FLANNEL, PROXY],
            "host-gw",
            "nftables",
            "https://198.18.0.10:6443",
            true,
        );
        assert!(!all.contains("10.244.0.0/16"));
        assert!(!all.contains("API-SERVER-ADDRESS"));
        assert!(all.contains("\"Type\": \"host-gw\""));
        assert!(all.contains("\n    mode: nftables\n"));
        assert_eq!(all.matches("\nkind: DaemonSet").count(), 2);
        let no_ds = weft_manifests(
            &[FLANNEL, PROXY],
            "vxlan",
            "iptables",
            "https://x:6443",
            false,
        );
        assert_eq!(no_ds.matches("\nkind: DaemonSet").count(), 0);
        assert!(no_ds.contains("\nkind: ConfigMap"));
    }
}

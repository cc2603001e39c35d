//! Where `weft status` and `weft doctor` read a Kubernetes-mode cluster
//! (the agent's `-kube-subnet-mgr`): the agent's own flags, in the same
//! `FLANNELD_*` variables, so a host's agent environment file serves both.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use weft_agent::source::Network;
use weft_core::config::NetConfig;
use weft_core::subnet_file::parse_go_bool;
use weft_kube::FlagNames;

const FLAGS: FlagNames = FlagNames {
    kubeconfig: "--kubeconfig-file",
    url: "--kube-api-url",
    alternative: "",
};

fn go_bool(s: &str) -> Result<bool, String> {
    parse_go_bool(s).ok_or_else(|| format!("{s:?} is not a boolean (use true or false)"))
}

#[derive(clap::Args, Debug, Clone)]
pub struct KubeArgs {
    /// Read the leases from the Nodes' annotations, as the agent does with
    /// -kube-subnet-mgr, instead of etcd
    #[arg(long = "kube-subnet-mgr", env = "FLANNELD_KUBE_SUBNET_MGR", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub kube_subnet_mgr: bool,
    /// Kubernetes API server URL (default: the kubeconfig's, else in-cluster)
    #[arg(long = "kube-api-url", env = "FLANNELD_KUBE_API_URL")]
    pub kube_api_url: Option<String>,
    /// kubeconfig file (default: in-cluster service account)
    #[arg(long = "kubeconfig-file", env = "FLANNELD_KUBECONFIG_FILE")]
    pub kubeconfig_file: Option<String>,
    /// Prefix of the Node annotations that hold the leases
    #[arg(
        long = "kube-annotation-prefix",
        env = "FLANNELD_KUBE_ANNOTATION_PREFIX",
        default_value = "flannel.alpha.coreos.com"
    )]
    pub kube_annotation_prefix: String,
    /// The network config file in Kubernetes mode
    #[arg(
        long = "net-config-path",
        env = "FLANNELD_NET_CONFIG_PATH",
        default_value = "/etc/kube-flannel/net-conf.json"
    )]
    pub net_config_path: String,
}

impl KubeArgs {
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = self.kubeconfig_file.as_deref().map(Path::new);
        weft_kube::client(kubeconfig, self.kube_api_url.as_deref(), FLAGS).await
    }

    /// The network config file's text, parsed.
    pub fn net_config(&self) -> Result<NetConfig> {
        let path = &self.net_config_path;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--net-config-path {path}: reading the network config"))?;
        NetConfig::parse(&text).map_err(|e| anyhow!("--net-config-path {path}: {e}"))
    }

    pub fn network(&self) -> Result<Network> {
        Network::from_config(self.net_config()?)
            .map_err(|e| anyhow!("--net-config-path {}: {e}", self.net_config_path))
    }
}

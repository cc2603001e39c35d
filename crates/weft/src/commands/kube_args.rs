//! Where `weft status` and `weft doctor` read a Kubernetes-mode cluster
//! (the agent's `-kube-subnet-mgr`): the agent's own flags, in the same
//! `FLANNELD_*` variables, so a host's agent environment file serves both.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use weft_agent::flags::KubeFlags;
use weft_agent::network::Network;
use weft_core::config::NetConfig;
use weft_kube::FlagNames;

const FLAGS: FlagNames = FlagNames {
    kubeconfig: "--kubeconfig-file",
    url: "--kube-api-url",
    alternative: "",
};

/// The agent's own Kubernetes flags (`weft_agent::flags::KubeFlags`).
#[derive(clap::Args, Debug, Clone)]
pub struct KubeArgs {
    #[command(flatten)]
    pub flags: KubeFlags,
}

impl KubeArgs {
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = self.flags.kubeconfig_file.as_deref().map(Path::new);
        weft_kube::client(kubeconfig, self.flags.kube_api_url.as_deref(), FLAGS).await
    }

    /// The network config file's text, parsed.
    pub fn net_config(&self) -> Result<NetConfig> {
        let path = &self.flags.net_config_path;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--net-config-path {path}: reading the network config"))?;
        NetConfig::parse(&text).map_err(|e| anyhow!("--net-config-path {path}: {e}"))
    }

    pub fn network(&self) -> Result<Network> {
        Network::from_config(self.net_config()?)
            .map_err(|e| anyhow!("--net-config-path {}: {e}", self.flags.net_config_path))
    }
}

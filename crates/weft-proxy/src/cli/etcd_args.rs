//! etcd connection flags shared by `weft proxy` (and `weft-proxy`), `weft service`,
//! `weft status` and `weft doctor` (the agent keeps flanneld's single-dash spelling).

use weft_etcd::EtcdOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Comma-separated etcd endpoints
    #[arg(
        global = true,
        long = "etcd-endpoints",
        env = "FLANNELD_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: String,
    /// flannel's etcd prefix (network config and leases)
    #[arg(
        global = true,
        long = "etcd-prefix",
        env = "FLANNELD_ETCD_PREFIX",
        default_value = "/coreos.com/network"
    )]
    pub prefix: String,
    /// etcd prefix of weft's services and endpoints
    #[arg(global = true, long = "service-prefix", env = "WEFT_SERVICE_PREFIX", default_value = crate::shell::store::DEFAULT_PREFIX)]
    pub service_prefix: String,
    /// TLS CA file for etcd
    #[arg(global = true, long = "etcd-cafile", env = "FLANNELD_ETCD_CAFILE")]
    pub cafile: Option<String>,
    /// TLS certificate file for etcd
    #[arg(global = true, long = "etcd-certfile", env = "FLANNELD_ETCD_CERTFILE")]
    pub certfile: Option<String>,
    /// TLS key file for etcd
    #[arg(global = true, long = "etcd-keyfile", env = "FLANNELD_ETCD_KEYFILE")]
    pub keyfile: Option<String>,
    /// etcd user name
    #[arg(global = true, long = "etcd-username", env = "FLANNELD_ETCD_USERNAME")]
    pub username: Option<String>,
    /// etcd password
    #[arg(
        global = true,
        long = "etcd-password",
        env = "FLANNELD_ETCD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

impl EtcdArgs {
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: self
                .endpoints
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            username: self.username.clone(),
            password: self.password.clone(),
            cafile: self.cafile.clone(),
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
        }
    }
}

/// Parses `100ms`, `30s`, `15m`, `1h` (a bare number is seconds).
pub use weft_core::duration::parse as parse_duration;

//! flanneld's command line: Go-style flags (`-flag`, `--flag`, `-flag=v`,
//! `-flag v`; booleans only as `-flag` or `-flag=false`), each also read
//! from `FLANNELD_<NAME>` when absent from the command line.

use clap::Args;
use weft_core::subnet_file::parse_go_bool;

/// Parses a Go boolean flag value.
fn go_bool(s: &str) -> Result<bool, String> {
    parse_go_bool(s).ok_or_else(|| format!("{s:?} is not a boolean (use true or false)"))
}

fn renew_margin(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of minutes"))?;
    if (1..=1439).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: must be 1 to 1439 minutes"))
    }
}

/// Where Kubernetes-mode leases come from: the agent's flags, also read
/// by `weft status` and `weft doctor` (in their double-dash spelling).
#[derive(Args, Debug, Clone)]
pub struct KubeFlags {
    /// Leases from the Kubernetes API (each Node's podCIDR, annotations on
    /// the Node) instead of etcd
    #[arg(long = "kube-subnet-mgr", env = "FLANNELD_KUBE_SUBNET_MGR", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub kube_subnet_mgr: bool,
    /// Kubernetes API server URL (default: the kubeconfig's, else in-cluster)
    #[arg(long = "kube-api-url", env = "FLANNELD_KUBE_API_URL")]
    pub kube_api_url: Option<String>,
    /// kubeconfig file (default: in-cluster service account)
    #[arg(long = "kubeconfig-file", env = "FLANNELD_KUBECONFIG_FILE")]
    pub kubeconfig_file: Option<String>,
    /// Prefix of the Node annotations that hold the lease
    #[arg(
        long = "kube-annotation-prefix",
        env = "FLANNELD_KUBE_ANNOTATION_PREFIX",
        default_value = "flannel.alpha.coreos.com"
    )]
    pub kube_annotation_prefix: String,
    /// The network config file in Kubernetes mode (etcd's config key otherwise)
    #[arg(
        long = "net-config-path",
        env = "FLANNELD_NET_CONFIG_PATH",
        default_value = "/etc/kube-flannel/net-conf.json"
    )]
    pub net_config_path: String,
}

/// flanneld's flags (etcd and Kubernetes subnet managers).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Comma-separated etcd endpoints
    #[arg(
        long = "etcd-endpoints",
        env = "FLANNELD_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: String,
    /// etcd prefix of the network config and leases
    #[arg(
        long = "etcd-prefix",
        env = "FLANNELD_ETCD_PREFIX",
        default_value = "/coreos.com/network"
    )]
    pub etcd_prefix: String,
    /// TLS key file for etcd
    #[arg(long = "etcd-keyfile", env = "FLANNELD_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<String>,
    /// TLS certificate file for etcd
    #[arg(long = "etcd-certfile", env = "FLANNELD_ETCD_CERTFILE")]
    pub etcd_certfile: Option<String>,
    /// TLS CA file for etcd
    #[arg(long = "etcd-cafile", env = "FLANNELD_ETCD_CAFILE")]
    pub etcd_cafile: Option<String>,
    /// etcd user name
    #[arg(long = "etcd-username", env = "FLANNELD_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    /// etcd password
    #[arg(long = "etcd-password", env = "FLANNELD_ETCD_PASSWORD")]
    pub etcd_password: Option<String>,
    /// Interface (name or IP) for inter-host traffic; repeatable, first match wins
    #[arg(long = "iface", env = "FLANNELD_IFACE", value_delimiter = ',')]
    pub iface: Vec<String>,
    /// Regex matched against interface IPs, then names; repeatable
    #[arg(
        long = "iface-regex",
        env = "FLANNELD_IFACE_REGEX",
        value_delimiter = ','
    )]
    pub iface_regex: Vec<String>,
    /// Use the interface that routes to this IP
    #[arg(long = "iface-can-reach", env = "FLANNELD_IFACE_CAN_REACH")]
    pub iface_can_reach: Option<String>,
    /// IP other hosts reach this host at (defaults to the interface address)
    #[arg(long = "public-ip", env = "FLANNELD_PUBLIC_IP")]
    pub public_ip: Option<String>,
    /// IPv6 other hosts reach this host at
    #[arg(long = "public-ipv6", env = "FLANNELD_PUBLIC_IPV6")]
    pub public_ipv6: Option<String>,
    /// Where to write the subnet file
    #[arg(
        long = "subnet-file",
        env = "FLANNELD_SUBNET_FILE",
        default_value = "/run/flannel/subnet.env"
    )]
    pub subnet_file: String,
    /// Minutes before lease expiry to renew it (1-1439)
    #[arg(long = "subnet-lease-renew-margin", env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", default_value = "60", value_parser = renew_margin)]
    pub subnet_lease_renew_margin: u32,
    /// Masquerade traffic leaving the flannel network
    #[arg(long = "ip-masq", env = "FLANNELD_IP_MASQ", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub ip_masq: bool,
    /// Seconds between firewall rule checks
    #[arg(
        long = "iptables-resync",
        env = "FLANNELD_IPTABLES_RESYNC",
        default_value = "5"
    )]
    pub iptables_resync: u32,
    /// Add FORWARD accept rules for the network
    #[arg(long = "iptables-forward-rules", env = "FLANNELD_IPTABLES_FORWARD_RULES", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub iptables_forward_rules: bool,
    /// Masquerade without fully random source ports (flannel v0.28's
    /// -ip-masq-fully-random-disable)
    #[arg(long = "ip-masq-fully-random-disable", env = "FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub ip_masq_fully_random_disable: bool,
    /// Keep a blackhole route for this host's own subnet, re-added every
    /// -iptables-resync seconds (flannel v0.28's -ip-blackhole-route, for
    /// set-ups without the bridge plugin, e.g. Canal)
    #[arg(long = "ip-blackhole-route", env = "FLANNELD_IP_BLACKHOLE_ROUTE", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub ip_blackhole_route: bool,
    /// Address the health endpoint listens on (flanneld's default: every
    /// address, so kube-flannel's probes reach it on the node's IP)
    #[arg(
        long = "healthz-ip",
        env = "FLANNELD_HEALTHZ_IP",
        default_value = "0.0.0.0"
    )]
    pub healthz_ip: String,
    /// Port of the health endpoint (0 = off)
    #[arg(
        long = "healthz-port",
        env = "FLANNELD_HEALTHZ_PORT",
        default_value = "0"
    )]
    pub healthz_port: u16,
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Set the Node's NetworkUnavailable condition to False once ready
    #[arg(long = "set-node-network-unavailable", env = "FLANNELD_SET_NODE_NETWORK_UNAVAILABLE", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub set_node_network_unavailable: bool,
    /// Log verbosity (klog's -v): 0 info, 1-4 debug, 5+ trace
    #[arg(long = "v", env = "FLANNELD_V", default_value = "0")]
    pub v: u8,
    /// klog's -vmodule: accepted for flanneld's command lines, not used
    /// (weft's verbosity is -v or RUST_LOG)
    #[arg(long = "vmodule", env = "FLANNELD_VMODULE")]
    pub vmodule: Option<String>,
    /// klog's -log_backtrace_at: accepted for flanneld's command lines, not
    /// used
    #[arg(long = "log_backtrace_at", env = "FLANNELD_LOG_BACKTRACE_AT")]
    pub log_backtrace_at: Option<String>,
    /// Print the version and exit
    #[arg(long = "version", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub version: bool,
    /// Seconds between full comparisons of the kernel with the leases (weft)
    #[arg(
        long = "resync-interval",
        env = "FLANNELD_RESYNC_INTERVAL",
        default_value = "60"
    )]
    pub resync_interval: u64,
    /// Firewall for -ip-masq and forward rules: iptables or nftables (weft;
    /// the config's EnableNFTables also selects nftables)
    #[arg(long = "firewall", env = "FLANNELD_FIREWALL", default_value = "iptables", value_parser = ["iptables", "nftables"])]
    pub firewall: String,
    /// iptables backend for those rules: auto (the one already holding
    /// rules, else iptables' default), legacy or nft (weft)
    #[arg(
        long = "iptables-backend",
        env = "FLANNELD_IPTABLES_BACKEND",
        default_value = "auto"
    )]
    pub iptables_backend: weft_firewall::BackendChoice,
    /// wireguard backend: auto (the kernel's WireGuard where it has one,
    /// else userspace), kernel or userspace (weft)
    #[arg(
        long = "wireguard-impl",
        env = "FLANNELD_WIREGUARD_IMPL",
        default_value = "auto",
        value_enum
    )]
    pub wireguard_impl: crate::options::WgImplementation,
    /// wireguard backend, userspace: folder of the devices' configuration
    /// sockets, which `wg` reads (weft)
    #[arg(
        long = "wireguard-socket-dir",
        env = "FLANNELD_WIREGUARD_SOCKET_DIR",
        default_value = crate::options::DEFAULT_WG_SOCKET_DIR
    )]
    pub wireguard_socket_dir: String,
    /// Log format: text or json (weft)
    #[arg(
        long = "log-format",
        env = "FLANNELD_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,
    /// Accepted for compatibility with glog-era unit files; ignored
    #[arg(long = "logtostderr", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub logtostderr: Option<bool>,
    /// Accepted for compatibility with glog-era unit files; ignored
    #[arg(long = "alsologtostderr", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub alsologtostderr: Option<bool>,
    /// Accepted for compatibility with glog-era unit files; ignored
    #[arg(long = "log_dir", hide = true)]
    pub log_dir: Option<String>,
}

/// Rewrites Go-style single-dash long flags (`-etcd-prefix=x`) into the
/// double-dash form clap parses. Like Go's flag package, every `-word` is a
/// long flag (so unknown ones are reported by their whole name, and `-v=2`
/// works); `-h` and everything after `--` are left alone.
pub fn normalize_go_flags<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().map(Into::into).enumerate() {
        if i == 0 || passthrough || a == "--" {
            passthrough |= a == "--";
            out.push(a);
            continue;
        }
        let go_long = a.strip_prefix('-').is_some_and(|rest| {
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            name != "h" && name.starts_with(|c: char| c.is_ascii_alphabetic())
        });
        out.push(if go_long { format!("-{a}") } else { a });
    }
    out
}

mod options;
#[cfg(test)]
mod tests;

/// The command as flanneld: `flanneld [flags]`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "flanneld",
    about = "weft agent (flanneld-compatible)",
    disable_version_flag = true
)]
pub struct FlanneldCommand {
    #[command(flatten)]
    pub args: AgentArgs,
}

/// Parses flanneld's argv (argv[0] included).
pub fn parse_flanneld<I, S>(argv: I) -> Result<AgentArgs, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    use clap::{CommandFactory, FromArgMatches};
    let cmd = FlanneldCommand::command();
    let argv = normalize_go_flags(argv);
    let matches = cmd.try_get_matches_from(argv)?;
    FlanneldCommand::from_arg_matches(&matches).map(|c| c.args)
}

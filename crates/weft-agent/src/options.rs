//! The agent's settings, typed, one struct per part that uses them: the
//! flags ([`crate::flags`]) are parsed into them once, and each part gets only
//! its own (the etcd source its connection, the underlay selection its
//! interfaces and addresses, the firewall its rules' switches, …). A value
//! that does not parse is one error naming its flag, before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weft_etcd::EtcdOptions;
use weft_firewall::BackendChoice;

use crate::underlay::Selector;

/// flanneld's WireGuard key file (`WIREGUARD_KEY_FILE` replaces it).
pub const DEFAULT_WG_KEY_FILE: &str = "/run/flannel/wgkey";

/// Where the userspace WireGuard devices' configuration sockets are.
pub const DEFAULT_WG_SOCKET_DIR: &str = "/var/run/wireguard";

/// Which WireGuard the backend uses (`--wireguard-impl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WgImplementation {
    /// The kernel's where it has WireGuard, else userspace.
    Auto,
    /// The kernel module, configured over generic netlink.
    Kernel,
    /// weft's own data path over TUN devices (any kernel).
    Userspace,
}

/// The wireguard backend's: which implementation, where its key and
/// configuration sockets are.
#[derive(Debug, Clone)]
pub struct WgOptions {
    pub implementation: WgImplementation,
    pub key_file: PathBuf,
    pub uapi_dir: PathBuf,
}

/// The etcd lease source's: the connection, the prefix, when to renew,
/// and the subnet file that says which subnet this host had.
#[derive(Debug, Clone)]
pub struct EtcdSourceOptions {
    pub connect: EtcdOptions,
    pub prefix: String,
    pub renew_margin_minutes: u32,
    pub previous_subnet_file: PathBuf,
}

/// The Kubernetes lease source's.
#[derive(Debug, Clone)]
pub struct KubeSourceOptions {
    pub kubeconfig: Option<PathBuf>,
    pub api_url: Option<String>,
    pub annotation_prefix: String,
    pub net_config_path: PathBuf,
    pub set_network_unavailable: bool,
}

/// Where leases come from.
#[derive(Debug, Clone)]
pub enum SourceOptions {
    Etcd(EtcdSourceOptions),
    Kube(KubeSourceOptions),
}

/// The masquerade and forward rules'.
#[derive(Debug, Clone, Copy)]
pub struct FirewallOptions {
    pub masquerade: bool,
    /// Masquerade with fully random source ports (flannel's default).
    pub fully_random: bool,
    /// `-ip-blackhole-route`: a blackhole route for the own subnets,
    /// re-added each `resync`.
    pub blackhole_route: bool,
    pub forward: bool,
    /// How often the rules are re-asserted.
    pub resync: Duration,
    /// `-firewall=nftables` (the config's `EnableNFTables` also selects it).
    pub nftables: bool,
    pub iptables_backend: BackendChoice,
}

/// The subnet file's: where, and the `FLANNEL_IPMASQ` it states.
#[derive(Debug, Clone)]
pub struct SubnetFileOptions {
    pub path: PathBuf,
    pub ip_masq: bool,
}

/// Everything the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub source: SourceOptions,
    pub underlay: Selector,
    pub wireguard: WgOptions,
    pub firewall: FirewallOptions,
    /// `/healthz` and `/metrics` (`-healthz-ip:-healthz-port`; None: off).
    pub health: Option<SocketAddr>,
    pub subnet_file: SubnetFileOptions,
    /// Between full comparisons of the kernel with the leases.
    pub resync: Duration,
}

#[cfg(test)]
mod tests {
    use crate::flags::parse_flanneld;

    #[test]
    fn each_part_gets_its_own_typed_settings() {
        let args = parse_flanneld([
            "flanneld",
            "-etcd-endpoints=http://198.18.0.1:2379, http://198.18.0.2:2379",
            "-public-ip=198.18.0.11",
            "-iface-can-reach=198.18.0.1",
            "-healthz-port=8471",
            "-ip-masq",
            "-iptables-resync=0",
        ])
        .expect("flags");
        let o = args.options().expect("options");
        let super::SourceOptions::Etcd(etcd) = &o.source else {
            panic!("etcd mode")
        };
        assert_eq!(etcd.connect.endpoints.len(), 2);
        assert_eq!(
            o.underlay.public_ip,
            Some("198.18.0.11".parse().expect("ip"))
        );
        assert_eq!(o.health, Some("0.0.0.0:8471".parse().expect("addr")));
        assert!(o.firewall.masquerade && o.subnet_file.ip_masq);
        assert_eq!(o.firewall.resync, std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_flag() {
        for (flag, want) in [
            (
                "-public-ip=2001:db8::1",
                "-public-ip \"2001:db8::1\" is not an IPv4 address",
            ),
            (
                "-public-ipv6=198.18.0.1",
                "-public-ipv6 \"198.18.0.1\" is not an IPv6 address",
            ),
            (
                "-iface-can-reach=nowhere",
                "-iface-can-reach \"nowhere\" is not an IP address",
            ),
            ("-etcd-endpoints=,", "-etcd-endpoints is empty"),
        ] {
            let args = parse_flanneld(["flanneld", flag]).expect("flags");
            let e = args.options().expect_err(flag).to_string();
            assert!(e.starts_with(want), "{flag}: {e}");
        }
        let args = parse_flanneld(["flanneld", "-healthz-port=1", "-healthz-ip=x"]).expect("flags");
        let e = args.options().expect_err("ip").to_string();
        assert_eq!(e, "-healthz-ip \"x\" is not an IP address");
    }
}

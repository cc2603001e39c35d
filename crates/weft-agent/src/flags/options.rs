//! The flags made into each part's typed settings ([`crate::options`]),
//! once: a value that does not parse is one error naming its flag.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use weft_etcd::EtcdOptions;

use super::AgentArgs;
use crate::options::{
    AgentOptions, EtcdSourceOptions, FirewallOptions, KubeSourceOptions, SourceOptions,
    SubnetFileOptions, WgOptions, DEFAULT_WG_KEY_FILE,
};
use crate::underlay::Selector;

fn parse_ip<T: std::str::FromStr>(
    flag: &str,
    value: &Option<String>,
    what: &str,
) -> Result<Option<T>> {
    value
        .as_deref()
        .map(|s| s.parse().map_err(|_| anyhow!("{flag} {s:?} is not {what}")))
        .transpose()
}

impl AgentArgs {
    /// The settings of each part, or the first flag that does not parse.
    pub fn options(&self) -> Result<AgentOptions> {
        Ok(AgentOptions {
            source: self.source_options()?,
            underlay: Selector {
                iface: self.iface.clone(),
                iface_regex: self.iface_regex.clone(),
                can_reach: parse_ip("-iface-can-reach", &self.iface_can_reach, "an IP address")?,
                public_ip: parse_ip("-public-ip", &self.public_ip, "an IPv4 address")?,
                public_ipv6: parse_ip("-public-ipv6", &self.public_ipv6, "an IPv6 address")?,
            },
            wireguard: WgOptions {
                implementation: self.wireguard_impl,
                key_file: std::env::var_os("WIREGUARD_KEY_FILE")
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| PathBuf::from(DEFAULT_WG_KEY_FILE), PathBuf::from),
                uapi_dir: self.wireguard_socket_dir.clone().into(),
            },
            firewall: FirewallOptions {
                masquerade: self.ip_masq,
                fully_random: !self.ip_masq_fully_random_disable,
                blackhole_route: self.ip_blackhole_route,
                forward: self.iptables_forward_rules,
                resync: Duration::from_secs(u64::from(self.iptables_resync.max(1))),
                nftables: self.firewall == "nftables",
                iptables_backend: self.iptables_backend,
            },
            health: self.health_address()?,
            subnet_file: SubnetFileOptions {
                path: PathBuf::from(&self.subnet_file),
                ip_masq: self.ip_masq,
            },
            resync: Duration::from_secs(self.resync_interval.max(1)),
        })
    }

    fn source_options(&self) -> Result<SourceOptions> {
        if self.kube.kube_subnet_mgr {
            return Ok(SourceOptions::Kube(KubeSourceOptions {
                kubeconfig: self.kube.kubeconfig_file.as_ref().map(PathBuf::from),
                api_url: self.kube.kube_api_url.clone(),
                annotation_prefix: self.kube.kube_annotation_prefix.clone(),
                net_config_path: PathBuf::from(&self.kube.net_config_path),
                set_network_unavailable: self.set_node_network_unavailable,
            }));
        }
        let endpoints: Vec<String> = self
            .etcd_endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if endpoints.is_empty() {
            bail!("-etcd-endpoints is empty (is FLANNEL_ETCD_ENDPOINTS set in /etc/sysconfig/flanneld?)");
        }
        Ok(SourceOptions::Etcd(EtcdSourceOptions {
            connect: EtcdOptions {
                endpoints,
                username: self.etcd_username.clone(),
                password: self.etcd_password.clone(),
                cafile: self.etcd_cafile.clone(),
                certfile: self.etcd_certfile.clone(),
                keyfile: self.etcd_keyfile.clone(),
            },
            prefix: self.etcd_prefix.clone(),
            renew_margin_minutes: self.subnet_lease_renew_margin,
            previous_subnet_file: PathBuf::from(&self.subnet_file),
        }))
    }

    fn health_address(&self) -> Result<Option<SocketAddr>> {
        if self.healthz_port == 0 {
            return Ok(None);
        }
        let ip: IpAddr = self
            .healthz_ip
            .parse()
            .map_err(|_| anyhow!("-healthz-ip {:?} is not an IP address", self.healthz_ip))?;
        Ok(Some(SocketAddr::new(ip, self.healthz_port)))
    }
}

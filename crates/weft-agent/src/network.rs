//! The cluster's network config as the agent uses it: the address pools
//! per family, the backend and its settings, the nftables switch. Read
//! by the lease source, used by every part after it.

use weft_core::config::{BackendConfig, NetConfig};
use weft_core::subnet::Pools;

#[derive(Debug, Clone)]
pub struct Network {
    pub pools: Pools,
    pub backend: BackendConfig,
    /// The config's `EnableNFTables`.
    pub enable_nftables: bool,
}

impl Network {
    /// The network of a config, or why weft cannot use it (naming the field).
    pub fn from_config(c: NetConfig) -> Result<Network, String> {
        if c.ipv6.is_some() {
            match c.backend {
                BackendConfig::Udp(_) | BackendConfig::Ipip(_) | BackendConfig::Ipsec(_) => {
                    return Err(format!(
                        "field EnableIPv6: the {} backend carries IPv4 only",
                        c.backend.type_name()
                    ))
                }
                _ => {}
            }
        }
        Ok(Network {
            enable_nftables: c.enable_nftables,
            pools: Pools {
                v4: c.ipv4,
                v6: c.ipv6,
            },
            backend: c.backend,
        })
    }
}

//! The network configuration flannel stores at `<etcd-prefix>/config`.
//!
//! Flannel decodes it with Go's `encoding/json`: keys match field names
//! case-insensitively and unknown keys are ignored. Defaults and validation
//! follow flannel's rules; every error names the field it is about.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::subnet::SubnetPool;

mod extension;
mod ipsec;
mod wireguard;
pub use extension::ExtensionConfig;
pub use ipsec::{IpsecConfig, Psk, DEFAULT_ESP_PROPOSAL, MIN_PSK_LEN};
pub use wireguard::{WgMode, WireguardConfig, WG_DEFAULT_PORT, WG_DEFAULT_PORT_V6, WG_OVERHEAD};

/// A validated network configuration with flannel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The IPv4 pool, present when `EnableIPv4` (the default) is on.
    pub ipv4: Option<SubnetPool>,
    /// The IPv6 pool, present when `EnableIPv6` is on.
    pub ipv6: Option<SubnetPool>,
    pub backend: BackendConfig,
    /// `EnableNFTables`: masquerade/forward rules in nftables, not iptables.
    pub enable_nftables: bool,
}

/// The `Backend` object, by `Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Vxlan(VxlanConfig),
    HostGw,
    Udp(UdpConfig),
    Wireguard(WireguardConfig),
    /// flannel's `extension`: the user's commands do the data path.
    Extension(ExtensionConfig),
    /// flannel's `alloc`: a lease and a subnet file, no data path.
    Alloc,
    /// flannel's `ipip`: IPv4 in IPv4 through `flannel.ipip`.
    Ipip(IpipConfig),
    /// flannel's `ipsec`: IKEv2 through strongSwan's charon, ESP in the kernel.
    Ipsec(IpsecConfig),
}

/// ipip backend keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpipConfig {
    /// Hosts on this host's L2 network get plain routes, others the tunnel.
    pub direct_routing: bool,
}

impl BackendConfig {
    /// The `BackendType` string flannel writes into leases.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::Vxlan(_) => "vxlan",
            BackendConfig::HostGw => "host-gw",
            BackendConfig::Udp(_) => "udp",
            BackendConfig::Wireguard(_) => "wireguard",
            BackendConfig::Extension(_) => "extension",
            BackendConfig::Alloc => "alloc",
            BackendConfig::Ipip(_) => "ipip",
            BackendConfig::Ipsec(_) => "ipsec",
        }
    }
}

/// vxlan backend keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    pub vni: u32,
    /// UDP destination port; flannel's `Port: 0` means the kernel default 8472.
    pub port: u16,
    pub gbp: bool,
    pub learning: bool,
    pub direct_routing: bool,
    /// Explicit device MTU; `None` derives it from the underlay.
    pub mtu: Option<u32>,
}

/// The kernel's (and flannel's) default vxlan port.
pub const VXLAN_DEFAULT_PORT: u16 = 8472;
/// flannel's default udp backend port.
pub const UDP_DEFAULT_PORT: u16 = 8285;

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            vni: 1,
            port: VXLAN_DEFAULT_PORT,
            gbp: false,
            learning: false,
            direct_routing: false,
            mtu: None,
        }
    }
}

/// udp backend keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    pub port: u16,
}

/// Why a network config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("network config is not valid JSON: {0}")]
    Json(String),
    #[error("network config must be a JSON object")]
    NotObject,
    #[error("network config field {field}: {msg}")]
    Field { field: &'static str, msg: String },
}

fn field_err(field: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        msg: msg.into(),
    }
}

/// Case-insensitive view of a JSON object, as Go's decoder sees it.
struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).or_else(|| {
            self.map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }

    /// A present, non-null value.
    fn value(&self, name: &str) -> Option<&'a Value> {
        self.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &'static str) -> Result<Option<&'a str>, ConfigError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_err(name, "must be a string")),
        }
    }

    fn boolean(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(field_err(name, "must be true or false")),
        }
    }

    fn uint(&self, name: &'static str, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(field_err(
                    name,
                    format!("must be a whole number from 0 to {max}, got {n}"),
                )),
            },
            Some(_) => Err(field_err(name, "must be a number")),
        }
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.string(name)? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| field_err(name, format!("{s:?} is not {what}"))),
        }
    }
}

impl NetConfig {
    /// Parses and validates the JSON stored at `<prefix>/config`.
    pub fn parse(json: &str) -> Result<NetConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        let map = value.as_object().ok_or(ConfigError::NotObject)?;
        let f = Fields { map };

        let enable_ipv4 = f.boolean("EnableIPv4")?.unwrap_or(true);
        let enable_ipv6 = f.boolean("EnableIPv6")?.unwrap_or(false);
        if !enable_ipv4 && !enable_ipv6 {
            return Err(field_err(
                "EnableIPv4",
                "both EnableIPv4 and EnableIPv6 are false: nothing to configure",
            ));
        }
        let ipv4 = if enable_ipv4 {
            Some(parse_pool(&f, &V4_FIELDS)?)
        } else {
            None
        };
        let ipv6 = if enable_ipv6 {
            Some(parse_pool(&f, &V6_FIELDS)?)
        } else {
            None
        };
        let backend = parse_backend(f.value("Backend"))?;
        let enable_nftables = f.boolean("EnableNFTables")?.unwrap_or(false);
        Ok(NetConfig {
            ipv4,
            ipv6,
            backend,
            enable_nftables,
        })
    }
}

struct PoolFieldNames {
    network: &'static str,
    len: &'static str,
    min: &'static str,
    max: &'static str,
    /// Which family, for checks and messages.
    v6: bool,
}

const V4_FIELDS: PoolFieldNames = PoolFieldNames {
    network: "Network",
    len: "SubnetLen",
    min: "SubnetMin",
    max: "SubnetMax",
    v6: false,
};

const V6_FIELDS: PoolFieldNames = PoolFieldNames {
    network: "IPv6Network",
    len: "IPv6SubnetLen",
    min: "IPv6SubnetMin",
    max: "IPv6SubnetMax",
    v6: true,
};

/// Reads one family's Network, SubnetLen, SubnetMin and SubnetMax.
fn parse_pool(f: &Fields, names: &PoolFieldNames) -> Result<SubnetPool, ConfigError> {
    let (family, example) = if names.v6 {
        ("IPv6", "fc00::/48")
    } else {
        ("IPv4", "172.30.0.0/16")
    };
    let in_family = |a: &IpAddr| a.is_ipv6() == names.v6;
    let network: IpNet = f
        .parsed::<IpNet>(
            names.network,
            &format!("an {family} CIDR such as {example}"),
        )?
        .ok_or_else(|| {
            field_err(
                names.network,
                format!("missing (required when Enable{family} is on)"),
            )
        })?;
    if !in_family(&network.addr()) {
        return Err(field_err(
            names.network,
            format!("{network} is not an {family} CIDR such as {example}"),
        ));
    }
    let subnet_len = f.uint(names.len, 128)?.map(|v| v as u8);
    let address = |name: &'static str| -> Result<Option<IpAddr>, ConfigError> {
        match f.parsed::<IpAddr>(name, &format!("an {family} address"))? {
            Some(a) if !in_family(&a) => {
                Err(field_err(name, format!("{a} is not an {family} address")))
            }
            other => Ok(other),
        }
    };
    let (min, max) = (address(names.min)?, address(names.max)?);
    build_pool(network.trunc(), subnet_len, min, max, names)
}

/// Applies flannel's defaults and checks to one address family's pool.
fn build_pool(
    network: IpNet,
    subnet_len: Option<u8>,
    min: Option<IpAddr>,
    max: Option<IpAddr>,
    names: &PoolFieldNames,
) -> Result<SubnetPool, ConfigError> {
    let bits = network.max_prefix_len();
    let prefix = network.prefix_len();
    // Each host needs room for the tunnel address and the bridge (/30 or /126 at least).
    let longest = bits - 2;
    // flannel's default: /24 (IPv4) or /64 (IPv6) when the network holds at
    // least four of them, else a quarter of the network.
    let default_len = if bits == 32 { 24 } else { 64 };
    let subnet_len = match subnet_len.filter(|l| *l != 0) {
        Some(len) => {
            if len > longest {
                return Err(field_err(
                    names.len,
                    format!("/{len} is too long: at most /{longest} leaves room for a tunnel and a bridge address"),
                ));
            }
            if len < prefix + 2 {
                return Err(field_err(
                    names.len,
                    format!(
                        "/{len} must be at least /{} so that {network} holds four or more subnets",
                        prefix + 2
                    ),
                ));
            }
            len
        }
        None => {
            if prefix + 2 > longest {
                return Err(field_err(
                    names.network,
                    format!(
                        "{network} is too small: the shortest usable network is /{}",
                        longest - 2
                    ),
                ));
            }
            if prefix + 2 <= default_len {
                default_len
            } else {
                prefix + 2
            }
        }
    };
    let pool = SubnetPool::new(network, subnet_len);
    let min = match min {
        None => pool.nth_subnet(1),
        Some(a) => pool.aligned(a).map_err(|m| field_err(names.min, m))?,
    };
    let max = match max {
        None => pool.nth_subnet(pool.total() - 1),
        Some(a) => pool.aligned(a).map_err(|m| field_err(names.max, m))?,
    };
    if crate::subnet::addr_u128(max) < crate::subnet::addr_u128(min) {
        return Err(field_err(
            names.max,
            format!("{max} is below {} {min}: no subnets to lease", names.min),
        ));
    }
    Ok(pool.with_range(min, max))
}

fn parse_backend(value: Option<&Value>) -> Result<BackendConfig, ConfigError> {
    let empty = Map::new();
    let map = match value {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(field_err("Backend", "must be a JSON object")),
    };
    let f = Fields { map };
    // flannel: a missing Backend (or Type) means udp.
    let kind = match f.value("Type") {
        None => "udp".to_string(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => return Err(field_err("Backend.Type", "must be a string")),
    };
    match kind.as_str() {
        "vxlan" => parse_vxlan(&f).map(BackendConfig::Vxlan),
        "host-gw" => Ok(BackendConfig::HostGw),
        "udp" => {
            let port = port_field(&f, "Port", "Backend.Port")?.unwrap_or(UDP_DEFAULT_PORT);
            Ok(BackendConfig::Udp(UdpConfig { port }))
        }
        "wireguard" => wireguard::parse_wireguard(&f).map(BackendConfig::Wireguard),
        "extension" => extension::parse_extension(&f).map(BackendConfig::Extension),
        "alloc" => Ok(BackendConfig::Alloc),
        "ipip" => {
            let direct_routing = f
                .boolean("DirectRouting")
                .map_err(|e| requalify(e, "Backend.DirectRouting"))?
                .unwrap_or(false);
            Ok(BackendConfig::Ipip(IpipConfig { direct_routing }))
        }
        "ipsec" => ipsec::parse_ipsec(&f).map(BackendConfig::Ipsec),
        "tencent-vpc" => Err(field_err(
            "Backend.Type",
            "\"tencent-vpc\" is a cloud vendor's backend, which weft does not implement (use flanneld on Tencent Cloud)",
        )),
        other => Err(field_err(
            "Backend.Type",
            format!("{other:?} is not supported (weft supports vxlan, host-gw, udp, wireguard, ipip, ipsec, extension and alloc)"),
        )),
    }
}

fn port_field(
    f: &Fields,
    name: &'static str,
    qualified: &'static str,
) -> Result<Option<u16>, ConfigError> {
    f.uint(name, u16::MAX as u64)
        .map(|v| v.filter(|p| *p != 0).map(|p| p as u16))
        .map_err(|e| requalify(e, qualified))
}

/// Rewrites a field error raised inside `Backend` to carry the full path.
fn requalify(e: ConfigError, qualified: &'static str) -> ConfigError {
    match e {
        ConfigError::Field { msg, .. } => ConfigError::Field {
            field: qualified,
            msg,
        },
        other => other,
    }
}

/// `Backend.MTU`: absent or 0 means "derive it".
fn mtu_field(f: &Fields) -> Result<Option<u32>, ConfigError> {
    Ok(f.uint("MTU", 65535)
        .map_err(|e| requalify(e, "Backend.MTU"))?
        .filter(|m| *m != 0)
        .map(|m| m as u32))
}

fn parse_vxlan(f: &Fields) -> Result<VxlanConfig, ConfigError> {
    let d = VxlanConfig::default();
    let vni = f
        .uint("VNI", (1 << 24) - 1)
        .map_err(|e| requalify(e, "Backend.VNI"))?
        .map(|v| v as u32)
        .unwrap_or(d.vni);
    let port = port_field(f, "Port", "Backend.Port")?.unwrap_or(d.port);
    let gbp = f
        .boolean("GBP")
        .map_err(|e| requalify(e, "Backend.GBP"))?
        .unwrap_or(false);
    let learning = f
        .boolean("Learning")
        .map_err(|e| requalify(e, "Backend.Learning"))?
        .unwrap_or(false);
    let direct_routing = f
        .boolean("DirectRouting")
        .map_err(|e| requalify(e, "Backend.DirectRouting"))?
        .unwrap_or(false);
    let mtu = mtu_field(f)?;
    if let Some(m) = mtu {
        if m < 576 {
            return Err(field_err(
                "Backend.MTU",
                format!("{m} is below the minimum 576"),
            ));
        }
    }
    Ok(VxlanConfig {
        vni,
        port,
        gbp,
        learning,
        direct_routing,
        mtu,
    })
}

#[cfg(test)]
mod tests;

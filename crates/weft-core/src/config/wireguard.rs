//! The wireguard backend's keys, with flanneld's defaults: ListenPort
//! 51820, ListenPortV6 51821, no PSK, no keepalive, Mode `separate`, MTU
//! the underlay's.

use super::{field_err, requalify, ConfigError, Fields};
use crate::wg_key::WgSecret;

/// flanneld's defaults.
pub const WG_DEFAULT_PORT: u16 = 51820;
pub const WG_DEFAULT_PORT_V6: u16 = 51821;
/// What WireGuard adds to a packet over an IPv6 underlay (flannel's
/// figure for either family): IPv6 40 + UDP 8 + WireGuard header 16 + tag 16.
pub const WG_OVERHEAD: u32 = 80;

/// How the two address families map onto devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgMode {
    /// One device per family: `flannel-wg` over IPv4, `flannel-wg-v6` over IPv6.
    Separate,
    /// One device for both families; each peer's underlay family chosen per peer.
    Auto,
    /// One device for both families, over IPv4.
    Ipv4,
    /// One device for both families, over IPv6.
    Ipv6,
}

impl WgMode {
    pub fn name(self) -> &'static str {
        match self {
            WgMode::Separate => "separate",
            WgMode::Auto => "auto",
            WgMode::Ipv4 => "ipv4",
            WgMode::Ipv6 => "ipv6",
        }
    }
}

/// wireguard backend keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardConfig {
    pub listen_port: u16,
    pub listen_port_v6: u16,
    /// The underlay MTU to plan with; `None`: the interface's. The
    /// devices get this minus [`WG_OVERHEAD`].
    pub mtu: Option<u32>,
    pub psk: Option<WgSecret>,
    /// Seconds between keepalives; 0 is off.
    pub keepalive: u16,
    pub mode: WgMode,
}

impl Default for WireguardConfig {
    fn default() -> Self {
        WireguardConfig {
            listen_port: WG_DEFAULT_PORT,
            listen_port_v6: WG_DEFAULT_PORT_V6,
            mtu: None,
            psk: None,
            keepalive: 0,
            mode: WgMode::Separate,
        }
    }
}

fn port_field(
    f: &Fields,
    name: &'static str,
    qualified: &'static str,
) -> Result<Option<u16>, ConfigError> {
    match f
        .uint(name, u16::MAX as u64)
        .map_err(|e| requalify(e, qualified))?
    {
        None => Ok(None),
        Some(0) => Err(field_err(qualified, "0 is not a port: use 1 to 65535")),
        Some(p) => Ok(Some(p as u16)),
    }
}

pub(super) fn parse_wireguard(f: &Fields) -> Result<WireguardConfig, ConfigError> {
    let d = WireguardConfig::default();
    let listen_port = port_field(f, "ListenPort", "Backend.ListenPort")?.unwrap_or(d.listen_port);
    let listen_port_v6 =
        port_field(f, "ListenPortV6", "Backend.ListenPortV6")?.unwrap_or(d.listen_port_v6);
    let mtu = super::mtu_field(f)?;
    if let Some(m) = mtu {
        if m < 576 + WG_OVERHEAD {
            return Err(field_err(
                "Backend.MTU",
                format!("{m} leaves less than 576 bytes for pods after WireGuard's {WG_OVERHEAD}"),
            ));
        }
    }
    let psk = match f.string("PSK").map_err(|e| requalify(e, "Backend.PSK"))? {
        None | Some("") => None,
        Some(text) => {
            Some(WgSecret::from_base64(text).map_err(|e| field_err("Backend.PSK", e.to_string()))?)
        }
    };
    // flanneld reads a number of seconds (Go multiplies it by time.Second)
    let keepalive = f
        .uint("PersistentKeepaliveInterval", u16::MAX as u64)
        .map_err(|e| requalify(e, "Backend.PersistentKeepaliveInterval"))?
        .unwrap_or(0) as u16;
    let mode = match f.string("Mode").map_err(|e| requalify(e, "Backend.Mode"))? {
        None | Some("separate") => WgMode::Separate,
        Some("auto") => WgMode::Auto,
        Some("ipv4") => WgMode::Ipv4,
        Some("ipv6") => WgMode::Ipv6,
        Some(other) => {
            return Err(field_err(
                "Backend.Mode",
                format!("{other:?} is not a mode: use separate, auto, ipv4 or ipv6"),
            ))
        }
    };
    Ok(WireguardConfig {
        listen_port,
        listen_port_v6,
        mtu,
        psk,
        keepalive,
        mode,
    })
}

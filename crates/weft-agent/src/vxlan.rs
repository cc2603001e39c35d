//! The vxlan backend's local half: the `flannel.<VNI>` device, its MTU
//! and MAC, and the lease attributes that publish them.

use std::net::IpAddr;

use weft_core::config::VxlanConfig;
use weft_core::lease::{LeaseAttrs, VxlanLeaseData};
use weft_core::MacAddr;
use weft_kernel::{KernelError, LinkState, Netlink, VxlanSpec};

use crate::underlay::Underlay;

/// vxlan over IPv4: outer IP (20) + UDP (8) + vxlan (8) + inner Ethernet (14).
pub const VXLAN_V4_OVERHEAD: u32 = 50;

/// vxlan over IPv6: the outer IPv6 header is 40 bytes.
pub const VXLAN_V6_OVERHEAD: u32 = 70;

/// `flannel.<VNI>`, or `flannel-v6.<VNI>` for the IPv6 data path.
pub fn device_name(vni: u32, v6: bool) -> String {
    if v6 {
        format!("flannel-v6.{vni}")
    } else {
        format!("flannel.{vni}")
    }
}

/// The device MTU: the config's, else the underlay's minus the encapsulation.
pub fn device_mtu(cfg: &VxlanConfig, underlay: &Underlay, v6: bool) -> u32 {
    let overhead = if v6 {
        VXLAN_V6_OVERHEAD
    } else {
        VXLAN_V4_OVERHEAD
    };
    cfg.mtu.unwrap_or(underlay.mtu.saturating_sub(overhead))
}

/// Creates or adopts the device. `previous_mac` (from this host's old
/// lease) is used when the device has to be created, so that peers'
/// neighbour and FDB entries stay valid across reboots.
pub fn ensure_device(
    nl: &mut Netlink,
    cfg: &VxlanConfig,
    underlay: &Underlay,
    previous_mac: Option<MacAddr>,
    v6: bool,
) -> Result<LinkState, KernelError> {
    let mac = previous_mac.unwrap_or_else(|| MacAddr::local_unicast(rand::random()));
    let local = match (v6, underlay.local_ipv6) {
        (true, Some(n)) => IpAddr::V6(n.addr()),
        _ => IpAddr::V4(underlay.local_ip),
    };
    let spec = VxlanSpec {
        name: device_name(cfg.vni, v6),
        vni: cfg.vni,
        local,
        port: cfg.port,
        underlay: underlay.index,
        learning: cfg.learning,
        gbp: cfg.gbp,
        mtu: device_mtu(cfg, underlay, v6),
        mac: Some(mac),
    };
    weft_kernel::ensure_vxlan(nl, &spec)
}

/// The lease value this host publishes: BackendData for the IPv4 device,
/// BackendV6Data (and PublicIPv6) for the IPv6 one.
pub fn lease_attrs(
    cfg: &VxlanConfig,
    underlay: &Underlay,
    mac4: Option<MacAddr>,
    mac6: Option<MacAddr>,
) -> LeaseAttrs {
    let data = |mac: MacAddr| VxlanLeaseData {
        vni: cfg.vni,
        vtep_mac: mac,
    };
    let mut attrs = LeaseAttrs::vxlan(underlay.public_ip, data(mac4.unwrap_or_default()));
    if mac4.is_none() {
        attrs.backend_data = None;
    }
    if let Some(mac) = mac6 {
        attrs.public_ipv6 = underlay.public_ipv6;
        attrs.backend_v6_data = serde_json::value::to_raw_value(&data(mac)).ok();
    }
    attrs
}

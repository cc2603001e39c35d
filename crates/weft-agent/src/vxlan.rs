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

pub fn device_name(vni: u32) -> String {
    format!("flannel.{vni}")
}

/// The device MTU: the config's, else the underlay's minus the encapsulation.
pub fn device_mtu(cfg: &VxlanConfig, underlay: &Underlay) -> u32 {
    cfg.mtu
        .unwrap_or(underlay.mtu.saturating_sub(VXLAN_V4_OVERHEAD))
}

/// Creates or adopts the device. `previous_mac` (from this host's old
/// lease) is used when the device has to be created, so that peers'
/// neighbour and FDB entries stay valid across reboots.
pub fn ensure_device(
    nl: &mut Netlink,
    cfg: &VxlanConfig,
    underlay: &Underlay,
    previous_mac: Option<MacAddr>,
) -> Result<LinkState, KernelError> {
    let mac = previous_mac.unwrap_or_else(|| MacAddr::local_unicast(rand::random()));
    let spec = VxlanSpec {
        name: device_name(cfg.vni),
        vni: cfg.vni,
        local: IpAddr::V4(underlay.local_ip),
        port: cfg.port,
        underlay: underlay.index,
        learning: cfg.learning,
        gbp: cfg.gbp,
        mtu: device_mtu(cfg, underlay),
        mac: Some(mac),
    };
    weft_kernel::ensure_vxlan(nl, &spec)
}

/// The lease value this host publishes.
pub fn lease_attrs(cfg: &VxlanConfig, underlay: &Underlay, mac: MacAddr) -> LeaseAttrs {
    LeaseAttrs::vxlan(
        underlay.public_ip,
        VxlanLeaseData {
            vni: cfg.vni,
            vtep_mac: mac,
        },
    )
}

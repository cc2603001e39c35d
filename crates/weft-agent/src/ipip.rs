//! The ipip backend's local half: `flannel.ipip`, an IPv4-in-IPv4 tunnel
//! from the underlay address, with the underlay's MTU less the outer
//! header, and the lease that publishes this host's public IP.

use weft_kernel::{IpipSpec, KernelError, LinkState, Netlink};

use crate::underlay::Underlay;

/// flannel's device name.
pub const DEVICE: &str = "flannel.ipip";
/// The outer IPv4 header.
pub const OVERHEAD: u32 = 20;

/// Creates or adopts `flannel.ipip`.
pub fn ensure_device(nl: &mut Netlink, underlay: &Underlay) -> Result<LinkState, KernelError> {
    weft_kernel::ensure_ipip(
        nl,
        &IpipSpec {
            name: DEVICE.to_string(),
            local: underlay.local_ip,
            mtu: underlay.mtu.saturating_sub(OVERHEAD),
        },
    )
}

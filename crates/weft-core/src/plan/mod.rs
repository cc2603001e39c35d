//! Planning: from desired peers to kernel operations.
//!
//! - [`dataplane`]: the kernel objects weft owns (routes, neighbours, FDB
//!   entries) as plain data, and the diff between two such sets.
//! - [`desired`]: the desired set, kept incrementally as leases come and go.
//! - [`vxlan`], [`hostgw`], [`ipip`]: what one remote lease means for each backend;
//!   [`wireguard`]: the WireGuard peers it means; [`extension`]: the
//!   user's commands it runs; [`ipsec`]: the ESP policies and IKE
//!   connections it means.

pub mod dataplane;
pub mod desired;
pub mod extension;
pub mod hostgw;
pub mod ipip;
pub mod ipsec;
pub mod relisting;
pub mod vxlan;
pub mod wireguard;

pub use dataplane::Keys;
pub use dataplane::{DataPlane, FdbSpec, NeighSpec, NextHop, NexthopSpec, Op, RouteSpec, RouteVia};
pub use desired::{Desired, PeerEntries};

use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};

/// The backend's plan for remote leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planner {
    Vxlan(vxlan::VxlanPlanner),
    HostGw(hostgw::HostGwPlanner),
    Ipip(ipip::IpipPlanner),
}

impl Planner {
    /// Kernel entries for a remote lease, or why it is unusable.
    pub fn entries(&self, key: &LeaseKey, attrs: &LeaseAttrs) -> Result<PeerEntries, LeaseError> {
        match self {
            Planner::Vxlan(p) => p.entries(key, attrs),
            Planner::HostGw(p) => p.entries(key, attrs),
            Planner::Ipip(p) => p.entries(key, attrs),
        }
    }
}

//! Planning: from desired peers to kernel operations.
//!
//! - [`dataplane`]: the kernel objects weft owns (routes, neighbours, FDB
//!   entries) as plain data, and the diff between two such sets.
//! - [`desired`]: the desired set, kept incrementally as leases come and go.
//! - [`vxlan`]: what one remote lease means for the vxlan backend.

pub mod dataplane;
pub mod desired;
pub mod vxlan;

pub use dataplane::Keys;
pub use dataplane::{DataPlane, FdbSpec, NeighSpec, NextHop, NexthopSpec, Op, RouteSpec, RouteVia};
pub use desired::{Desired, PeerEntries};

//! The weft agent: flanneld's job. Reads the network config from etcd,
//! leases a subnet, writes the subnet file, and keeps the kernel's vxlan
//! data path equal to the other hosts' leases.
//!
//! Flow: [`flags`] → [`underlay`] (which interface) → [`acquire`] (which
//! subnet) → [`vxlan`] (device) → [`reconcile`] (routes, neighbours, FDB),
//! driven by [`run`] from the etcd watch; [`cli`] is the program around it.

pub mod acquire;
pub mod cli;
pub mod flags;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod subnet_file;
pub mod udp;
pub mod underlay;
pub mod vxlan;

pub use flags::AgentArgs;
pub use run::{run, AgentExit};

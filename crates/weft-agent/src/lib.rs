//! The weft agent: flanneld's job. Takes the network config and this
//! host's subnet lease from etcd or from the Kubernetes API, writes the
//! subnet file, and keeps the kernel's data path equal to the other
//! hosts' leases.
//!
//! Flow: [`flags`] → [`source`] (where leases come from: etcd or
//! Kubernetes) → [`underlay`] (which interface) → [`datapath`] (the
//! backend's devices: [`vxlan`], [`udp`], [`ipip`],
//! [`wireguard`]; [`extension`] runs the user's commands instead) → [`subnet_file`] and
//! [`firewall`] → [`follow`] (lease events) → [`reconcile`] (routes,
//! neighbours, FDB); [`run`] puts them in order, [`cli`] is the program
//! around it.

pub mod cli;
pub mod datapath;
pub mod extension;
pub mod firewall;
pub mod flags;
pub mod follow;
pub mod gso;
pub mod ipip;
pub mod ipsec;
pub mod metrics;
pub mod network;
pub mod options;
pub mod reconcile;
pub mod run;
pub mod source;
pub mod subnet_file;
pub mod udp;
pub mod underlay;
pub mod vxlan;
pub mod wireguard;

pub use flags::AgentArgs;
pub use run::{run, AgentExit};

/// A value that cannot exist: what "runs until it fails" returns on success.
pub enum Never {}

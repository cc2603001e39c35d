//! weft's pure core: flannel's wire formats (network config, lease keys and
//! values, the subnet file) and the planning that turns desired state into
//! kernel operations. Nothing here does I/O; everything is unit-tested
//! without privileges.

pub mod admission;
pub mod command;
pub mod config;
pub mod docker_opts;
pub mod duration;
pub mod kube_node;
pub mod kube_proto;
pub mod lease;
pub mod mac;
pub mod plan;
pub mod subnet;
pub mod subnet_file;
pub mod vici;
pub mod wg_key;
pub mod wg_uapi;

pub use config::{BackendConfig, ConfigError, NetConfig, VxlanConfig};
pub use lease::{LeaseAttrs, LeaseError, LeaseKey};
pub use mac::MacAddr;
pub use wg_key::{WgKey, WgSecret};

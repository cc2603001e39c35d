//! flannel's CNI plugin: reads the node's subnet file and delegates to the
//! `bridge` plugin with `host-local` IPAM over the node subnet and a route
//! to the cluster network. The delegated config is saved per container so
//! DEL works after the subnet file is gone.
//!
//! [`conf`] is pure (netconf in, delegate conf out); [`plugin`] does the
//! I/O (environment, files, executing the delegate).

pub mod conf;
pub mod error;
pub mod plugin;

pub use error::CniError;
pub use plugin::{run, CniEnv};

/// CNI spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

//! weft's service proxy (kube-proxy's job): Service virtual IPs, NodePorts
//! and random load balancing over endpoints, programmed through iptables
//! (kube-proxy's chains, one `iptables-restore --noflush` transaction) or
//! nftables (kube-proxy's verdict maps, incremental `nft -f`).
//!
//! Data flows through the folders in order:
//! - [`config_file`]: kube-proxy's `KubeProxyConfiguration` file (pure);
//! - [`spec`]: service and endpoint definitions, parsed and validated (pure);
//! - [`plan`]: what each service port needs on this node, and
//!   ([`plan::policy`]) every decision about its traffic (pure);
//! - [`render`]: those decisions written as iptables-restore / nft text
//!   (pure; renderers decide nothing);
//! - [`shell`]: options by part, the sources (etcd store, Kubernetes API),
//!   the sync loop and the firewall;
//! - [`cli`]: the flags, for `weft proxy` and the proxy-only `weft-proxy`.
//!
//! [`halves`] splits a full sync's pure steps (plans, rendered ports) over
//! two threads at thousands of Services.

#[cfg(feature = "cli")]
pub mod cli;
pub mod config_file;
pub mod halves;
pub mod plan;
pub mod render;
#[cfg(feature = "shell")]
pub mod shell;
pub mod spec;

/// The packet mark asking for masquerade, shared with kube-proxy and with
/// the agent's ip-masq rules (which leave marked packets alone).
pub const MASQ_MARK: &str = "0x4000";

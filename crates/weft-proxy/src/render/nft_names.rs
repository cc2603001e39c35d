//! Names in weft's nftables table that both the rules ([`super::nft`])
//! and the map elements ([`super::nft_element`]) refer to: the shared
//! verdict maps, the reject chain and the balancing pools.

/// The verdict maps: service IPs and node ports to their chains, and the
/// destinations of ports without (local) endpoints to drop or reject.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// The chain a port without endpoints jumps to.
pub const REJECT_CHAIN: &str = "reject-chain";

/// Where a plain service port's traffic is balanced: one chain and one
/// map per kind and endpoint count, shared by every such port.
///
/// Measured (10,000 services × 10 endpoints, nft 1.0.6, kernel 6.18): the
/// full sync applies in 1.1 s this way against 2.9 s with a chain of
/// `numgen` rules per port, and adding a service in 4 ms against 25 ms
/// (60 ms with those chains in one table rather than 16), because nft
/// fetches every chain of the ruleset before each transaction and the
/// kernel re-validates every chain of the table after it. Each pool map
/// is bound by one rule; earlier attempts where every service's own rule
/// used a map were slower still: an inline `numgen` map per service is an
/// anonymous set, and naming one is linear in the table's sets (6.7 s at
/// 3,000 services), and one endpoint map bound by every service rule cost
/// elements × bindings in the kernel (21 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pool {
    /// To node ports (always masqueraded, keyed without address) rather
    /// than to cluster IPs.
    pub node_port: bool,
    /// Endpoints per port.
    pub n: usize,
}

impl Pool {
    fn kind(&self) -> &'static str {
        if self.node_port {
            "nodeport"
        } else {
            "service"
        }
    }

    pub fn chain(&self) -> String {
        format!("{}-balance-{}", self.kind(), self.n)
    }

    pub fn map(&self) -> String {
        format!("{}-endpoints-{}", self.kind(), self.n)
    }
}

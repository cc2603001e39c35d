//! Names in weft's nftables table that both the rules ([`super::nft`])
//! and the map elements ([`super::nft_element`]) refer to: the shared
//! verdict maps, the reject chain and the balancing pools.

/// The verdict maps: service IPs and node ports to their chains, and the
/// destinations of ports without (local) endpoints to drop or reject.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// A map or set of the table's own (not a pool's), as elements name it:
/// one byte, where its name would be sixteen (the proxy keeps 110,000
/// elements at 10,000 services × 10 endpoints). Declared in the order
/// of their names, the order batches write maps in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FixedMap {
    /// `endpoint . endpoint` pairs: connections from an endpoint to itself.
    Hairpin,
    NoEndpointNodeports,
    NoEndpointServices,
    ServiceIps,
    ServiceNodeports,
}

/// The hairpin set's name.
pub const HAIRPIN: &str = "hairpin-endpoints";

impl FixedMap {
    pub fn name(self) -> &'static str {
        match self {
            FixedMap::ServiceIps => SERVICE_IPS,
            FixedMap::ServiceNodeports => SERVICE_NODEPORTS,
            FixedMap::NoEndpointServices => NO_ENDPOINT_SERVICES,
            FixedMap::NoEndpointNodeports => NO_ENDPOINT_NODEPORTS,
            FixedMap::Hairpin => HAIRPIN,
        }
    }

    /// Whether its elements send traffic into the table's chains and
    /// pools (a cold start adds these last, once the pools are full).
    pub fn is_live(self) -> bool {
        self != FixedMap::Hairpin
    }
}

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
    pub n: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_maps_sort_as_their_names() {
        let maps = [
            FixedMap::Hairpin,
            FixedMap::NoEndpointNodeports,
            FixedMap::NoEndpointServices,
            FixedMap::ServiceIps,
            FixedMap::ServiceNodeports,
        ];
        let mut names: Vec<&str> = maps.iter().map(|m| m.name()).collect();
        names.sort();
        assert_eq!(names, maps.map(|m| m.name()));
        assert!(maps.windows(2).all(|w| w[0] < w[1]));
    }
}

//! What one service port owns in the kube-proxy table ([`PortNft`], as
//! the proxy keeps it between syncs) and the objects ports share
//! ([`SharedRefs`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::nft_element::{Element, PoolMembers};
use super::nft_names::Pool;

/// Objects many service ports share, with how many ports use each: the
/// hairpin pairs (an endpoint IP can back several ports and services; its
/// pair `ip . ip` leaves the set with the last one) and the balancing
/// pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRefs {
    pub pairs: BTreeMap<IpAddr, u32>,
    pub pools: BTreeMap<Pool, usize>,
}

impl SharedRefs {
    pub fn new() -> SharedRefs {
        SharedRefs::default()
    }

    /// The counts of `ports` (after a failed transaction, to start again
    /// from what the kernel still holds).
    pub fn of<'a>(ports: impl IntoIterator<Item = &'a PortNft>) -> SharedRefs {
        let mut refs = SharedRefs::new();
        for p in ports {
            for ip in &p.pairs {
                *refs.pairs.entry(*ip).or_insert(0) += 1;
            }
            for pool in &p.pools {
                *refs.pools.entry(*pool).or_insert(0) += 1;
            }
        }
        refs
    }
}

/// Everything one service port owns in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortNft {
    /// Affinity sets: name and timeout in seconds.
    pub sets: Vec<(String, u32)>,
    /// Chains and their rules, endpoint chains before the chains that use them.
    pub chains: Vec<(String, Vec<String>)>,
    /// Elements of the table's own maps (a pool's are in `members`).
    pub elements: Vec<Element>,
    /// The port's elements in the balancing pools' maps.
    pub members: Vec<PoolMembers>,
    /// Endpoint IPs whose pair `ip . ip` is in the shared hairpin set
    /// (reference-counted across ports).
    pub pairs: Vec<IpAddr>,
    /// Shared balancing pools the port's elements live in.
    pub pools: Vec<Pool>,
}

impl PortNft {
    pub fn empty() -> &'static PortNft {
        static EMPTY: PortNft = PortNft {
            sets: Vec::new(),
            chains: Vec::new(),
            elements: Vec::new(),
            members: Vec::new(),
            pairs: Vec::new(),
            pools: Vec::new(),
        };
        &EMPTY
    }
}

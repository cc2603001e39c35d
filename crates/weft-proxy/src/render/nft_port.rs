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
            for pool in p.pools() {
                *refs.pools.entry(pool).or_insert(0) += 1;
            }
        }
        refs
    }
}

/// Everything one service port owns in the table, as the proxy keeps it
/// between syncs (one per service port: 10,000 at 10,000 Services). A
/// plain port, the common case, owns no chain or set, so those live
/// behind one pointer; everything is a boxed slice, sized exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortNft {
    /// Elements of the table's own maps (a pool's are in `members`).
    pub elements: Box<[Element]>,
    /// The port's elements in the balancing pools' maps; their pools are
    /// the shared pools the port lives in.
    pub members: Box<[PoolMembers]>,
    /// Endpoint IPs whose pair `ip . ip` is in the shared hairpin set
    /// (reference-counted across ports).
    pub pairs: Box<[IpAddr]>,
    /// The port's own chains and sets: none for a plain port.
    pub owned: Option<Box<OwnedObjects>>,
}

/// The chains and sets of a port that has its own (ClientIP affinity, a
/// Local traffic policy, external addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedObjects {
    /// Affinity sets: name and timeout in seconds.
    pub sets: Vec<(String, u32)>,
    /// Chains and their rules, endpoint chains before the chains that use them.
    pub chains: Vec<(String, Vec<String>)>,
}

/// A port as the renderer builds it, before it is kept.
#[derive(Debug, Default)]
pub struct PortDraft {
    pub sets: Vec<(String, u32)>,
    pub chains: Vec<(String, Vec<String>)>,
    pub elements: Vec<Element>,
    pub members: Vec<PoolMembers>,
    pub pairs: Vec<IpAddr>,
}

impl From<PortDraft> for PortNft {
    fn from(mut d: PortDraft) -> PortNft {
        let owned = (!d.sets.is_empty() || !d.chains.is_empty()).then(|| {
            d.sets.shrink_to_fit();
            d.chains.shrink_to_fit();
            Box::new(OwnedObjects {
                sets: d.sets,
                chains: d.chains,
            })
        });
        PortNft {
            elements: d.elements.into_boxed_slice(),
            members: d.members.into_boxed_slice(),
            pairs: d.pairs.into_boxed_slice(),
            owned,
        }
    }
}

impl PortNft {
    pub fn empty() -> &'static PortNft {
        static EMPTY: std::sync::OnceLock<PortNft> = std::sync::OnceLock::new();
        EMPTY.get_or_init(PortNft::default)
    }

    /// The port's affinity sets.
    pub fn sets(&self) -> &[(String, u32)] {
        self.owned.as_deref().map_or(&[], |o| &o.sets)
    }

    /// The port's own chains.
    pub fn chains(&self) -> &[(String, Vec<String>)] {
        self.owned.as_deref().map_or(&[], |o| &o.chains)
    }

    /// The shared balancing pools the port's elements live in.
    pub fn pools(&self) -> impl Iterator<Item = Pool> + '_ {
        self.members.iter().map(|m| m.pool)
    }
}

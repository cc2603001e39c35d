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
/// pools; and the sizes their kernel sets were made with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRefs {
    pub pairs: BTreeMap<IpAddr, u32>,
    /// Per pool, the pool keys (port and address) in it: `n` elements each.
    pub pools: BTreeMap<Pool, usize>,
    pub sizes: SetSizes,
}

/// The `size` the large shared sets were declared with. A set with a
/// size is a fixed hash table in the kernel (`nft_hash`), where one
/// without is a resizable one (`rhashtable`) that a large load keeps
/// growing and rehashing (`rhashtable_insert_slow` was the top of a cold
/// start's profile). At 255,000 endpoints the elements of the bench's
/// netlink floor took 133-198 ms with sizes against 284-306 without
/// (`weft-bench --scenario proxy-scale --scale-services 5000`). The
/// kernel refuses elements past the size: a sync that would pass it
/// raises the size in place, or writes the table again when the set
/// has outgrown its hash table ([`super::nft::NftRenderer::grow_sets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetSizes {
    pub pools: BTreeMap<Pool, SetSize>,
    pub hairpin: SetSize,
}

/// One shared set's size: the one it was made with (its kernel hash
/// table's buckets follow from it and never change) and the one it has
/// now (raised in place since).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetSize {
    pub made: u32,
    pub now: u32,
}

impl SetSize {
    /// A set just made with `size`.
    pub fn made(size: u32) -> SetSize {
        SetSize {
            made: size,
            now: size,
        }
    }
}

/// A set the ports share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSet {
    Hairpin,
    Pool(Pool),
}

impl SharedSet {
    pub fn name(&self) -> String {
        match self {
            SharedSet::Hairpin => super::nft_names::HAIRPIN.to_string(),
            SharedSet::Pool(p) => p.map(),
        }
    }
}

/// The smallest size a shared set is made with (its kernel table: 2,048
/// buckets, 16 KiB).
pub const MIN_SET_SIZE: u32 = 1024;

/// The size a shared set holding `elements` is made with: half as many
/// again, in steps of [`MIN_SET_SIZE`]. More room would cost more than it
/// saves: the kernel allocates and clears 4/3 of the size in buckets,
/// rounded up to a power of two, when the set is made (8 MiB and about 50
/// ms at a size of 524,288).
pub fn set_size(elements: usize) -> u32 {
    let step = MIN_SET_SIZE as usize;
    let want = elements
        .saturating_add(elements / 2)
        .div_ceil(step)
        .max(1)
        .saturating_mul(step);
    u32::try_from(want).unwrap_or(u32::MAX)
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

    /// The elements of `pool`'s map.
    pub fn pool_elements(&self, pool: &Pool) -> usize {
        self.pools.get(pool).copied().unwrap_or(0) * pool.n as usize
    }

    /// The shared sets holding more elements than their size now, with
    /// their elements and sizes: the kernel would refuse the transaction
    /// that fills them so.
    pub fn outgrown(&self) -> Vec<(SharedSet, usize, SetSize)> {
        let mut out = Vec::new();
        if self.pairs.len() > self.sizes.hairpin.now as usize {
            out.push((SharedSet::Hairpin, self.pairs.len(), self.sizes.hairpin));
        }
        for pool in self.pools.keys() {
            let size = self.sizes.pools.get(pool).copied().unwrap_or_default();
            let elements = self.pool_elements(pool);
            if elements > size.now as usize {
                out.push((SharedSet::Pool(*pool), elements, size));
            }
        }
        out
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

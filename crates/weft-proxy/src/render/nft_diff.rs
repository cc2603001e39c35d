//! How two renderings of one service port differ, in time linear in
//! the port's size: pool elements slot by slot, everything else looked
//! up through a hash set once a port has many of it.

use std::collections::HashSet;
use std::hash::Hash;

use super::nft_batch::NftBatch;
use super::nft_element::{Element, MapName, Member, PoolMembers};
use super::nft_names::FixedMap;
use super::nft_port::{PortNft, SharedRefs};

/// The shared objects' counts after `old` becomes `new`: a hairpin pair
/// is added with its first port and removed with its last; pools are
/// only counted ([`super::nft::NftRenderer::update_pools`] creates and
/// deletes them).
pub(super) fn update_shared(
    batch: &mut NftBatch,
    refs: &mut SharedRefs,
    old: &PortNft,
    new: &PortNft,
) {
    let hairpin = MapName::Fixed(FixedMap::Hairpin);
    let (old_pairs, new_pairs) = (Among::new(&old.pairs), Among::new(&new.pairs));
    for ip in new.pairs.iter().filter(|p| !old_pairs.has(p)) {
        let n = refs.pairs.entry(*ip).or_insert(0);
        *n += 1;
        if *n == 1 {
            batch.add(hairpin, Member::Pair(*ip), None);
        }
    }
    for ip in old.pairs.iter().filter(|p| !new_pairs.has(p)) {
        if let Some(n) = refs.pairs.get_mut(ip) {
            *n -= 1;
            if *n == 0 {
                refs.pairs.remove(ip);
                batch.remove(hairpin, Member::Pair(*ip));
            }
        }
    }
    for pool in new.pools() {
        *refs.pools.entry(pool).or_insert(0) += 1;
    }
    for pool in old.pools() {
        if let Some(n) = refs.pools.get_mut(&pool) {
            *n -= 1;
            if *n == 0 {
                refs.pools.remove(&pool);
            }
        }
    }
}

/// The names of a port's chains or sets.
pub(super) fn names<T>(objects: &[(String, T)]) -> Vec<&str> {
    objects.iter().map(|(n, _)| n.as_str()).collect()
}

/// A port's objects of one kind, asked whether they hold a value: by
/// a hash set once they are many. Comparing a port with its previous
/// rendering by a linear search each was quadratic in its endpoints (a
/// 5,000-endpoint Service has 5,000 hairpin pairs, and with affinity as
/// many endpoint chains and sets).
pub(super) struct Among<'a, T> {
    items: &'a [T],
    index: Option<HashSet<&'a T>>,
}

impl<'a, T: Eq + Hash> Among<'a, T> {
    /// Up to this many, a linear search (a port of a few endpoints
    /// builds no set).
    const LINEAR: usize = 16;

    pub(super) fn new(items: &'a [T]) -> Among<'a, T> {
        let index = (items.len() > Self::LINEAR).then(|| items.iter().collect());
        Among { items, index }
    }

    pub(super) fn has(&self, x: &T) -> bool {
        match &self.index {
            Some(set) => set.contains(x),
            None => self.items.contains(x),
        }
    }
}

/// The pool elements that differ between `old` and `new`, slot by slot:
/// a slot whose endpoint changed is removed and added again.
pub(super) fn update_members(batch: &mut NftBatch, old: &[PoolMembers], new: &[PoolMembers]) {
    for e in old.iter().flat_map(|m| changed_slots(m, new)) {
        batch.remove(e.map, Member::Key(e.key));
    }
    for e in new.iter().flat_map(|m| changed_slots(m, old)) {
        batch.add(e.map, Member::Key(e.key), Some(e.value));
    }
}

/// The elements of `m` whose slot holds another endpoint, or none, in
/// the same key's members among `other`.
fn changed_slots<'a>(
    m: &'a PoolMembers,
    other: &'a [PoolMembers],
) -> impl Iterator<Item = Element> + 'a {
    let counterpart = other.iter().find(|o| o.same_key(m));
    m.elements()
        .enumerate()
        .filter(move |(i, _)| counterpart.and_then(|o| o.at(*i)) != m.at(*i))
        .map(|(_, e)| e)
}

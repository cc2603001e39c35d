//! The desired data plane, maintained incrementally as peers come and go,
//! so that one lease event costs O(1) rather than a rebuild.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::dataplane::{
    diff_keys, DataPlane, FdbSpec, Keys, NeighSpec, NexthopSpec, Op, RouteSpec,
};
use crate::mac::MacAddr;

/// What one remote lease asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntries {
    pub route: RouteSpec,
    pub nexthop: Option<NexthopSpec>,
    pub neigh: Option<NeighSpec>,
    pub fdb: Option<FdbSpec>,
}

/// Desired kernel state for a set of peers, keyed by each peer's subnet.
///
/// Changing one peer returns exactly the operations that take the kernel
/// from the old desired state to the new one, found by diffing only the
/// handful of keys that peer touches: no second copy of the kernel state
/// is kept. (Every operation is an idempotent replace or delete, and a
/// failed one leads to a full pass against the kernel, so the previous
/// desired state is a sound base.)
///
/// Routes and neighbours are unique per subnet. An FDB key (device, MAC)
/// can be claimed by two leases at once (a host that moved to a new subnet
/// while its old lease lives on); it stays desired while any lease claims it.
#[derive(Debug, Default, Clone)]
pub struct Desired {
    peers: HashMap<IpNet, PeerKeys>,
    plane: DataPlane,
    /// Extra claims on FDB keys claimed by more than one peer.
    shared_fdb: HashMap<(u32, MacAddr), u32>,
}

/// What one peer put into the plane, beyond its route (keyed by subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerKeys {
    nexthop: Option<u32>,
    neigh: Option<(u32, IpAddr)>,
    fdb: Option<FdbSpec>,
}

impl Desired {
    /// An empty state with room for `peers` peers.
    pub fn with_capacity(peers: usize) -> Self {
        let mut d = Desired::default();
        d.peers.reserve(peers);
        d.plane.routes.reserve(peers);
        d.plane.nexthops.reserve(peers);
        d.plane.neighs.reserve(peers);
        d.plane.fdb.reserve(peers);
        d
    }

    pub fn plane(&self) -> &DataPlane {
        &self.plane
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn contains(&self, subnet: &IpNet) -> bool {
        self.peers.contains_key(subnet)
    }

    /// Adds or changes a peer; returns the operations that apply the change.
    pub fn upsert(&mut self, subnet: IpNet, entries: PeerEntries) -> Vec<Op> {
        let mut keys = self.keys_of(subnet);
        add_keys(&mut keys, &entries);
        let before = self.snapshot(&keys);
        self.remove_peer(subnet);
        self.insert_peer(subnet, entries);
        diff_keys(&before, &self.plane, &keys)
    }

    /// Drops a peer; returns the operations that apply the change.
    pub fn remove(&mut self, subnet: IpNet) -> Vec<Op> {
        let keys = self.keys_of(subnet);
        let before = self.snapshot(&keys);
        self.remove_peer(subnet);
        diff_keys(&before, &self.plane, &keys)
    }

    /// Replaces every peer (callers then diff the plane against the kernel).
    pub fn reset(&mut self, peers: impl ExactSizeIterator<Item = (IpNet, PeerEntries)>) {
        *self = Desired::with_capacity(peers.len());
        for (subnet, entries) in peers {
            self.remove_peer(subnet);
            self.insert_peer(subnet, entries);
        }
    }

    fn keys_of(&self, subnet: IpNet) -> Keys {
        let mut keys = Keys::default();
        if let Some(p) = self.peers.get(&subnet) {
            keys.routes.push(subnet);
            keys.nexthops.extend(p.nexthop);
            keys.neighs.extend(p.neigh);
            keys.fdb.extend(p.fdb.map(|f| (f.ifindex, f.mac)));
        }
        keys
    }

    /// The current values of `keys` only.
    fn snapshot(&self, keys: &Keys) -> DataPlane {
        let mut d = DataPlane::default();
        for k in &keys.routes {
            if let Some(v) = self.plane.routes.get(k) {
                d.routes.insert(*k, *v);
            }
        }
        for k in &keys.nexthops {
            if let Some(v) = self.plane.nexthops.get(k) {
                d.nexthops.insert(*k, *v);
            }
        }
        for k in &keys.neighs {
            if let Some(v) = self.plane.neighs.get(k) {
                d.neighs.insert(*k, *v);
            }
        }
        for k in &keys.fdb {
            if let Some(v) = self.plane.fdb.get(k) {
                d.fdb.insert(*k, *v);
            }
        }
        d
    }

    fn insert_peer(&mut self, subnet: IpNet, e: PeerEntries) {
        self.plane.routes.insert(e.route.dst, e.route);
        if let Some(n) = e.nexthop {
            self.plane.nexthops.insert(n.id, n);
        }
        if let Some(n) = e.neigh {
            self.plane.neighs.insert((n.ifindex, n.ip), n);
        }
        if let Some(f) = e.fdb {
            let key = (f.ifindex, f.mac);
            if self.plane.fdb.insert(key, f).is_some() {
                *self.shared_fdb.entry(key).or_default() += 1;
            }
        }
        let keys = PeerKeys {
            nexthop: e.nexthop.map(|n| n.id),
            neigh: e.neigh.map(|n| (n.ifindex, n.ip)),
            fdb: e.fdb,
        };
        self.peers.insert(subnet, keys);
    }

    fn remove_peer(&mut self, subnet: IpNet) {
        let Some(old) = self.peers.remove(&subnet) else {
            return;
        };
        self.plane.routes.remove(&subnet);
        if let Some(id) = old.nexthop {
            self.plane.nexthops.remove(&id);
        }
        if let Some(k) = old.neigh {
            self.plane.neighs.remove(&k);
        }
        if let Some(f) = old.fdb {
            self.release_fdb(f);
        }
    }

    fn release_fdb(&mut self, f: FdbSpec) {
        let key = (f.ifindex, f.mac);
        match self.shared_fdb.get_mut(&key) {
            None => {
                self.plane.fdb.remove(&key);
            }
            Some(extra) => {
                *extra -= 1;
                if *extra == 0 {
                    self.shared_fdb.remove(&key);
                }
                // Rare: another lease still claims this MAC; it decides the entry.
                if let Some(other) = self
                    .peers
                    .values()
                    .filter_map(|p| p.fdb)
                    .find(|o| (o.ifindex, o.mac) == key)
                {
                    self.plane.fdb.insert(key, other);
                }
            }
        }
    }
}

fn add_keys(keys: &mut Keys, e: &PeerEntries) {
    keys.routes.push(e.route.dst);
    keys.nexthops.extend(e.nexthop.map(|n| n.id));
    if let Some(n) = e.neigh {
        keys.neighs.push((n.ifindex, n.ip));
    }
    if let Some(f) = e.fdb {
        keys.fdb.push((f.ifindex, f.mac));
    }
}

#[cfg(test)]
mod tests;

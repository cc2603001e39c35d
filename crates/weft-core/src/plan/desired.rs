//! The desired data plane, maintained incrementally as peers come and go,
//! so that one lease event costs O(1) rather than a rebuild.

use std::collections::HashMap;

use ipnet::IpNet;

use super::dataplane::{DataPlane, FdbSpec, Keys, NeighSpec, RouteSpec};
use crate::mac::MacAddr;

/// What one remote lease asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntries {
    pub route: RouteSpec,
    pub neigh: Option<NeighSpec>,
    pub fdb: Option<FdbSpec>,
}

/// Desired kernel state for a set of peers, keyed by each peer's subnet.
///
/// Routes and neighbours are unique per subnet. An FDB key (device, MAC)
/// can be claimed by two leases at once (a host that moved to a new subnet
/// while its old lease lives on); it stays desired while any lease claims it.
#[derive(Debug, Default, Clone)]
pub struct Desired {
    peers: HashMap<IpNet, PeerEntries>,
    plane: DataPlane,
    fdb_claims: HashMap<(u32, MacAddr), u32>,
}

impl Desired {
    pub fn plane(&self) -> &DataPlane {
        &self.plane
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn peer(&self, subnet: &IpNet) -> Option<&PeerEntries> {
        self.peers.get(subnet)
    }

    pub fn subnets(&self) -> impl Iterator<Item = &IpNet> {
        self.peers.keys()
    }

    /// Adds or changes a peer; returns the keys whose desired value may differ.
    pub fn upsert(&mut self, subnet: IpNet, entries: PeerEntries) -> Keys {
        let mut keys = self.remove(subnet);
        add_keys(&mut keys, &entries);
        self.plane.routes.insert(entries.route.dst, entries.route);
        if let Some(n) = entries.neigh {
            self.plane.neighs.insert((n.ifindex, n.ip), n);
        }
        if let Some(f) = entries.fdb {
            self.plane.fdb.insert((f.ifindex, f.mac), f);
            *self.fdb_claims.entry((f.ifindex, f.mac)).or_default() += 1;
        }
        self.peers.insert(subnet, entries);
        keys
    }

    /// Drops a peer; returns the keys whose desired value may differ.
    pub fn remove(&mut self, subnet: IpNet) -> Keys {
        let mut keys = Keys::default();
        let Some(old) = self.peers.remove(&subnet) else {
            return keys;
        };
        add_keys(&mut keys, &old);
        self.plane.routes.remove(&old.route.dst);
        if let Some(n) = old.neigh {
            self.plane.neighs.remove(&(n.ifindex, n.ip));
        }
        if let Some(f) = old.fdb {
            self.release_fdb(f);
        }
        keys
    }

    /// Replaces every peer; returns nothing because callers diff in full.
    pub fn reset(&mut self, peers: impl IntoIterator<Item = (IpNet, PeerEntries)>) {
        *self = Desired::default();
        for (subnet, entries) in peers {
            self.upsert(subnet, entries);
        }
    }

    fn release_fdb(&mut self, f: FdbSpec) {
        let key = (f.ifindex, f.mac);
        let left = match self.fdb_claims.get_mut(&key) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.fdb_claims.remove(&key);
            self.plane.fdb.remove(&key);
        } else if let Some(other) = self
            .peers
            .values()
            .filter_map(|p| p.fdb)
            .find(|o| (o.ifindex, o.mac) == key)
        {
            // Rare: another lease still claims this MAC; it decides the entry.
            self.plane.fdb.insert(key, other);
        }
    }
}

fn add_keys(keys: &mut Keys, e: &PeerEntries) {
    keys.routes.push(e.route.dst);
    if let Some(n) = e.neigh {
        keys.neighs.push((n.ifindex, n.ip));
    }
    if let Some(f) = e.fdb {
        keys.fdb.push((f.ifindex, f.mac));
    }
}

/// Convenience for tests and planners: a neighbour spec.
pub fn neigh(ifindex: u32, ip: std::net::IpAddr, mac: MacAddr) -> NeighSpec {
    NeighSpec { ifindex, ip, mac }
}

#[cfg(test)]
mod tests;

//! Kernel objects weft owns, as data, and the operations between two sets.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::mac::MacAddr;

/// A route in the main table to a remote subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub via: RouteVia,
}

/// How a route reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteVia {
    /// A gateway on an interface (`via GW dev DEV [onlink]`).
    Gateway(NextHop),
    /// A nexthop object by id (`nhid ID`). The kernel shares route state
    /// by nexthop object; routes that differ only by gateway would all
    /// hash alike and make each insertion linear in the route count.
    Nexthop(u32),
}

/// A gateway on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// Output interface index.
    pub oif: u32,
    /// `onlink`: the gateway is reachable on `oif` without a covering route.
    pub onlink: bool,
}

/// A nexthop object (`ip nexthop add id ID via GW dev DEV [onlink]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NexthopSpec {
    pub id: u32,
    pub hop: NextHop,
}

/// A permanent neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighSpec {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A permanent bridge FDB entry on a vxlan device: `mac dst <ip> self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdbSpec {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub dst: IpAddr,
}

/// One change to the kernel. Replace operations are idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ReplaceRoute(RouteSpec),
    DeleteRoute(RouteSpec),
    ReplaceNexthop(NexthopSpec),
    DeleteNexthop(NexthopSpec),
    ReplaceNeigh(NeighSpec),
    DeleteNeigh(NeighSpec),
    ReplaceFdb(FdbSpec),
    DeleteFdb(FdbSpec),
}

/// A set of routes, neighbours and FDB entries, keyed the way the kernel
/// keys them (route by destination, neighbour by device+IP, FDB by device+MAC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPlane {
    pub routes: HashMap<IpNet, RouteSpec>,
    pub nexthops: HashMap<u32, NexthopSpec>,
    pub neighs: HashMap<(u32, IpAddr), NeighSpec>,
    pub fdb: HashMap<(u32, MacAddr), FdbSpec>,
}

impl DataPlane {
    pub fn len(&self) -> usize {
        self.routes.len() + self.nexthops.len() + self.neighs.len() + self.fdb.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the effect of an operation that the kernel accepted.
    pub fn record(&mut self, op: &Op) {
        match *op {
            Op::ReplaceRoute(r) => {
                self.routes.insert(r.dst, r);
            }
            Op::DeleteRoute(r) => {
                self.routes.remove(&r.dst);
            }
            Op::ReplaceNexthop(n) => {
                self.nexthops.insert(n.id, n);
            }
            Op::DeleteNexthop(n) => {
                self.nexthops.remove(&n.id);
            }
            Op::ReplaceNeigh(n) => {
                self.neighs.insert((n.ifindex, n.ip), n);
            }
            Op::DeleteNeigh(n) => {
                self.neighs.remove(&(n.ifindex, n.ip));
            }
            Op::ReplaceFdb(f) => {
                self.fdb.insert((f.ifindex, f.mac), f);
            }
            Op::DeleteFdb(f) => {
                self.fdb.remove(&(f.ifindex, f.mac));
            }
        }
    }
}

/// Keys whose desired value may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub routes: Vec<IpNet>,
    pub nexthops: Vec<u32>,
    pub neighs: Vec<(u32, IpAddr)>,
    pub fdb: Vec<(u32, MacAddr)>,
}

/// Every operation that turns `current` into `desired`, ordered so that no
/// route ever points at a missing nexthop or neighbour: route deletions
/// first, then FDB, neighbour and nexthop replacements, route
/// replacements, and finally nexthop, neighbour and FDB deletions.
pub fn diff(current: &DataPlane, desired: &DataPlane) -> Vec<Op> {
    let keys = Keys {
        routes: current
            .routes
            .keys()
            .chain(desired.routes.keys())
            .copied()
            .collect(),
        nexthops: current
            .nexthops
            .keys()
            .chain(desired.nexthops.keys())
            .copied()
            .collect(),
        neighs: current
            .neighs
            .keys()
            .chain(desired.neighs.keys())
            .copied()
            .collect(),
        fdb: current
            .fdb
            .keys()
            .chain(desired.fdb.keys())
            .copied()
            .collect(),
    };
    diff_keys(current, desired, &keys)
}

/// Like [`diff`] but only over the given keys (duplicates are fine).
pub fn diff_keys(current: &DataPlane, desired: &DataPlane, keys: &Keys) -> Vec<Op> {
    let (route_set, route_del) = diff_map(
        &current.routes,
        &desired.routes,
        &keys.routes,
        Op::ReplaceRoute,
        Op::DeleteRoute,
    );
    let (nh_set, nh_del) = diff_map(
        &current.nexthops,
        &desired.nexthops,
        &keys.nexthops,
        Op::ReplaceNexthop,
        Op::DeleteNexthop,
    );
    let (neigh_set, neigh_del) = diff_map(
        &current.neighs,
        &desired.neighs,
        &keys.neighs,
        Op::ReplaceNeigh,
        Op::DeleteNeigh,
    );
    let (fdb_set, fdb_del) = diff_map(
        &current.fdb,
        &desired.fdb,
        &keys.fdb,
        Op::ReplaceFdb,
        Op::DeleteFdb,
    );
    let mut ops = route_del;
    ops.extend(fdb_set);
    ops.extend(neigh_set);
    ops.extend(nh_set);
    ops.extend(route_set);
    ops.extend(nh_del);
    ops.extend(neigh_del);
    ops.extend(fdb_del);
    ops
}

/// (replacements, deletions) for one keyed map, each key considered once.
fn diff_map<K, V>(
    current: &HashMap<K, V>,
    desired: &HashMap<K, V>,
    keys: &[K],
    set: impl Fn(V) -> Op,
    del: impl Fn(V) -> Op,
) -> (Vec<Op>, Vec<Op>)
where
    K: Hash + Eq + Copy,
    V: PartialEq + Copy,
{
    let mut seen = HashSet::with_capacity(keys.len());
    let (mut sets, mut dels) = (Vec::new(), Vec::new());
    for k in keys {
        if !seen.insert(*k) {
            continue;
        }
        match (current.get(k), desired.get(k)) {
            (Some(c), Some(d)) if c == d => {}
            (_, Some(d)) => sets.push(set(*d)),
            (Some(c), None) => dels.push(del(*c)),
            (None, None) => {}
        }
    }
    (sets, dels)
}

/// The nexthop object id for a peer: its IPv4 subnet's network address,
/// unique per lease and the same across restarts (never 0: the first
/// subnet of a network is never leased).
pub fn nexthop_id(subnet: ipnet::Ipv4Net) -> u32 {
    u32::from(subnet.network())
}

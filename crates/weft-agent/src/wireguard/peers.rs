//! A WireGuard device's peers and the three ways packets find them:
//! by allowed IP (outgoing packets, and the check that a decrypted packet
//! came from an address its peer may use), by session index (incoming
//! messages) and by public key (incoming handshakes, configuration).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use weft_core::WgKey;

/// Longest-prefix match from addresses to values, one hash map per prefix
/// length present (flannel's peers all have one length per family, so a
/// lookup is one hash probe).
#[derive(Debug)]
pub struct AllowedIps<T> {
    v4: BTreeMap<std::cmp::Reverse<u8>, HashMap<u32, T>>,
    v6: BTreeMap<std::cmp::Reverse<u8>, HashMap<u128, T>>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
        }
    }
}

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - len as u32).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - len as u32).unwrap_or(0)
}

impl<T: Clone> AllowedIps<T> {
    /// Adds `net` for `value`, returning what held it before.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        let len = net.prefix_len();
        match net {
            IpNet::V4(n) => self
                .v4
                .entry(std::cmp::Reverse(len))
                .or_default()
                .insert(u32::from(n.network()) & mask4(len), value),
            IpNet::V6(n) => self
                .v6
                .entry(std::cmp::Reverse(len))
                .or_default()
                .insert(u128::from(n.network()) & mask6(len), value),
        }
    }

    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        let len = std::cmp::Reverse(net.prefix_len());
        let (out, empty) = match net {
            IpNet::V4(n) => {
                let m = self.v4.get_mut(&len)?;
                let out = m.remove(&(u32::from(n.network()) & mask4(net.prefix_len())));
                (out, m.is_empty())
            }
            IpNet::V6(n) => {
                let m = self.v6.get_mut(&len)?;
                let out = m.remove(&(u128::from(n.network()) & mask6(net.prefix_len())));
                (out, m.is_empty())
            }
        };
        if empty {
            match net {
                IpNet::V4(_) => drop(self.v4.remove(&len)),
                IpNet::V6(_) => drop(self.v6.remove(&len)),
            }
        }
        out
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(l, m)| m.get(&(a & mask4(l.0))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(l, m)| m.get(&(a & mask6(l.0))))
            }
        }
    }
}

/// The peers of one device, found by key, session index or address.
pub struct PeerTable<P> {
    by_key: HashMap<WgKey, Arc<P>>,
    by_index: HashMap<u32, Arc<P>>,
    routes: AllowedIps<Arc<P>>,
}

impl<P> Default for PeerTable<P> {
    fn default() -> Self {
        PeerTable {
            by_key: HashMap::new(),
            by_index: HashMap::new(),
            routes: AllowedIps::default(),
        }
    }
}

/// What the table needs to know of a peer.
pub trait Keyed {
    fn key(&self) -> WgKey;
    fn index(&self) -> u32;
}

impl<P: Keyed> PeerTable<P> {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn get(&self, key: &WgKey) -> Option<&Arc<P>> {
        self.by_key.get(key)
    }
    pub fn by_index(&self, index: u32) -> Option<&Arc<P>> {
        self.by_index.get(&index)
    }
    pub fn route(&self, ip: IpAddr) -> Option<&Arc<P>> {
        self.routes.lookup(ip)
    }
    pub fn all(&self) -> impl Iterator<Item = &Arc<P>> {
        self.by_key.values()
    }

    /// Adds (or replaces) a peer; returns the one it replaced.
    pub fn insert(&mut self, peer: Arc<P>) -> Option<Arc<P>> {
        self.by_index.insert(peer.index(), peer.clone());
        let old = self.by_key.insert(peer.key(), peer);
        if let Some(o) = &old {
            self.by_index.remove(&o.index());
        }
        old
    }

    pub fn remove(&mut self, key: &WgKey) -> Option<Arc<P>> {
        let p = self.by_key.remove(key)?;
        self.by_index.remove(&p.index());
        Some(p)
    }

    /// Routes `net` to `peer`; returns the key of the peer that had it.
    pub fn route_to(&mut self, net: IpNet, peer: Arc<P>) -> Option<WgKey> {
        self.routes.insert(net, peer).map(|p| p.key())
    }

    pub fn unroute(&mut self, net: IpNet) {
        self.routes.remove(net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P(WgKey, u32);
    impl Keyed for P {
        fn key(&self) -> WgKey {
            self.0
        }
        fn index(&self) -> u32 {
            self.1
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn longest_prefix_wins_in_both_families() {
        let mut a = AllowedIps::default();
        a.insert(net("172.30.0.0/16"), 1);
        a.insert(net("172.30.5.0/24"), 2);
        a.insert(net("fd00:0:0:5::/64"), 3);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(a.lookup(ip("172.30.5.9")), Some(&2));
        assert_eq!(a.lookup(ip("172.30.6.9")), Some(&1));
        assert_eq!(a.lookup(ip("10.0.0.1")), None);
        assert_eq!(a.lookup(ip("fd00:0:0:5::9")), Some(&3));
        assert_eq!(a.remove(net("172.30.5.0/24")), Some(2));
        assert_eq!(a.lookup(ip("172.30.5.9")), Some(&1));
        assert_eq!(a.remove(net("172.30.5.0/24")), None);
    }

    #[test]
    fn peers_by_key_index_and_route() {
        let mut t = PeerTable::default();
        let k = WgKey([1; 32]);
        let p = Arc::new(P(k, 7));
        assert!(t.insert(p.clone()).is_none());
        assert_eq!(t.route_to(net("172.30.5.0/24"), p), None);
        assert_eq!(t.by_index(7).map(|p| p.1), Some(7));
        assert!(t.route("172.30.5.1".parse().expect("ip")).is_some());
        // the subnet moves to a new peer: the old holder is named
        let q = Arc::new(P(WgKey([2; 32]), 8));
        t.insert(q.clone());
        assert_eq!(t.route_to(net("172.30.5.0/24"), q), Some(k));
        assert!(t.remove(&k).is_some());
        assert!(t.by_index(7).is_none());
        assert_eq!(t.len(), 1);
    }
}

//! Which Node holds each lease. In etcd a lease's key is its subnet and
//! unique; here two Nodes can carry the same pod range (a mistake, or a
//! Node written to take another's traffic). Both would be one lease to the
//! data path: the second Node's address would replace the first's, and
//! deleting either would unroute both. So each pod range is held by one
//! Node — this host's own Node always, otherwise the Node that had it
//! first — and another Node claiming it waits, told once, until it is
//! free. Pure: Nodes' leases in, changes for the data path out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weft_core::lease::{Lease, LeaseKey};

use crate::source::Change;

/// Kept small: one entry per held range (the range and the Node's name),
/// whole leases only for the few Nodes that wait. (A Node's pod range is
/// set once and never changes, so a Node is found by its range.)
#[derive(Debug, Default)]
pub struct Claims {
    /// This host's Node and lease: never taken by another.
    own: Option<(Arc<str>, LeaseKey)>,
    /// Lease key → the Node holding it.
    holder: HashMap<LeaseKey, Arc<str>>,
    /// Nodes whose range another holds → their lease.
    waiting: BTreeMap<Arc<str>, Lease>,
}

impl Claims {
    pub fn new(own_node: &str, own_key: LeaseKey) -> Claims {
        Claims {
            own: Some((own_node.into(), own_key)),
            ..Claims::default()
        }
    }

    fn holder_of(&self, key: &LeaseKey) -> Option<&str> {
        match &self.own {
            Some((node, k)) if k == key => Some(node),
            _ => self.holder.get(key).map(|n| &**n),
        }
    }

    /// Node `node` carries `lease`: the changes for the data path, or why
    /// it is left out (its pod range is another Node's).
    pub fn put(&mut self, node: &str, lease: Lease) -> (Vec<Change>, Option<String>) {
        match self.holder_of(&lease.key) {
            Some(other) if other != node => {
                let why = format!(
                    "Node {node}: pod range {} is already Node {other}'s; its lease is left out until that Node gives it up",
                    lease.key
                );
                self.waiting.insert(node.into(), lease);
                (Vec::new(), Some(why))
            }
            Some(_) => (vec![Change::Put(lease)], None),
            None => {
                self.holder.insert(lease.key, node.into());
                (vec![Change::Put(lease)], None)
            }
        }
    }

    /// Node `node`, which carried `key`, is gone: the changes for the
    /// data path (its lease goes, and the first Node waiting for the
    /// range, by name, takes it).
    pub fn remove(&mut self, node: &str, key: &LeaseKey) -> Vec<Change> {
        if self.waiting.remove(node).is_some() {
            return Vec::new();
        }
        if self.holder.get(key).map(|n| &**n) != Some(node) {
            return Vec::new();
        }
        self.holder.remove(key);
        let mut changes = vec![Change::Delete(*key)];
        let next = self
            .waiting
            .iter()
            .find(|(_, l)| l.key == *key)
            .map(|(n, _)| n.clone());
        if let Some(n) = next {
            if let Some(l) = self.waiting.remove(&n) {
                tracing::info!("Node {n}: holds pod range {key} now that Node {node} gave it up");
                self.holder.insert(*key, n);
                changes.push(Change::Put(l));
            }
        }
        changes
    }

    /// A complete listing of (Node, lease): the leases the data path
    /// gets, and why each other one is left out. Nodes that held a range
    /// before keep it; the others are taken in the listing's order.
    pub fn reset(&mut self, listing: Vec<(String, Lease)>) -> (Vec<Lease>, Vec<String>) {
        let before = std::mem::take(&mut self.holder);
        self.waiting.clear();
        let held_before = |(n, l): &(String, Lease)| before.get(&l.key).is_some_and(|h| **h == **n);
        let (kept, rest): (Vec<_>, Vec<_>) = listing.into_iter().partition(held_before);
        drop(before);
        let (mut leases, mut refused) = (Vec::new(), Vec::new());
        for (node, lease) in kept.into_iter().chain(rest) {
            let (changes, why) = self.put(&node, lease);
            leases.extend(changes.into_iter().filter_map(|c| match c {
                Change::Put(l) => Some(l),
                Change::Delete(_) => None,
            }));
            refused.extend(why);
        }
        (leases, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::lease::LeaseAttrs;

    fn lease(key: &str, public: &str) -> Lease {
        Lease {
            key: key.parse().expect("key"),
            attrs: LeaseAttrs::host_gw(public.parse().expect("ip")),
        }
    }

    fn puts(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Put(l) => format!("put {} {}", l.key, l.attrs.public_ip),
                Change::Delete(k) => format!("delete {k}"),
            })
            .collect()
    }

    fn claims() -> Claims {
        Claims::new("k1", "172.30.1.0-24".parse().expect("own"))
    }

    #[test]
    fn a_second_node_on_a_pod_range_waits_and_deleting_it_unroutes_nothing() {
        let mut c = claims();
        let (ch, why) = c.put("k2", lease("172.30.2.0-24", "198.18.0.12"));
        assert_eq!(
            (puts(&ch), why),
            (vec!["put 172.30.2.0-24 198.18.0.12".into()], None)
        );
        let (ch, why) = c.put("zz-dup", lease("172.30.2.0-24", "198.18.0.66"));
        assert!(ch.is_empty());
        assert_eq!(
            why.as_deref(),
            Some("Node zz-dup: pod range 172.30.2.0-24 is already Node k2's; its lease is left out until that Node gives it up")
        );
        let key: LeaseKey = "172.30.2.0-24".parse().expect("key");
        // the duplicate goes: k2's lease stays
        assert!(c.remove("zz-dup", &key).is_empty());
        // k2 goes: its lease goes
        assert_eq!(puts(&c.remove("k2", &key)), vec!["delete 172.30.2.0-24"]);
    }

    #[test]
    fn this_hosts_pod_range_is_never_taken() {
        let mut c = claims();
        let (ch, why) = c.put("aa-first", lease("172.30.1.0-24", "198.18.0.66"));
        assert!(ch.is_empty());
        assert!(why.is_some_and(|w| w.contains("already Node k1's")));
    }

    #[test]
    fn a_waiting_node_takes_the_range_when_the_holder_goes() {
        let mut c = claims();
        let key: LeaseKey = "172.30.2.0-24".parse().expect("key");
        let _ = c.put("k2", lease("172.30.2.0-24", "198.18.0.12"));
        let _ = c.put("k3", lease("172.30.2.0-24", "198.18.0.13"));
        assert_eq!(
            puts(&c.remove("k2", &key)),
            vec!["delete 172.30.2.0-24", "put 172.30.2.0-24 198.18.0.13"]
        );
        assert_eq!(puts(&c.remove("k3", &key)), vec!["delete 172.30.2.0-24"]);
    }

    #[test]
    fn a_listing_keeps_earlier_holders() {
        let mut c = claims();
        let _ = c.put("zz-late", lease("172.30.2.0-24", "198.18.0.12"));
        // in name order "aa-early" comes first, but zz-late held the range
        let (leases, refused) = c.reset(vec![
            ("aa-early".into(), lease("172.30.2.0-24", "198.18.0.66")),
            ("zz-late".into(), lease("172.30.2.0-24", "198.18.0.12")),
        ]);
        assert_eq!(leases, vec![lease("172.30.2.0-24", "198.18.0.12")]);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].starts_with("Node aa-early:"), "{refused:?}");
    }
}

//! Stable slots in the balancing pools: a port's endpoint `i` sits in slot
//! `i` of its pool's map when the port is first rendered (kube-proxy's
//! endpoint order), but when its endpoints change, each endpoint it keeps
//! keeps its slot and new ones take the slots that freed up. `numgen
//! random` picks slots uniformly, so the order means nothing to traffic;
//! keeping it makes a partial sync rewrite only the slots whose endpoint
//! changed (a rollout replacing 500 of 5,000 endpoints writes 500
//! elements, not every slot after the first new address in sort order).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use super::nft::PortNft;
use super::nft_element::{ElementKey, ElementValue, MapName};

impl PortNft {
    /// Re-slots this (newly rendered) port's pool elements after `before`,
    /// the same port as the kernel holds it.
    pub fn keep_slots(&mut self, before: &PortNft) {
        // (pool map, key without its slot) -> endpoint -> slot it had
        let mut had: Vec<((MapName, ElementKey), HashMap<SocketAddr, u32>)> = Vec::new();
        for e in &before.elements {
            if let (MapName::Pool(_), Some(slot), ElementValue::Endpoint(ep)) =
                (e.map, e.key.slot, &e.value)
            {
                let group = (
                    e.map,
                    ElementKey {
                        slot: None,
                        ..e.key
                    },
                );
                match had.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, slots)) => {
                        slots.insert(*ep, slot);
                    }
                    None => had.push((group, HashMap::from([(*ep, slot)]))),
                }
            }
        }
        for (group, slots) in &had {
            self.reslot(group, slots);
        }
    }

    /// In one pool map's elements for one key: kept endpoints back in
    /// their slots, the others in the free slots, lowest first.
    fn reslot(&mut self, group: &(MapName, ElementKey), slots: &HashMap<SocketAddr, u32>) {
        let in_group: Vec<usize> = (0..self.elements.len())
            .filter(|&i| {
                let e = &self.elements[i];
                e.map == group.0
                    && ElementKey {
                        slot: None,
                        ..e.key
                    } == group.1
            })
            .collect();
        let n = in_group.len() as u32;
        let mut free: BTreeSet<u32> = (0..n).collect();
        let mut kept = vec![None; in_group.len()];
        for (k, &i) in in_group.iter().enumerate() {
            if let ElementValue::Endpoint(ep) = &self.elements[i].value {
                if let Some(&s) = slots.get(ep).filter(|s| free.contains(s)) {
                    free.remove(&s);
                    kept[k] = Some(s);
                }
            }
        }
        let mut free = free.into_iter();
        for (k, &i) in in_group.iter().enumerate() {
            if let Some(slot) = kept[k].or_else(|| free.next()) {
                self.elements[i].key.slot = Some(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::nft::Element;
    use crate::render::nft_names::Pool;
    use crate::spec::Protocol;

    fn port(eps: &[&str]) -> PortNft {
        let pool = Pool {
            node_port: false,
            n: eps.len(),
        };
        let key = ElementKey::addr("10.254.0.1".parse().expect("ip"), Protocol::Tcp, 80);
        PortNft {
            elements: eps
                .iter()
                .enumerate()
                .map(|(i, ep)| Element {
                    map: MapName::Pool(pool),
                    key: key.slot(i),
                    value: ElementValue::Endpoint(ep.parse().expect("endpoint")),
                })
                .collect(),
            ..PortNft::empty().clone()
        }
    }

    fn slots(p: &PortNft) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = p
            .elements
            .iter()
            .map(|e| (e.key.slot.expect("slot"), e.value.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn kept_endpoints_keep_their_slots_and_new_ones_fill_the_freed() {
        let before = port(&["100.64.0.1:80", "100.64.0.2:80", "100.64.0.3:80"]);
        // sorted, the new address comes first and would shift every slot
        let mut after = port(&["100.64.0.0:80", "100.64.0.1:80", "100.64.0.3:80"]);
        after.keep_slots(&before);
        assert_eq!(
            slots(&after),
            [
                (0, "100.64.0.1 . 80".to_string()),
                (1, "100.64.0.0 . 80".to_string()),
                (2, "100.64.0.3 . 80".to_string()),
            ]
        );
        // another count is another pool: rendered order stays
        let mut grown = port(&[
            "100.64.0.0:80",
            "100.64.0.1:80",
            "100.64.0.2:80",
            "100.64.0.3:80",
        ]);
        let fresh = slots(&grown);
        grown.keep_slots(&before);
        assert_eq!(slots(&grown), fresh);
    }
}

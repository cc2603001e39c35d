//! Stable slots in the balancing pools: a port's endpoint `i` sits in slot
//! `i` of its pool's map when the port is first rendered (kube-proxy's
//! endpoint order), but when its endpoints change, each endpoint it keeps
//! keeps its slot and new ones take the slots that freed up. `numgen
//! random` picks slots uniformly, so the order means nothing to traffic;
//! keeping it makes a partial sync rewrite only the slots whose endpoint
//! changed (a rollout replacing 500 of 5,000 endpoints writes 500
//! elements, not every slot after the first new address in sort order).

use std::collections::HashMap;
use std::net::IpAddr;

use super::nft_element::PoolMembers;
use super::nft_port::PortNft;

impl PortNft {
    /// Re-slots this (newly rendered) port's pool elements after `before`,
    /// the same port as the kernel holds it.
    pub fn keep_slots(&mut self, before: &PortNft) {
        for members in self.members.iter_mut() {
            if let Some(had) = before.members.iter().find(|b| b.same_key(members)) {
                members.reslot(had);
            }
        }
    }
}

impl PoolMembers {
    /// Kept endpoints back in the slots they had in `had`, the others in
    /// the free slots, lowest first, in their rendered order.
    fn reslot(&mut self, had: &PoolMembers) {
        let slot_of: HashMap<(IpAddr, u16), usize> = had
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| (ep, i))
            .collect();
        let rendered: Vec<(IpAddr, u16)> = self.endpoints.iter().collect();
        let n = rendered.len();
        let mut taken = vec![false; n];
        let mut kept = vec![None; n];
        for (k, ep) in rendered.iter().enumerate() {
            if let Some(&s) = slot_of.get(ep).filter(|&&s| s < n && !taken[s]) {
                taken[s] = true;
                kept[k] = Some(s);
            }
        }
        let mut free = (0..n).filter(|&s| !taken[s]);
        let mut slotted = rendered.clone();
        for (k, ep) in rendered.iter().enumerate() {
            if let Some(slot) = kept[k].or_else(|| free.next()) {
                slotted[slot] = *ep;
            }
        }
        self.endpoints = slotted.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::nft::ElementKey;
    use crate::render::nft_names::Pool;
    use crate::spec::Protocol;
    use std::net::SocketAddr;

    fn port(eps: &[&str]) -> PortNft {
        let pool = Pool {
            node_port: false,
            n: eps.len() as u32,
        };
        let key = ElementKey::addr("10.254.0.1".parse().expect("ip"), Protocol::Tcp, 80);
        PortNft {
            members: Box::new([PoolMembers {
                pool,
                key,
                endpoints: eps
                    .iter()
                    .map(|ep| {
                        let a: SocketAddr = ep.parse().expect("endpoint");
                        (a.ip(), a.port())
                    })
                    .collect(),
            }]),
            ..PortNft::empty().clone()
        }
    }

    fn slots(p: &PortNft) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = p
            .members
            .iter()
            .flat_map(|m| m.elements())
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

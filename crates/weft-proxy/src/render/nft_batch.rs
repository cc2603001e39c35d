//! One `nft -f` transaction's commands, grouped so that every object
//! exists before it is referenced and is unreferenced before it is
//! deleted, and the three transactions of a cold start.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::nft_names::{
    NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};

/// A first sync in three steps, each one `nft -f` transaction:
///
/// 1. `create`: the table (which must not exist: `create` fails if it
///    does, and nothing is applied), its chains, rules, sets and pools;
/// 2. `loads`: the endpoint elements (pool maps, hairpin pairs), split
///    into parts that are applied at the same time;
/// 3. `live`: the verdict-map elements (`service-ips`, …) that send
///    traffic into the rest, so services go live together, each with all
///    its endpoints.
///
/// Until step 3 the table matches no packet, and there was no table to
/// keep in force before step 1, so no state in between is inconsistent.
/// A table that exists is replaced by [`NftRenderer::full`] in one
/// transaction instead.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ColdStart {
    pub create: String,
    pub loads: Vec<String>,
    pub live: String,
}

/// Maps whose elements send traffic into the table's chains and pools.
const LIVE_MAPS: [&str; 4] = [
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    NO_ENDPOINT_NODEPORTS,
];

/// Commands of one `nft -f` transaction, grouped so that every object
/// exists before it is referenced and is unreferenced before it is deleted.
/// Set and map elements are sent as one command per set (per command line
/// nft does a lot of work of its own).
#[derive(Debug, Default)]
pub struct NftBatch {
    pub(super) create: String,
    pub(super) rules: String,
    /// `("<family> <table>", set) -> elements` to delete, then to add.
    pub(super) unmap: BTreeMap<(String, String), Vec<String>>,
    pub(super) map: BTreeMap<(String, String), Vec<String>>,
    pub(super) flush: String,
    pub(super) delete: String,
    /// Pools, deleted after the port chains that may jump to them.
    pub(super) delete_last: String,
}

/// Elements per `add element` command.
const ELEMENTS_PER_COMMAND: usize = 4096;

impl NftBatch {
    pub(super) fn add(&mut self, target: &str, set: &str, element: String) {
        self.map
            .entry((target.to_string(), set.to_string()))
            .or_default()
            .push(element);
    }

    pub(super) fn remove(&mut self, target: &str, set: &str, key: String) {
        self.unmap
            .entry((target.to_string(), set.to_string()))
            .or_default()
            .push(key);
    }

    pub fn len(&self) -> usize {
        let elems =
            |m: &BTreeMap<_, Vec<String>>| m.values().flatten().map(|e| e.len() + 2).sum::<usize>();
        self.create.len()
            + self.rules.len()
            + elems(&self.unmap)
            + elems(&self.map)
            + self.flush.len()
            + self.delete.len()
            + self.delete_last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the commands, in dependency order, to `out`.
    pub fn finish_into(self, out: &mut String) {
        out.push_str(&self.create);
        out.push_str(&self.rules);
        for (verb, groups) in [("delete", self.unmap), ("add", self.map)] {
            for ((target, set), elements) in groups {
                for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
                    let _ = writeln!(
                        out,
                        "{verb} element {target} {set} {{ {} }}",
                        chunk.join(", ")
                    );
                }
            }
        }
        out.push_str(&self.flush);
        out.push_str(&self.delete);
        out.push_str(&self.delete_last);
    }
}

impl NftBatch {
    /// For [`ColdStart`]: appends objects and rules to `create`, and
    /// returns the elements split into `parts` loads (whole commands dealt
    /// out in turn) and the live ones. A batch that adds from nothing has
    /// nothing to delete; should it have, that goes with the live
    /// elements, in [`finish_into`](Self::finish_into)'s order.
    pub(super) fn finish_cold(self, create: &mut String, parts: usize) -> (Vec<String>, String) {
        create.push_str(&self.create);
        create.push_str(&self.rules);
        let mut loads = vec![String::new(); parts.max(1)];
        let mut live = String::new();
        for ((target, set), elements) in self.unmap {
            for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
                let _ = writeln!(
                    live,
                    "delete element {target} {set} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        let mut next = 0;
        for ((target, set), elements) in self.map {
            for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
                let out = if LIVE_MAPS.contains(&set.as_str()) {
                    &mut live
                } else {
                    next = (next + 1) % loads.len();
                    &mut loads[next]
                };
                let _ = writeln!(out, "add element {target} {set} {{ {} }}", chunk.join(", "));
            }
        }
        live.push_str(&self.flush);
        live.push_str(&self.delete);
        live.push_str(&self.delete_last);
        loads.retain(|l| !l.is_empty());
        (loads, live)
    }
}

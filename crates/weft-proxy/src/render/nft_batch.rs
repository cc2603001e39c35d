//! One `nft -f` transaction's commands, grouped so that every object
//! exists before it is referenced and is unreferenced before it is
//! deleted, and the three transactions of a cold start.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use super::nft_element::{ElementValue, MapName, Member};

/// A first sync in three steps, each one transaction:
///
/// 1. `create`: the table (which must not exist: `create` fails if it
///    does, and nothing is applied), its chains, rules, sets and pools,
///    as nft text;
/// 2. `loads`: the endpoint elements (pool maps, hairpin pairs): over
///    netlink, or as text split into parts that several `nft` processes
///    apply at the same time ([`text_loads`](Self::text_loads));
/// 3. `live`: the verdict-map elements (`service-ips`, …) that send
///    traffic into the rest, so services go live together, each with all
///    its endpoints.
///
/// Until step 3 the table matches no packet, and there was no table to
/// keep in force before step 1, so no state in between is inconsistent.
/// A table that exists is replaced by [`super::nft::NftRenderer::full`] in one
/// transaction instead.
#[derive(Debug, Default)]
pub struct ColdStart {
    pub create: String,
    pub loads: NftBatch,
    pub live: NftBatch,
}

impl ColdStart {
    /// The loads as text for table `target`, in `parts` parts (whole
    /// commands dealt out in turn).
    pub fn text_loads(&self, target: &str, parts: usize) -> Vec<String> {
        let mut loads = vec![String::new(); parts.max(1)];
        let mut next = 0;
        for (set, elements) in &self.loads.map {
            for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
                next = (next + 1) % loads.len();
                element_command(&mut loads[next], "add", target, *set, chunk);
            }
        }
        loads.retain(|l| !l.is_empty());
        loads
    }
}

/// Whether `set`'s elements send traffic into the table's chains and pools.
fn is_live(set: MapName) -> bool {
    matches!(set, MapName::Fixed(map) if map.is_live())
}

/// An element a batch adds: its key and, in a map, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub member: Member,
    pub value: Option<ElementValue>,
}

impl fmt::Display for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} : {v}", self.member),
            None => write!(f, "{}", self.member),
        }
    }
}

/// Commands of one `nft -f` transaction, grouped so that every object
/// exists before it is referenced and is unreferenced before it is deleted.
/// Set and map elements are kept as values: written as one command per set
/// (per command line nft does a lot of work of its own), or sent over
/// netlink when the batch changes nothing else
/// ([`elements_only`](Self::elements_only)).
#[derive(Debug, Default)]
pub struct NftBatch {
    pub(super) create: String,
    pub(super) rules: String,
    /// Elements to delete, then to add, per set.
    pub unmap: BTreeMap<MapName, Vec<Member>>,
    pub map: BTreeMap<MapName, Vec<Added>>,
    pub(super) flush: String,
    pub(super) delete: String,
    /// Pools, deleted after the port chains that may jump to them.
    pub(super) delete_last: String,
}

/// Elements per `add element` command.
const ELEMENTS_PER_COMMAND: usize = 4096;
/// Bytes an element takes as text, about (for buffer sizes).
const ELEMENT_TEXT: usize = 48;

/// Writes `verb element <target> <set> { … }` commands for `groups`.
fn element_commands<T: fmt::Display>(
    out: &mut String,
    verb: &str,
    target: &str,
    groups: &BTreeMap<MapName, Vec<T>>,
) {
    for (set, elements) in groups {
        for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
            element_command(out, verb, target, *set, chunk);
        }
    }
}

fn element_command<T: fmt::Display>(
    out: &mut String,
    verb: &str,
    target: &str,
    set: MapName,
    elements: &[T],
) {
    let _ = write!(out, "{verb} element {target} {set} {{ ");
    for (i, e) in elements.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{e}");
    }
    out.push_str(" }\n");
}

impl NftBatch {
    pub(super) fn add(&mut self, set: MapName, member: Member, value: Option<ElementValue>) {
        self.map
            .entry(set)
            .or_default()
            .push(Added { member, value });
    }

    pub(super) fn remove(&mut self, set: MapName, member: Member) {
        self.unmap.entry(set).or_default().push(member);
    }

    /// Elements added and deleted.
    pub fn elements(&self) -> usize {
        self.unmap.values().map(Vec::len).sum::<usize>()
            + self.map.values().map(Vec::len).sum::<usize>()
    }

    /// Bytes of the batch as text, about.
    pub fn len(&self) -> usize {
        self.create.len()
            + self.rules.len()
            + self.elements() * ELEMENT_TEXT
            + self.flush.len()
            + self.delete.len()
            + self.delete_last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the batch only adds and deletes elements of sets that
    /// exist: no table, set, chain or rule is created, changed or deleted.
    pub fn elements_only(&self) -> bool {
        [
            &self.create,
            &self.rules,
            &self.flush,
            &self.delete,
            &self.delete_last,
        ]
        .iter()
        .all(|s| s.is_empty())
    }

    /// Appends the commands for table `target` (`ip kube-proxy`), in
    /// dependency order, to `out`.
    pub fn finish_into(self, target: &str, out: &mut String) {
        out.push_str(&self.create);
        out.push_str(&self.rules);
        element_commands(out, "delete", target, &self.unmap);
        element_commands(out, "add", target, &self.map);
        out.push_str(&self.flush);
        out.push_str(&self.delete);
        out.push_str(&self.delete_last);
    }
}

impl NftBatch {
    /// For [`ColdStart`]: appends objects and rules to `create`, and
    /// returns the endpoint elements (the loads) and the rest (the live
    /// batch). A batch that adds from nothing has nothing to delete or
    /// flush; should it have, that goes with the live elements.
    pub(super) fn split_cold(mut self, create: &mut String) -> (NftBatch, NftBatch) {
        create.push_str(&std::mem::take(&mut self.create));
        create.push_str(&std::mem::take(&mut self.rules));
        let mut loads = NftBatch::default();
        let (live, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.map)
            .into_iter()
            .partition(|(set, _)| is_live(*set));
        loads.map = rest;
        self.map = live;
        (loads, self)
    }
}

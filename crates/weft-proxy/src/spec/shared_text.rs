//! Text that many objects repeat (node names, namespaces), kept once per
//! process: each object holds a reference count, not its own copy
//! (100,000 endpoints name a few hundred nodes; 10,000 Services a few
//! namespaces).

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A shared copy of some text: ordered and looked up as the text itself.
pub(crate) trait SharedText: Ord + Borrow<str> + Clone {
    fn share(text: &str) -> Self;
    /// How many hold this copy (the table's own included).
    fn holders(&self) -> usize;
}

impl SharedText for Arc<str> {
    fn share(text: &str) -> Self {
        text.into()
    }

    fn holders(&self) -> usize {
        Arc::strong_count(self)
    }
}

/// One table of shared text.
pub(crate) struct TextTable<T = Arc<str>>(Mutex<BTreeSet<T>>);

impl<T: SharedText> TextTable<T> {
    pub(crate) const fn new() -> TextTable<T> {
        TextTable(Mutex::new(BTreeSet::new()))
    }

    /// The one shared copy of `text`.
    pub(crate) fn get(&self, text: &str) -> T {
        let mut texts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(t) = texts.get(text) {
            return t.clone();
        }
        // text no object holds any more is forgotten before the table grows on
        if texts.len() >= 1024 && texts.len().is_power_of_two() {
            texts.retain(|t| t.holders() > 1);
        }
        let t = T::share(text);
        texts.insert(t.clone());
        t
    }
}

/// A node's name, shared by every endpoint on that node (100,000
/// endpoints name a few hundred nodes). One pointer wide, where an
/// `Arc<str>` is two: an [`Endpoint`](super::endpoints::Endpoint) is 32 bytes, not 40.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Arc<String>);

impl std::ops::Deref for NodeName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl SharedText for NodeName {
    fn share(text: &str) -> Self {
        NodeName(Arc::new(text.to_string()))
    }

    fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

/// The one shared copy of node name `name`.
pub fn node_name(name: &str) -> NodeName {
    static NAMES: TextTable<NodeName> = TextTable::new();
    NAMES.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_is_one_copy_and_unused_text_is_forgotten() {
        let table: TextTable = TextTable::new();
        let a = table.get("node-a");
        assert!(Arc::ptr_eq(&a, &table.get("node-a")));
        for i in 0..1024 {
            table.get(&format!("gone-{i}"));
        }
        let texts = table.0.lock().expect("lock");
        assert!(texts.len() < 1024, "{} texts kept", texts.len());
        assert!(texts.contains("node-a"));
    }
}

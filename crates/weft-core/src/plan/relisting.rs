//! Which leases a full listing named. When the lease source lists again
//! (at start, after a lost watch), a backend keeps what it has configured
//! and notes each lease the listing names; at its end, whatever was
//! configured for a lease it did not name is stale. Pure.

use std::collections::HashSet;

use crate::lease::LeaseKey;

/// The leases named since a listing began (none under way: `None`).
#[derive(Debug, Default)]
pub struct Relisting {
    named: Option<HashSet<LeaseKey>>,
}

impl Relisting {
    /// A full listing follows.
    pub fn begin(&mut self) {
        self.named = Some(HashSet::new());
    }

    /// The listing (if one is under way) named `key`.
    pub fn note(&mut self, key: LeaseKey) {
        if let Some(named) = &mut self.named {
            named.insert(key);
        }
    }

    /// Ends the listing: the keys of `known` it did not name (none when no
    /// listing was under way).
    pub fn end<'a>(&mut self, known: impl IntoIterator<Item = &'a LeaseKey>) -> HashSet<LeaseKey> {
        let Some(named) = self.named.take() else {
            return HashSet::new();
        };
        known
            .into_iter()
            .filter(|k| !named.contains(k))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LeaseKey {
        s.parse().expect("lease key")
    }

    #[test]
    fn the_keys_a_listing_did_not_name_are_stale() {
        let (a, b, c) = (key("10.5.1.0-24"), key("10.5.2.0-24"), key("10.5.3.0-24"));
        let mut r = Relisting::default();
        r.note(a); // no listing under way: not kept
        assert!(r.end([&a, &b]).is_empty(), "no listing, nothing stale");
        r.begin();
        r.note(a);
        r.note(c);
        assert_eq!(r.end([&a, &b, &c]), HashSet::from([b]));
        assert!(r.end([&b]).is_empty(), "the listing ended");
    }
}

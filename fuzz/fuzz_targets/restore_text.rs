//! `iptables-restore --noflush` text as weft's x_tables writer reads it
//! (`weft_firewall::xtables::restore`), applied to empty standard tables
//! in memory: parsing, rule encoding, the chain model, layout and decode.
//! Input: the text (the first byte picks IPv4 or IPv6).
//!
//! What must hold: no panic; errors are one line; whatever applies leaves
//! tables that lay out and decode.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use weft_firewall::xtables::restore::restore_in_memory;
use weft_firewall::xtables::table::{empty_entries, Table};
use weft_firewall::xtables::Family;

fuzz_target!(|data: &[u8]| {
    let Some((&f, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let family = if f & 1 == 0 { Family::V4 } else { Family::V6 };
    let mut tables = BTreeMap::new();
    for name in ["filter", "nat", "mangle", "raw"] {
        let (info, buf) = empty_entries(family, name).expect("standard table");
        let t = Table::decode(family, name, info, buf, 0).expect("an empty table decodes");
        tables.insert(name.to_string(), t);
    }
    if let Err(e) = restore_in_memory(family, text, &mut tables) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
    }
    for (name, t) in &tables {
        let blob = t.layout(0).unwrap_or_else(|e| panic!("{name}: {e}"));
        Table::decode(family, name, blob.info, blob.buf, 0)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
});

//! weft's decoder of legacy (x_tables) tables as the kernel hands them out
//! (`weft_firewall::xtables::table`). Input: the first byte picks the
//! family and table, the next 48 bytes are the table's info (valid hooks,
//! hook entries, underflows, entry count, size), the rest its entries.
//!
//! What must hold: no panic; a table that decodes lays out again, and its
//! layout decodes to a table with the same chains and rule counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_firewall::xtables::table::{Info, Table};
use weft_firewall::xtables::Family;

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 49 {
        return;
    }
    let family = if data[0] & 1 == 0 {
        Family::V4
    } else {
        Family::V6
    };
    let name = ["filter", "nat", "mangle", "raw"][usize::from(data[0] >> 1) % 4];
    let head = &data[1..49];
    let mut info = Info {
        valid_hooks: u32_at(head, 0) & 0x1f,
        num_entries: u32_at(head, 11) % 4096,
        ..Info::default()
    };
    for h in 0..5 {
        info.hook_entry[h] = u32_at(head, 1 + h);
        info.underflow[h] = u32_at(head, 6 + h);
    }
    let entries = data[49..].to_vec();
    info.size = entries.len() as u32;
    let Ok(table) = Table::decode(family, name, info, entries, 0) else {
        return;
    };
    let chains: Vec<(String, Option<usize>)> = table
        .user_chains()
        .map(|c| (c.to_string(), table.rule_count(c)))
        .collect();
    let blob = table.layout(0).expect("a decoded table lays out");
    let again = Table::decode(family, name, blob.info, blob.buf, 0).expect("its layout decodes");
    let after: Vec<(String, Option<usize>)> = again
        .user_chains()
        .map(|c| (c.to_string(), again.rule_count(c)))
        .collect();
    assert_eq!(chains, after, "chains changed through a layout");
});

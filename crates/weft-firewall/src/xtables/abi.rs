//! The kernel's x_tables ABI (`<linux/netfilter_ipv4/ip_tables.h>`,
//! `<linux/netfilter_ipv6/ip6_tables.h>`, `<linux/netfilter/x_tables.h>`):
//! sizes, offsets and constants, checked against the C headers with
//! `offsetof` on x86-64. Everything is native-endian except addresses and
//! the ports inside NAT ranges, which are in network order.

/// IPv4 (`ipt_*`) or IPv6 (`ip6t_*`) tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `sizeof(struct ipt_entry)` / `sizeof(struct ip6t_entry)`.
    pub fn entry_size(self) -> usize {
        match self {
            Family::V4 => 112,
            Family::V6 => 168,
        }
    }

    /// `sizeof(struct ipt_ip)` / `sizeof(struct ip6t_ip6)`: the part of an
    /// entry that matches packet headers.
    pub fn header_size(self) -> usize {
        match self {
            Family::V4 => 84,
            Family::V6 => 136,
        }
    }

    /// Offset of `target_offset` (a u16, followed by `next_offset`).
    pub fn target_offset_at(self) -> usize {
        match self {
            Family::V4 => 88,
            Family::V6 => 140,
        }
    }

    /// Offset of `comefrom` (u32), then padding and the two u64 counters.
    pub fn comefrom_at(self) -> usize {
        match self {
            Family::V4 => 92,
            Family::V6 => 144,
        }
    }

    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// Where the interface names start (`iniface`, `outiface`, then their
    /// masks, 16 bytes each).
    pub fn iface_at(self) -> usize {
        4 * self.addr_len()
    }

    /// Offset of the protocol (u16); for IPv6 `tos`, `flags` and `invflags`
    /// follow it, for IPv4 `flags` and `invflags`.
    pub fn proto_at(self) -> usize {
        match self {
            Family::V4 => 80,
            Family::V6 => 128,
        }
    }

    pub fn flags_at(self) -> usize {
        match self {
            Family::V4 => 82,
            Family::V6 => 131,
        }
    }

    pub fn invflags_at(self) -> usize {
        match self {
            Family::V4 => 83,
            Family::V6 => 132,
        }
    }

    /// The "goto" bit in the entry flags (`IPT_F_GOTO` / `IP6T_F_GOTO`).
    pub fn goto_flag(self) -> u8 {
        match self {
            Family::V4 => 0x02,
            Family::V6 => 0x04,
        }
    }

    /// `SOL_IP` / `SOL_IPV6`: the socket option level.
    pub fn level(self) -> i32 {
        match self {
            Family::V4 => 0,
            Family::V6 => 41,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// `IP6T_F_PROTO`: an IPv6 rule that names a protocol sets it.
pub const IP6T_F_PROTO: u8 = 0x01;

/// `invflags` bits (the same values in both families).
pub const INV_VIA_IN: u8 = 0x01;
pub const INV_VIA_OUT: u8 = 0x02;
pub const INV_SRCIP: u8 = 0x08;
pub const INV_DSTIP: u8 = 0x10;
pub const INV_PROTO: u8 = 0x40;

/// Socket options (the same numbers for both families).
pub const SO_GET_INFO: i32 = 64;
pub const SO_GET_ENTRIES: i32 = 65;
pub const SO_SET_REPLACE: i32 = 64;
pub const SO_SET_ADD_COUNTERS: i32 = 65;

/// `XT_TABLE_MAXNAMELEN`, `XT_EXTENSION_MAXNAMELEN`, `XT_FUNCTION_MAXNAMELEN`.
pub const TABLE_NAME_LEN: usize = 32;
pub const EXTENSION_NAME_LEN: usize = 29;
pub const ERROR_NAME_LEN: usize = 30;

/// `struct ipt_getinfo`: name, valid_hooks, hook_entry[5], underflow[5],
/// num_entries, size.
pub const GETINFO_SIZE: usize = 84;
/// `struct ipt_get_entries` before its entries: name and size (padded).
pub const GET_ENTRIES_HEAD: usize = 40;
/// `struct ipt_replace` before its entries; `num_counters` at 84 and the
/// `counters` pointer at 88.
pub const REPLACE_HEAD: usize = 96;
/// `struct xt_counters_info` before its counters: name, num_counters.
pub const COUNTERS_INFO_HEAD: usize = 40;
/// `struct xt_counters`: packets and bytes, two u64.
pub const COUNTERS_SIZE: usize = 16;

/// `struct xt_entry_match` / `xt_entry_target`: size (u16), name[29],
/// revision (u8); the extension's data follows at 32.
pub const EXTENSION_HEAD: usize = 32;
/// `sizeof(struct xt_standard_target)`: head and an i32 verdict.
pub const STANDARD_TARGET_SIZE: usize = 40;
/// `sizeof(struct xt_error_target)`: head and errorname[30].
pub const ERROR_TARGET_SIZE: usize = 64;

/// Standard verdicts: `-NF_<x> - 1`.
pub const VERDICT_DROP: i32 = -1;
pub const VERDICT_ACCEPT: i32 = -2;
pub const VERDICT_QUEUE: i32 = -4;
pub const VERDICT_RETURN: i32 = -5;

/// The hooks, in the order of `hook_entry[]`.
pub const HOOK_NAMES: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// `XT_ALIGN`: extension and entry sizes are multiples of 8.
pub fn align(n: usize) -> usize {
    (n + 7) & !7
}

pub fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A NUL-terminated name in a fixed field.
pub fn read_name(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Appends an extension (match or target) record: head and `data`, padded.
pub fn push_extension(out: &mut Vec<u8>, name: &str, revision: u8, data: &[u8]) {
    let size = align(EXTENSION_HEAD + data.len());
    let start = out.len();
    out.resize(start + size, 0);
    let b = &mut out[start..];
    // sizes are bounded by the fixed structures encoded here (< 1 KiB)
    put_u16(b, 0, size as u16);
    let n = name.len().min(EXTENSION_NAME_LEN - 1);
    b[2..2 + n].copy_from_slice(&name.as_bytes()[..n]);
    b[31] = revision;
    b[EXTENSION_HEAD..EXTENSION_HEAD + data.len()].copy_from_slice(data);
}

/// Appends the standard target: a verdict, or (patched when the table is
/// laid out) the offset of the entry to jump to.
pub fn push_standard_target(out: &mut Vec<u8>, verdict: i32) {
    push_extension(out, "", 0, &verdict.to_ne_bytes())
}

/// Appends the target of a user chain's first entry, holding its name.
pub fn push_error_target(out: &mut Vec<u8>, name: &str) {
    let mut data = [0u8; ERROR_NAME_LEN];
    let n = name.len().min(ERROR_NAME_LEN - 1);
    data[..n].copy_from_slice(&name.as_bytes()[..n]);
    push_extension(out, "ERROR", 0, &data)
}

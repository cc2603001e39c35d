//! The kernel's x_tables ABI: the constants, and each family's sizes and
//! offsets taken from the structures in [`super::structs`] (where they
//! are described once and checked against the C headers). Everything is
//! native-endian except addresses and the ports inside NAT ranges, which
//! are in network order.

use std::mem::{offset_of, size_of};

use zerocopy::IntoBytes;

use super::structs::{
    GetEntriesHead, GetInfo, Ip6tEntry, Ip6tIp6, IptEntry, IptIp, ReplaceHead, XtEntryHead,
    XtErrorTarget, XtStandardTarget,
};

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
            Family::V4 => size_of::<IptEntry>(),
            Family::V6 => size_of::<Ip6tEntry>(),
        }
    }

    /// `sizeof(struct ipt_ip)` / `sizeof(struct ip6t_ip6)`: the part of an
    /// entry that matches packet headers.
    pub fn header_size(self) -> usize {
        match self {
            Family::V4 => size_of::<IptIp>(),
            Family::V6 => size_of::<Ip6tIp6>(),
        }
    }

    /// Offset of `target_offset` (a u16, followed by `next_offset`).
    pub fn target_offset_at(self) -> usize {
        match self {
            Family::V4 => offset_of!(IptEntry, target_offset),
            Family::V6 => offset_of!(Ip6tEntry, target_offset),
        }
    }

    /// Offset of `comefrom` (u32), then padding and the two u64 counters.
    pub fn comefrom_at(self) -> usize {
        match self {
            Family::V4 => offset_of!(IptEntry, comefrom),
            Family::V6 => offset_of!(Ip6tEntry, comefrom),
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
        match self {
            Family::V4 => offset_of!(IptIp, iniface),
            Family::V6 => offset_of!(Ip6tIp6, iniface),
        }
    }

    /// Offset of the protocol (u16).
    pub fn proto_at(self) -> usize {
        match self {
            Family::V4 => offset_of!(IptIp, proto),
            Family::V6 => offset_of!(Ip6tIp6, proto),
        }
    }

    pub fn flags_at(self) -> usize {
        match self {
            Family::V4 => offset_of!(IptIp, flags),
            Family::V6 => offset_of!(Ip6tIp6, flags),
        }
    }

    pub fn invflags_at(self) -> usize {
        match self {
            Family::V4 => offset_of!(IptIp, invflags),
            Family::V6 => offset_of!(Ip6tIp6, invflags),
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

pub use super::structs::{ERROR_NAME_LEN, EXTENSION_NAME_LEN, TABLE_NAME_LEN};

/// `struct ipt_getinfo`.
pub const GETINFO_SIZE: usize = size_of::<GetInfo>();
/// `struct ipt_get_entries` before its entries.
pub const GET_ENTRIES_HEAD: usize = size_of::<GetEntriesHead>();
/// `struct ipt_replace` before its entries.
pub const REPLACE_HEAD: usize = size_of::<ReplaceHead>();
/// `struct xt_counters_info` before its counters.
pub const COUNTERS_INFO_HEAD: usize = size_of::<super::structs::CountersInfoHead>();
/// `struct xt_counters`.
pub const COUNTERS_SIZE: usize = size_of::<super::structs::XtCounters>();

/// `struct xt_entry_match` / `xt_entry_target` as userspace writes them:
/// the extension's data follows this head.
pub const EXTENSION_HEAD: usize = size_of::<XtEntryHead>();
/// `sizeof(struct xt_standard_target)`.
pub const STANDARD_TARGET_SIZE: usize = size_of::<XtStandardTarget>();
/// `sizeof(struct xt_error_target)`.
pub const ERROR_TARGET_SIZE: usize = size_of::<XtErrorTarget>();

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

/// A NUL-terminated name in a fixed field of `N` bytes (cut to fit).
pub fn fixed<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = name.len().min(N - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// Appends an extension (match or target) record: head and `data`, padded.
pub fn push_extension(out: &mut Vec<u8>, name: &str, revision: u8, data: &[u8]) {
    let size = align(EXTENSION_HEAD + data.len());
    let head = XtEntryHead {
        // sizes are bounded by the fixed structures encoded here (< 1 KiB)
        size: size as u16,
        name: fixed(name),
        revision,
    };
    let start = out.len();
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(data);
    out.resize(start + size, 0);
}

/// Appends the standard target: a verdict, or (patched when the table is
/// laid out) the offset of the entry to jump to.
pub fn push_standard_target(out: &mut Vec<u8>, verdict: i32) {
    push_extension(out, "", 0, verdict.as_bytes())
}

/// Appends the target of a user chain's first entry, holding its name.
pub fn push_error_target(out: &mut Vec<u8>, name: &str) {
    let data: [u8; ERROR_NAME_LEN] = fixed(name);
    push_extension(out, "ERROR", 0, &data)
}

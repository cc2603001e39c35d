//! The kernel's x_tables structures, each described once as a Rust type
//! with the C layout (`<linux/netfilter_ipv4/ip_tables.h>`,
//! `<linux/netfilter_ipv6/ip6_tables.h>`, `<linux/netfilter/x_tables.h>`,
//! `<linux/netfilter/xt_*.h>`, `<linux/netfilter/nf_nat.h>`). Every blob
//! weft hands the kernel is built from these (zerocopy turns a value into
//! its bytes, and bytes back into a value, without `unsafe`); the sizes and
//! offsets below are asserted at compile time against the headers' values
//! on x86-64, the only layout the writer supports.
//!
//! Padding the compiler would insert is written out as `_pad` fields, so
//! every byte is defined (zero unless set).

use std::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `IFNAMSIZ`.
pub const IFNAMSIZ: usize = 16;

/// `struct xt_counters`.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtCounters {
    pub pcnt: u64,
    pub bcnt: u64,
}

/// `struct ipt_ip`: what an IPv4 rule matches in the packet's headers.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IptIp {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub smsk: [u8; 4],
    pub dmsk: [u8; 4],
    pub iniface: [u8; IFNAMSIZ],
    pub outiface: [u8; IFNAMSIZ],
    pub iniface_mask: [u8; IFNAMSIZ],
    pub outiface_mask: [u8; IFNAMSIZ],
    pub proto: u16,
    pub flags: u8,
    pub invflags: u8,
}

/// `struct ipt_entry`; its matches and target follow it.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IptEntry {
    pub ip: IptIp,
    pub nfcache: u32,
    pub target_offset: u16,
    pub next_offset: u16,
    pub comefrom: u32,
    pub counters: XtCounters,
}

/// `struct ip6t_ip6`: what an IPv6 rule matches in the packet's headers.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Ip6tIp6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub smsk: [u8; 16],
    pub dmsk: [u8; 16],
    pub iniface: [u8; IFNAMSIZ],
    pub outiface: [u8; IFNAMSIZ],
    pub iniface_mask: [u8; IFNAMSIZ],
    pub outiface_mask: [u8; IFNAMSIZ],
    pub proto: u16,
    pub tos: u8,
    pub flags: u8,
    pub invflags: u8,
    pub _pad: [u8; 3],
}

/// `struct ip6t_entry`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Ip6tEntry {
    pub ipv6: Ip6tIp6,
    pub nfcache: u32,
    pub target_offset: u16,
    pub next_offset: u16,
    pub comefrom: u32,
    pub _pad: [u8; 4],
    pub counters: XtCounters,
}

/// `XT_EXTENSION_MAXNAMELEN`.
pub const EXTENSION_NAME_LEN: usize = 29;
/// `XT_FUNCTION_MAXNAMELEN`: an `ERROR` target's chain name.
pub const ERROR_NAME_LEN: usize = 30;
/// `XT_TABLE_MAXNAMELEN`.
pub const TABLE_NAME_LEN: usize = 32;

/// The head of `struct xt_entry_match` / `xt_entry_target` as userspace
/// writes it; the extension's own structure follows.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtEntryHead {
    pub size: u16,
    pub name: [u8; EXTENSION_NAME_LEN],
    pub revision: u8,
}

/// `struct xt_standard_target`: a verdict, or where to jump.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtStandardTarget {
    pub head: XtEntryHead,
    pub verdict: i32,
    pub _pad: [u8; 4],
}

/// `struct xt_error_target`: the head of a user chain, holding its name.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtErrorTarget {
    pub head: XtEntryHead,
    pub errorname: [u8; ERROR_NAME_LEN],
    pub _pad: [u8; 2],
}

/// `struct ipt_getinfo` (the same as `ip6t_getinfo`).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GetInfo {
    pub name: [u8; TABLE_NAME_LEN],
    pub valid_hooks: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
    pub num_entries: u32,
    pub size: u32,
}

/// `struct ipt_get_entries` before its entries.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GetEntriesHead {
    pub name: [u8; TABLE_NAME_LEN],
    pub size: u32,
    pub _pad: [u8; 4],
}

/// `struct ipt_replace` before its entries; `counters` is the address of
/// the buffer the kernel writes the old counters into.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ReplaceHead {
    pub name: [u8; TABLE_NAME_LEN],
    pub valid_hooks: u32,
    pub num_entries: u32,
    pub size: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
    pub num_counters: u32,
    pub counters: u64,
}

/// `struct xt_counters_info` before its counters.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CountersInfoHead {
    pub name: [u8; TABLE_NAME_LEN],
    pub num_counters: u32,
    pub _pad: [u8; 4],
}

// ---- matches ----

/// `struct xt_tcp`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtTcp {
    pub spts: [u16; 2],
    pub dpts: [u16; 2],
    pub option: u8,
    pub flg_mask: u8,
    pub flg_cmp: u8,
    pub invflags: u8,
}

/// `struct xt_udp`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtUdp {
    pub spts: [u16; 2],
    pub dpts: [u16; 2],
    pub invflags: u8,
    pub _pad: u8,
}

/// `struct xt_sctp_info`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtSctpInfo {
    pub dpts: [u16; 2],
    pub spts: [u16; 2],
    pub chunkmap: [u32; 64],
    pub chunk_match_type: u32,
    /// `struct xt_sctp_flag_info[4]`: chunk type, flag, flag mask.
    pub flag_info: [[u8; 3]; 4],
    pub flag_count: i32,
    pub flags: u32,
    pub invflags: u32,
}

/// `struct xt_statistic_info`; `every` shares its place with the random
/// mode's `probability`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtStatisticInfo {
    pub mode: u16,
    pub flags: u16,
    pub probability: u32,
    pub packet: u32,
    pub count: u32,
    /// The kernel's pointer.
    pub master: u64,
}

/// `struct xt_mark_mtinfo1`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtMarkMtinfo1 {
    pub mark: u32,
    pub mask: u32,
    pub invert: u8,
    pub _pad: [u8; 3],
}

/// `struct xt_conntrack_mtinfo3`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtConntrackMtinfo3 {
    pub origsrc_addr: [u8; 16],
    pub origsrc_mask: [u8; 16],
    pub origdst_addr: [u8; 16],
    pub origdst_mask: [u8; 16],
    pub replsrc_addr: [u8; 16],
    pub replsrc_mask: [u8; 16],
    pub repldst_addr: [u8; 16],
    pub repldst_mask: [u8; 16],
    pub expires_min: u32,
    pub expires_max: u32,
    pub l4proto: u16,
    pub origsrc_port: u16,
    pub origdst_port: u16,
    pub replsrc_port: u16,
    pub repldst_port: u16,
    pub match_flags: u16,
    pub invert_flags: u16,
    pub state_mask: u16,
    pub status_mask: u16,
    pub origsrc_port_high: u16,
    pub origdst_port_high: u16,
    pub replsrc_port_high: u16,
    pub repldst_port_high: u16,
    pub _pad: [u8; 2],
}

/// `struct xt_addrtype_info_v1`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtAddrtypeInfoV1 {
    pub source: u16,
    pub dest: u16,
    pub flags: u32,
}

/// `XT_RECENT_NAME_LEN`.
pub const RECENT_NAME_LEN: usize = 200;

/// `struct xt_recent_mtinfo_v1`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtRecentMtinfoV1 {
    pub seconds: u32,
    pub hit_count: u32,
    pub check_set: u8,
    pub invert: u8,
    pub name: [u8; RECENT_NAME_LEN],
    pub side: u8,
    pub _pad: u8,
    pub mask: [u8; 16],
}

/// `XT_NFACCT_NAME_MAX`.
pub const NFACCT_NAME_LEN: usize = 32;

/// `struct xt_nfacct_match_info_v1`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtNfacctMatchInfoV1 {
    pub name: [u8; NFACCT_NAME_LEN],
    /// The kernel's pointer.
    pub nfacct: u64,
}

/// `XT_MAX_COMMENT_LEN`.
pub const COMMENT_LEN: usize = 256;

/// `struct xt_comment_info`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtCommentInfo {
    pub comment: [u8; COMMENT_LEN],
}

// ---- targets ----

/// `struct xt_mark_tginfo2`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XtMarkTginfo2 {
    pub mark: u32,
    pub mask: u32,
}

/// `struct nf_nat_range2` (ports in network order).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NfNatRange2 {
    pub flags: u32,
    pub min_addr: [u8; 16],
    pub max_addr: [u8; 16],
    pub min_proto: u16,
    pub max_proto: u16,
    pub base_proto: u16,
    pub _pad: [u8; 2],
}

/// `struct nf_nat_range` (IPv6 MASQUERADE).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NfNatRange {
    pub flags: u32,
    pub min_addr: [u8; 16],
    pub max_addr: [u8; 16],
    pub min_proto: u16,
    pub max_proto: u16,
}

/// `struct nf_nat_ipv4_multi_range_compat` with its one range (IPv4
/// MASQUERADE).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NfNatIpv4MultiRangeCompat {
    pub rangesize: u32,
    pub flags: u32,
    pub min_ip: u32,
    pub max_ip: u32,
    pub min: u16,
    pub max: u16,
}

/// `struct ipt_reject_info` / `ip6t_reject_info`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RejectInfo {
    pub with: u32,
}

// The headers' sizes and offsets (x86-64), checked at compile time.
const _: () = {
    assert!(size_of::<XtCounters>() == 16);
    assert!(size_of::<IptIp>() == 84);
    assert!(size_of::<IptEntry>() == 112);
    assert!(offset_of!(IptEntry, target_offset) == 88);
    assert!(offset_of!(IptEntry, comefrom) == 92);
    assert!(offset_of!(IptEntry, counters) == 96);
    assert!(offset_of!(IptIp, iniface) == 16);
    assert!(offset_of!(IptIp, proto) == 80);
    assert!(offset_of!(IptIp, flags) == 82);
    assert!(offset_of!(IptIp, invflags) == 83);
    assert!(size_of::<Ip6tIp6>() == 136);
    assert!(size_of::<Ip6tEntry>() == 168);
    assert!(offset_of!(Ip6tEntry, target_offset) == 140);
    assert!(offset_of!(Ip6tEntry, comefrom) == 144);
    assert!(offset_of!(Ip6tEntry, counters) == 152);
    assert!(offset_of!(Ip6tIp6, iniface) == 64);
    assert!(offset_of!(Ip6tIp6, proto) == 128);
    assert!(offset_of!(Ip6tIp6, flags) == 131);
    assert!(offset_of!(Ip6tIp6, invflags) == 132);
    assert!(size_of::<XtEntryHead>() == 32);
    assert!(size_of::<XtStandardTarget>() == 40);
    assert!(size_of::<XtErrorTarget>() == 64);
    assert!(size_of::<GetInfo>() == 84);
    assert!(size_of::<GetEntriesHead>() == 40);
    assert!(size_of::<ReplaceHead>() == 96);
    assert!(offset_of!(ReplaceHead, num_counters) == 84);
    assert!(offset_of!(ReplaceHead, counters) == 88);
    assert!(size_of::<CountersInfoHead>() == 40);
    assert!(size_of::<XtTcp>() == 12);
    assert!(size_of::<XtUdp>() == 10);
    assert!(size_of::<XtSctpInfo>() == 292);
    assert!(offset_of!(XtSctpInfo, flag_info) == 268);
    assert!(offset_of!(XtSctpInfo, flags) == 284);
    assert!(size_of::<XtStatisticInfo>() == 24);
    assert!(size_of::<XtMarkMtinfo1>() == 12);
    assert!(size_of::<XtConntrackMtinfo3>() == 164);
    assert!(offset_of!(XtConntrackMtinfo3, match_flags) == 146);
    assert!(offset_of!(XtConntrackMtinfo3, state_mask) == 150);
    assert!(size_of::<XtAddrtypeInfoV1>() == 8);
    assert!(size_of::<XtRecentMtinfoV1>() == 228);
    assert!(offset_of!(XtRecentMtinfoV1, side) == 210);
    assert!(offset_of!(XtRecentMtinfoV1, mask) == 212);
    assert!(size_of::<XtNfacctMatchInfoV1>() == 40);
    assert!(size_of::<XtCommentInfo>() == 256);
    assert!(size_of::<XtMarkTginfo2>() == 8);
    assert!(size_of::<NfNatRange2>() == 44);
    assert!(size_of::<NfNatRange>() == 40);
    assert!(size_of::<NfNatIpv4MultiRangeCompat>() == 20);
    assert!(size_of::<RejectInfo>() == 4);
};

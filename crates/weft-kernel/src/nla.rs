//! Netlink attributes (length, type, value, padded to 4 bytes), read and
//! written by hand for the families no netlink-packet-* crate covers
//! here (WireGuard's generic netlink, nexthop objects, nfacct, nf_tables
//! rule dumps). One reader and one writer for all of them.

/// `n` rounded up to netlink's 4-byte alignment.
pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The flag on a nested attribute's type.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;

/// Appends attribute `kind` holding `value` to `buf`, padded.
pub(crate) fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + align4(len) - len, 0);
}

/// Appends attribute `kind` holding `s` NUL-terminated, as the kernel
/// takes names.
pub(crate) fn put_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let len = 4 + s.len() + 1;
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    buf.resize(buf.len() + align4(len) - len, 0);
}

/// Starts nested attribute `kind` (flagged [`NLA_F_NESTED`]); returns
/// where it starts, for [`nest_end`] once its attributes are appended.
pub(crate) fn nest_start(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

/// Sets the length of the nested attribute started at `at`.
pub(crate) fn nest_end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// The attributes of a payload: (type without the nested and byte-order
/// flags, value); stops at the first malformed one (untrusted input).
pub fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((kind, value))
    })
}

//! Extended accounting objects (`nfacct`): named packet and byte counters
//! that iptables rules feed with `-m nfacct --nfacct-name NAME`, created
//! and read over netfilter's netlink family (subsystem `NFNL_SUBSYS_ACCT`).
//! A rule naming a counter that does not exist is refused by the kernel,
//! so the proxy creates its counters before it writes such rules.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::error::KernelError;
use crate::nla::{align4, attributes};

const NFNL_SUBSYS_ACCT: u16 = 7;
const NFNL_MSG_ACCT_NEW: u16 = 0;
const NFNL_MSG_ACCT_GET: u16 = 1;
const NFACCT_NAME: u16 = 1;
const NFACCT_PKTS: u16 = 2;
const NFACCT_BYTES: u16 = 3;
/// Longest counter name the kernel keeps (`NFACCT_NAME_MAX` less the NUL).
const NAME_MAX: usize = 31;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const HEADER: usize = 16;

/// One request: netlink header, `nfgenmsg` (AF_UNSPEC, version 0) and the
/// counter's name attribute.
fn request(kind: u16, flags: u16, seq: u32, name: &str) -> Vec<u8> {
    let attr_len = 4 + name.len() + 1;
    let len = HEADER + 4 + align4(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_ACCT << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&NFACCT_NAME.to_ne_bytes());
    m.extend_from_slice(name.as_bytes());
    m.resize(len, 0);
    m
}

/// Sends one request and returns the kernel's first reply message
/// (type and payload), or its error.
fn exchange(msg: &[u8]) -> Result<(u16, Vec<u8>), KernelError> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(KernelError::Socket)?;
    sock.bind_auto().map_err(KernelError::Socket)?;
    sock.send_to(msg, &SocketAddr::new(0, 0), 0)
        .map_err(KernelError::Socket)?;
    let mut buf = vec![0u8; 8192];
    let (n, _) = sock
        .recv_from(&mut &mut buf[..], 0)
        .map_err(KernelError::Socket)?;
    let buf = &buf[..n];
    if n < HEADER {
        return Err(KernelError::Socket(io::Error::other("short netlink reply")));
    }
    let len = (u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).min(n);
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    let payload = buf[HEADER..len].to_vec();
    if kind == NLMSG_ERROR && payload.len() >= 4 {
        let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if code != 0 {
            return Err(KernelError::Socket(io::Error::from_raw_os_error(-code)));
        }
    }
    Ok((kind, payload))
}

fn check_name(name: &str) -> Result<(), KernelError> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains('\0') {
        return Err(KernelError::Socket(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("nfacct counter name {name:?} must be 1-{NAME_MAX} bytes"),
        )));
    }
    Ok(())
}

/// Creates counter `name` in the current network namespace unless it
/// exists (an existing one keeps its counts).
pub fn ensure_nfacct(name: &str) -> Result<(), KernelError> {
    check_name(name)?;
    if nfacct_counts(name).is_ok() {
        return Ok(());
    }
    match exchange(&request(
        NFNL_MSG_ACCT_NEW,
        NLM_F_CREATE | NLM_F_ACK,
        1,
        name,
    )) {
        Ok(_) => Ok(()),
        // created meanwhile by someone else
        Err(KernelError::Socket(e)) if matches!(e.raw_os_error(), Some(EEXIST | EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}

const EEXIST: i32 = 17;
const EBUSY: i32 = 16;

/// Packets and bytes counted by counter `name`.
pub fn nfacct_counts(name: &str) -> Result<(u64, u64), KernelError> {
    check_name(name)?;
    let (_, payload) = exchange(&request(NFNL_MSG_ACCT_GET, NLM_F_ACK, 1, name))?;
    // nfgenmsg, then attributes
    let (mut packets, mut bytes) = (None, None);
    for (kind, value) in attributes(payload.get(4..).unwrap_or_default()) {
        if value.len() == 8 {
            let v = u64::from_be_bytes(value.try_into().unwrap_or([0; 8]));
            match kind {
                NFACCT_PKTS => packets = Some(v),
                NFACCT_BYTES => bytes = Some(v),
                _ => {}
            }
        }
    }
    match (packets, bytes) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err(KernelError::Socket(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no nfacct counter {name:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = request(NFNL_MSG_ACCT_NEW, NLM_F_CREATE | NLM_F_ACK, 7, "abc");
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 28);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 7 << 8);
        assert_eq!(&m[24..27], b"abc");
        assert_eq!(m[27], 0);
        assert!(check_name(&"x".repeat(32)).is_err());
    }
}

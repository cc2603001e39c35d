//! The nftables objects a host's kernel gains, as it gains them: a
//! netlink socket in the host's namespace subscribed to netfilter's
//! nftables multicast group (what `nft monitor` listens to, without
//! `nft`'s listing of the whole ruleset before it starts, which takes
//! longer than the measurement at 10,000 Services). iptables-nft's rules
//! are nftables rules too, so both proxy modes are seen this way.
//!
//! Only new rules and new set elements are kept, each with its table,
//! its chain or set, the time it was read and its raw attributes (the
//! addresses in a rule's comparisons or an element's key are there in
//! network byte order).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

/// `NFNLGRP_NFTABLES`: nftables object changes.
const GROUP_NFTABLES: u32 = 7;
const SUBSYS_NFTABLES: u16 = 10;
const MSG_NEWRULE: u16 = 6;
const MSG_NEWSETELEM: u16 = 12;
/// Attribute 1 of a rule or an element list is its table, 2 its chain or set.
const ATTR_TABLE: u16 = 1;
const ATTR_CONTAINER: u16 = 2;
/// Netlink message header, then nftables' `nfgenmsg`.
const HEADER: usize = 16;
const NFGENMSG: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rule,
    Element,
}

/// One new rule or batch of new elements.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub kind: Kind,
    pub table: String,
    /// The rule's chain or the elements' set.
    pub container: String,
    /// Every attribute, raw.
    pub payload: Vec<u8>,
}

impl Event {
    /// Whether `bytes` occur anywhere in the attributes.
    pub fn mentions(&self, bytes: &[u8]) -> bool {
        !bytes.is_empty() && self.payload.windows(bytes.len()).any(|w| w == bytes)
    }
}

/// A listening socket's events, read by a thread of their own (stamped
/// as they arrive, so a slow reader does not delay them). The thread also
/// sends `None` after each quiet read timeout, to learn whether anybody
/// still listens.
pub struct NftEvents {
    events: Receiver<Option<Event>>,
}

impl NftEvents {
    /// Starts listening in namespace `ns`; events from this call's return
    /// on are seen.
    pub fn start(ns: &str) -> Result<NftEvents> {
        let socket = weft_lab::in_netns(ns, || -> Result<Socket> {
            let mut s = Socket::new(NETLINK_NETFILTER).context("opening a netfilter socket")?;
            s.bind_auto().context("binding it")?;
            // a full sync of kube-proxy's iptables rules is 100,000 events
            s.set_rx_buf_sz(64 << 20).context("sizing its buffer")?;
            s.add_membership(GROUP_NFTABLES)
                .context("joining the nftables group")?;
            Ok(s)
        })??;
        set_read_timeout(&socket, Duration::from_millis(200))?;
        let (tx, events) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match socket.recv(&mut &mut buf[..], 0) {
                    Ok(n) => {
                        let at = Instant::now();
                        for e in parse(&buf[..n], at) {
                            if tx.send(Some(e)).is_err() {
                                return;
                            }
                        }
                    }
                    // a burst larger than the buffer: the ones lost were
                    // not what is waited for, or it is seen in the next
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // nobody listens any more: stop
                        if tx.send(None).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(NftEvents { events })
    }

    /// Forgets what was seen so far.
    pub fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// When an event `wanted` came, waiting up to `timeout`.
    pub fn until(
        &self,
        mut wanted: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Option<Instant> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(Some(e)) if wanted(&e) => return Some(e.at),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

fn set_read_timeout(socket: &Socket, timeout: Duration) -> Result<()> {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
        .context("setting the socket's read timeout")
}

/// The new rules and elements among the messages in `buf`.
fn parse(buf: &[u8], at: Instant) -> Vec<Event> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= HEADER {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < HEADER || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let (subsys, msg) = (kind >> 8, kind & 0xff);
        let kind = match msg {
            MSG_NEWRULE => Some(Kind::Rule),
            MSG_NEWSETELEM => Some(Kind::Element),
            _ => None,
        };
        if let (SUBSYS_NFTABLES, Some(kind)) = (subsys, kind) {
            if let Some(attrs) = rest[..len].get(HEADER + NFGENMSG..) {
                let (mut table, mut container) = (String::new(), String::new());
                for (t, data) in weft_kernel::netlink_attributes(attrs) {
                    match t {
                        ATTR_TABLE => table = c_string(data),
                        ATTR_CONTAINER => container = c_string(data),
                        _ => {}
                    }
                }
                out.push(Event {
                    at,
                    kind,
                    table,
                    container,
                    payload: attrs.to_vec(),
                });
            }
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(data);
        a.resize(align4(a.len()), 0);
        a
    }

    fn message(msg: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let len = HEADER + NFGENMSG + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[2, 0, 0, 0]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn new_elements_and_rules_are_read_with_their_set_or_chain() {
        let ip = [10, 254, 0, 12];
        let mut buf = message(
            MSG_NEWSETELEM,
            &[
                attr(1, b"kube-proxy\0"),
                attr(2, b"service-ips\0"),
                attr(3 | 0x8000, &ip),
            ],
        );
        // a table deletion is not kept
        buf.extend(message(2, &[attr(1, b"x\0")]));
        buf.extend(message(
            MSG_NEWRULE,
            &[attr(1, b"nat\0"), attr(2, b"KUBE-SERVICES\0")],
        ));
        let events = parse(&buf, Instant::now());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, Kind::Element);
        assert_eq!(events[0].table, "kube-proxy");
        assert_eq!(events[0].container, "service-ips");
        assert!(events[0].mentions(&ip));
        assert!(!events[1].mentions(&ip));
        assert_eq!(events[1].container, "KUBE-SERVICES");
    }

    #[test]
    fn a_truncated_message_ends_the_read() {
        let mut buf = message(MSG_NEWRULE, &[attr(1, b"nat\0")]);
        buf.truncate(buf.len() - 2);
        assert!(parse(&buf, Instant::now()).is_empty());
    }
}

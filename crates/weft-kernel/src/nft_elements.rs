//! Set and map elements written to nf_tables over netlink, one batch per
//! transaction, without libnftables' text parser: `NFT_MSG_NEWSETELEM` and
//! `NFT_MSG_DELSETELEM` between `NFNL_MSG_BATCH_BEGIN` and `_END`, the
//! messages libnftables itself sends for `add element` and `delete
//! element`. Keys and data are the kernel's register bytes, which the
//! caller lays out (each field of a concatenation padded to 4 bytes).
//!
//! Why by hand: no netlink-packet-* crate speaks nf_tables, and the crates
//! that do (`nftnl`, `rustables`) build rules and sets but not elements of
//! maps with concatenated keys and verdict or value data. The encoding is
//! checked against the words libnftables prints for the same command
//! (`nft --debug=netlink`) in the proxy's tests.
//!
//! The kernel handles a batch while `sendmsg` runs, so its answers are
//! all queued when the call returns: only the last message asks for an
//! acknowledgement (a refused one is answered whatever its flags), and
//! the queue is read without waiting. [`read_replies`] reads it (fuzzed).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use crate::error::KernelError;
use crate::nla::{align4, nest_end, nest_start, put_attr, put_str};

const SUBSYS_NFTABLES: u16 = 10;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;
const MSG_BATCH_BEGIN: u16 = 0x10;
const MSG_BATCH_END: u16 = 0x11;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const HEADER: usize = 16;

const LIST_TABLE: u16 = 1;
const LIST_SET: u16 = 2;
const LIST_ELEMENTS: u16 = 3;
const LIST_ELEM: u16 = 1;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// The elements of one message stay under the u16 length of their
/// nested attribute (libnftnl splits its messages the same way).
const ELEMENTS_PER_MESSAGE_BYTES: usize = 60_000;
/// Room for the answers to a batch whose every message is refused.
const RECEIVE_BUFFER: usize = 1 << 20;

/// What a map element maps its key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NftData<'a> {
    /// Register bytes (a map of values, e.g. `ip daddr . th dport`).
    Value(&'a [u8]),
    Drop,
    Accept,
    Jump(&'a str),
    Goto(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Delete,
}

/// The message being filled: its start in the buffer and its elements
/// attribute's start.
struct Open {
    op: Op,
    set: String,
    start: usize,
    elements: usize,
}

/// One transaction's element changes in one table, encoded as they are
/// added. Deletions and additions go in the order they were given.
pub struct NftElementBatch {
    family: u8,
    table: String,
    buf: Vec<u8>,
    open: Option<Open>,
    /// (operation, set) of each message, for error messages.
    messages: Vec<(Op, String)>,
    elements: usize,
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn put_data(buf: &mut Vec<u8>, kind: u16, data: NftData<'_>) {
    let outer = nest_start(buf, kind);
    let verdict = |buf: &mut Vec<u8>, code: i32, chain: Option<&str>| {
        let at = nest_start(buf, DATA_VERDICT);
        put_attr(buf, VERDICT_CODE, &code.to_be_bytes());
        if let Some(chain) = chain {
            put_str(buf, VERDICT_CHAIN, chain);
        }
        nest_end(buf, at);
    };
    match data {
        NftData::Value(bytes) => put_attr(buf, DATA_VALUE, bytes),
        NftData::Drop => verdict(buf, NF_DROP, None),
        NftData::Accept => verdict(buf, NF_ACCEPT, None),
        NftData::Jump(chain) => verdict(buf, NFT_JUMP, Some(chain)),
        NftData::Goto(chain) => verdict(buf, NFT_GOTO, Some(chain)),
    }
    nest_end(buf, outer);
}

impl NftElementBatch {
    /// An empty batch for `table` of `family` (e.g.
    /// [`NFPROTO_IPV4`](crate::NFPROTO_IPV4)).
    pub fn new(family: u8, table: &str) -> NftElementBatch {
        let mut buf = Vec::with_capacity(4096);
        header(
            &mut buf,
            MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            0,
            SUBSYS_NFTABLES,
        );
        patch_len(&mut buf, 0);
        NftElementBatch {
            family,
            table: table.to_string(),
            buf,
            open: None,
            messages: Vec::new(),
            elements: 0,
        }
    }

    /// Adds `key` (mapped to `data` in a map) to `set`.
    pub fn add(&mut self, set: &str, key: &[u8], data: Option<NftData<'_>>) {
        self.element(Op::Add, set, key, data);
    }

    /// Deletes `key` from `set`.
    pub fn delete(&mut self, set: &str, key: &[u8]) {
        self.element(Op::Delete, set, key, None);
    }

    pub fn is_empty(&self) -> bool {
        self.elements == 0
    }

    /// Elements added and deleted.
    pub fn len(&self) -> usize {
        self.elements
    }

    fn element(&mut self, op: Op, set: &str, key: &[u8], data: Option<NftData<'_>>) {
        let same = self.open.as_ref().is_some_and(|o| {
            o.op == op && o.set == set && self.buf.len() - o.elements < ELEMENTS_PER_MESSAGE_BYTES
        });
        if !same {
            self.close();
            self.open_message(op, set);
        }
        let elem = nest_start(&mut self.buf, LIST_ELEM);
        let k = nest_start(&mut self.buf, ELEM_KEY);
        put_attr(&mut self.buf, DATA_VALUE, key);
        nest_end(&mut self.buf, k);
        if let Some(data) = data {
            put_data(&mut self.buf, ELEM_DATA, data);
        }
        nest_end(&mut self.buf, elem);
        self.elements += 1;
    }

    fn open_message(&mut self, op: Op, set: &str) {
        let (kind, flags) = match op {
            Op::Add => (MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
            Op::Delete => (MSG_DELSETELEM, NLM_F_REQUEST),
        };
        let start = self.buf.len();
        let seq = self.messages.len() as u32 + 1;
        header(
            &mut self.buf,
            (SUBSYS_NFTABLES << 8) | kind,
            flags,
            seq,
            self.family,
            0,
        );
        put_str(&mut self.buf, LIST_TABLE, &self.table);
        put_str(&mut self.buf, LIST_SET, set);
        let elements = nest_start(&mut self.buf, LIST_ELEMENTS);
        self.messages.push((op, set.to_string()));
        self.open = Some(Open {
            op,
            set: set.to_string(),
            start,
            elements,
        });
    }

    /// Ends the open message; returns where it started.
    fn close(&mut self) -> Option<usize> {
        let o = self.open.take()?;
        nest_end(&mut self.buf, o.elements);
        patch_len(&mut self.buf, o.start);
        Some(o.start)
    }

    /// The whole transaction's bytes, from batch begin to batch end.
    pub fn finish(mut self) -> FinishedBatch {
        if let Some(last) = self.close() {
            let flags = &mut self.buf[last + 6..last + 8];
            let asked = u16::from_ne_bytes([flags[0], flags[1]]) | NLM_F_ACK;
            flags.copy_from_slice(&asked.to_ne_bytes());
        }
        let start = self.buf.len();
        let seq = self.messages.len() as u32 + 1;
        header(
            &mut self.buf,
            MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            SUBSYS_NFTABLES,
        );
        patch_len(&mut self.buf, start);
        FinishedBatch {
            bytes: self.buf,
            messages: self.messages,
        }
    }
}

fn patch_len(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// A batch ready to send: its bytes, and what each message (sequence
/// number i + 1) does.
pub struct FinishedBatch {
    pub bytes: Vec<u8>,
    messages: Vec<(Op, String)>,
}

impl FinishedBatch {
    fn describe(&self, seq: u32) -> String {
        match seq
            .checked_sub(1)
            .and_then(|i| self.messages.get(i as usize))
        {
            Some((Op::Add, set)) => format!("adding elements to nf_tables set {set}"),
            Some((Op::Delete, set)) => format!("deleting elements from nf_tables set {set}"),
            None => "an nf_tables transaction".to_string(),
        }
    }
}

/// The replies read so far to one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replies {
    /// The message with this sequence number (the last) was answered.
    pub last: u32,
    pub done: bool,
    /// The first refusal: (sequence number, errno).
    pub refused: Option<(u32, i32)>,
}

/// Reads one receive buffer of replies to a batch into `replies`;
/// anything unreadable ends the buffer (untrusted input).
pub fn read_replies(buf: &[u8], replies: &mut Replies) {
    let mut at = 0;
    while let Some(head) = buf.get(at..at + HEADER) {
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        if len < HEADER || at.saturating_add(len) > buf.len() {
            break;
        }
        // nlmsgerr: the error code, then the request's header
        let body = &buf[at + HEADER..at + len];
        if kind == NLMSG_ERROR && body.len() >= 4 + HEADER {
            let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            let seq = u32::from_ne_bytes([body[12], body[13], body[14], body[15]]);
            replies.done |= seq == replies.last;
            if code != 0 && replies.refused.is_none() {
                replies.refused = Some((seq, code.checked_neg().unwrap_or(i32::MAX)));
            }
        }
        at += align4(len);
    }
}

/// A netfilter netlink socket for element transactions, in the network
/// namespace it was opened in.
pub struct NftElementSocket {
    sock: Socket,
    sndbuf: usize,
    rx: Vec<u8>,
}

impl NftElementSocket {
    pub fn open() -> Result<NftElementSocket, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(KernelError::Socket)?;
        sock.bind_auto().map_err(KernelError::Socket)?;
        // acknowledgements without a copy of the (large) request
        sock.set_cap_ack(true).map_err(KernelError::Socket)?;
        setsockopt(&sock, sockopt::RcvBufForce, &RECEIVE_BUFFER)
            .map_err(|e| KernelError::Socket(e.into()))?;
        Ok(NftElementSocket {
            sock,
            sndbuf: 0,
            rx: vec![0u8; 64 * 1024],
        })
    }

    /// Applies `batch` as one transaction: all of it or, when the kernel
    /// refuses an element, none of it. Returns the bytes sent.
    pub fn commit(&mut self, batch: &FinishedBatch) -> Result<usize, KernelError> {
        let len = batch.bytes.len();
        if len > self.sndbuf {
            // the batch goes in one message: the send buffer must hold it
            // (as libnftables sizes its own)
            let size = len.next_power_of_two().max(256 * 1024);
            setsockopt(&self.sock, sockopt::SndBufForce, &size)
                .map_err(|e| KernelError::request("sizing the nf_tables send buffer", e.into()))?;
            self.sndbuf = size;
        }
        self.sock
            .send_to(&batch.bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|e| KernelError::request("sending an nf_tables transaction", e))?;
        let mut replies = Replies {
            last: batch.messages.len() as u32,
            ..Replies::default()
        };
        // answered before send_to returned: read what is queued
        loop {
            match self
                .sock
                .recv_from(&mut &mut self.rx[..], libc::MSG_DONTWAIT)
            {
                Ok((0, _)) => break,
                Ok((n, _)) => read_replies(&self.rx[..n], &mut replies),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(KernelError::request("reading nf_tables' answer", e)),
            }
        }
        match replies.refused {
            Some((seq, errno)) => Err(refusal(batch, seq, errno)),
            None if replies.done => Ok(len),
            None => Err(KernelError::request(
                "an nf_tables transaction",
                io::Error::other("the kernel did not acknowledge it"),
            )),
        }
    }
}

fn refusal(batch: &FinishedBatch, seq: u32, errno: i32) -> KernelError {
    KernelError::request(batch.describe(seq), io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nla::attributes;

    /// The messages of a batch: (type, flags, seq, payload after nfgenmsg).
    fn messages(buf: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("len")) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]);
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("seq"));
            out.push((kind, flags, seq, buf[at + 20..at + len].to_vec()));
            at += align4(len);
        }
        out
    }

    #[test]
    fn a_batch_is_begin_one_message_per_set_and_operation_then_end() {
        let mut b = NftElementBatch::new(2, "kube-proxy");
        b.delete("service-endpoints-2", &[1, 2, 3, 4]);
        b.add(
            "service-endpoints-2",
            &[1, 2, 3, 4],
            Some(NftData::Value(&[9; 8])),
        );
        b.add(
            "service-endpoints-2",
            &[5, 6, 7, 8],
            Some(NftData::Value(&[9; 8])),
        );
        b.add(
            "service-ips",
            &[1; 12],
            Some(NftData::Goto("service-balance-2")),
        );
        assert_eq!(b.len(), 4);
        let done = b.finish();
        let m = messages(&done.bytes);
        let kinds: Vec<(u16, u32)> = m.iter().map(|(k, _, s, _)| (*k, *s)).collect();
        assert_eq!(
            kinds,
            [(0x10, 0), (0xa0e, 1), (0xa0c, 2), (0xa0c, 3), (0x11, 4)]
        );
        assert_eq!(m[2].1, NLM_F_REQUEST | NLM_F_CREATE);
        assert_eq!(m[3].1, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        // the second add message holds the goto verdict
        let attrs: Vec<(u16, Vec<u8>)> =
            attributes(&m[3].3).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(attrs[0], (LIST_TABLE, b"kube-proxy\0".to_vec()));
        assert_eq!(attrs[1], (LIST_SET, b"service-ips\0".to_vec()));
        let elem = attributes(&attrs[2].1).next().expect("element").1.to_vec();
        let data = attributes(&elem).nth(1).expect("data").1.to_vec();
        let verdict = attributes(&data).next().expect("verdict").1.to_vec();
        let parts: Vec<(u16, Vec<u8>)> =
            attributes(&verdict).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(parts[0], (VERDICT_CODE, NFT_GOTO.to_be_bytes().to_vec()));
        assert_eq!(parts[1], (VERDICT_CHAIN, b"service-balance-2\0".to_vec()));
    }

    #[test]
    fn large_sets_are_split_into_messages_under_the_attribute_limit() {
        let mut b = NftElementBatch::new(2, "t");
        for i in 0..10_000u32 {
            b.add("s", &i.to_ne_bytes(), Some(NftData::Value(&[0; 8])));
        }
        let done = b.finish();
        let m = messages(&done.bytes);
        assert!(m.len() > 3, "{} messages", m.len());
        let mut n = 0;
        for (_, _, _, payload) in &m[1..m.len() - 1] {
            let (_, elements) = attributes(payload).nth(2).expect("elements");
            n += attributes(elements).count();
        }
        assert_eq!(n, 10_000);
    }

    #[test]
    fn replies_count_acknowledgements_and_keep_the_first_refusal() {
        let reply = |code: i32, seq: u32| {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&code.to_ne_bytes());
            m.extend_from_slice(&[0; 8]);
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&[0; 4]);
            m
        };
        let buf = [reply(0, 1), reply(-2, 2), reply(-17, 3), vec![1, 2, 3]].concat();
        let mut r = Replies {
            last: 3,
            ..Replies::default()
        };
        read_replies(&buf, &mut r);
        assert_eq!(
            r,
            Replies {
                last: 3,
                done: true,
                refused: Some((2, 2))
            }
        );
        let mut r = Replies {
            last: 4,
            ..Replies::default()
        };
        read_replies(&[0xff; 40], &mut r);
        read_replies(&reply(0, 1), &mut r);
        assert!(!r.done && r.refused.is_none());
    }
}

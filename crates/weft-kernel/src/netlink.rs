//! A synchronous rtnetlink socket that sends requests in large batches.
//!
//! Many requests are packed into one `sendmsg`; the kernel processes them
//! in order within that call. Only the last request of a batch asks for an
//! acknowledgement, so successes cost nothing on the way back, while every
//! failure still comes back as an error message carrying its sequence
//! number. Reading up to the final ACK therefore collects all failures.

use std::fs::File;
use std::io;
use std::path::Path;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::KernelError;
use crate::nla::align4;

/// Bytes of requests per `sendmsg`; below the default socket send buffer.
const BATCH_BYTES: usize = 48 * 1024;
const RECV_BYTES: usize = 256 * 1024;
const DUMP_RETRIES: usize = 5;

/// One rtnetlink socket (bound to the network namespace it was opened in).
pub struct Netlink {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

/// A request in a batch, with its `NLM_F_*` flags beyond REQUEST.
#[derive(Debug, Clone)]
pub enum Request {
    /// A message `netlink-packet-route` knows how to build.
    Route(RouteNetlinkMessage, u16),
    /// A message it does not (such as nexthop objects): type and payload.
    Raw {
        kind: u16,
        flags: u16,
        payload: Vec<u8>,
    },
}

/// A decoded message of a raw dump: its type and payload bytes.
pub struct RawMessage<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, KernelError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(KernelError::Socket)?;
        sock.bind_auto().map_err(KernelError::Socket)?;
        // Best effort: small error replies, a larger receive queue.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_rx_buf_sz(4usize << 20);
        Ok(Netlink {
            sock,
            seq: 1,
            rx: Vec::with_capacity(RECV_BYTES),
            tx: Vec::with_capacity(BATCH_BYTES + 4096),
        })
    }

    /// Opens a socket inside the network namespace at `path`
    /// (e.g. `/run/netns/NAME`) without moving the calling thread.
    pub fn open_in_netns(path: &Path) -> Result<Netlink, KernelError> {
        in_netns(path, Netlink::open)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn send_tx(&mut self) -> Result<(), KernelError> {
        let kernel = SocketAddr::new(0, 0);
        self.sock
            .send_to(&self.tx, &kernel, 0)
            .map_err(KernelError::Socket)?;
        Ok(())
    }

    /// Appends one request to the transmit buffer with extra flags.
    fn push_request(&mut self, req: Request, extra: u16) -> u32 {
        match req {
            Request::Route(msg, flags) => self.push(msg, flags | extra),
            Request::Raw {
                kind,
                flags,
                payload,
            } => self.push_raw(kind, flags | extra, &payload),
        }
    }

    /// Appends a message given as type and payload.
    fn push_raw(&mut self, kind: u16, flags: u16, payload: &[u8]) -> u32 {
        let seq = self.next_seq();
        let len = NLMSG_HDRLEN + payload.len();
        let mut header = NetlinkHeader::default();
        header.length = len as u32;
        header.message_type = kind;
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let start = self.tx.len();
        self.tx.resize(start + align4(len), 0);
        netlink_packet_core::Emitable::emit(&header, &mut self.tx[start..start + NLMSG_HDRLEN]);
        self.tx[start + NLMSG_HDRLEN..start + len].copy_from_slice(payload);
        seq
    }

    /// Appends one message to the transmit buffer with the given flags.
    fn push(&mut self, msg: RouteNetlinkMessage, flags: u16) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let len = nl.buffer_len();
        let start = self.tx.len();
        self.tx.resize(start + align4(len), 0);
        nl.serialize(&mut self.tx[start..start + len]);
        seq
    }

    /// Receives one datagram into `rx`; returns its length.
    fn recv(&mut self) -> Result<usize, KernelError> {
        self.rx.clear();
        self.sock
            .recv(&mut self.rx, 0)
            .map_err(KernelError::Socket)?;
        Ok(self.rx.len())
    }

    /// Sends one request and waits for its acknowledgement.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<(), KernelError> {
        let failures = self.batch([Request::Route(msg, flags)])?;
        match failures.into_iter().next() {
            None => Ok(()),
            Some((_, e)) => Err(KernelError::request(what, e)),
        }
    }

    /// Sends many requests in as few system calls as possible and returns
    /// the failures as (position in `requests`, error). Requests are
    /// serialised as they are consumed, so a long iterator costs no more
    /// memory than one batch.
    pub fn batch(
        &mut self,
        requests: impl IntoIterator<Item = Request>,
    ) -> Result<Vec<(usize, io::Error)>, KernelError> {
        let mut failures = Vec::new();
        let mut iter = requests.into_iter().enumerate().peekable();
        while iter.peek().is_some() {
            self.tx.clear();
            // (first seq, index of first request) of this chunk
            let mut first: Option<(u32, usize)> = None;
            let mut last_seq = 0;
            while let Some((i, req)) = iter.next() {
                let is_last = iter.peek().is_none() || self.tx.len() >= BATCH_BYTES;
                let ack = if is_last { NLM_F_ACK } else { 0 };
                last_seq = self.push_request(req, ack);
                first.get_or_insert((last_seq, i));
                if is_last {
                    break;
                }
            }
            let Some((first_seq, first_index)) = first else {
                break;
            };
            self.send_tx()?;
            self.collect_errors(first_seq, first_index, last_seq, &mut failures)?;
        }
        Ok(failures)
    }

    /// Reads replies until the ACK of `last_seq`, recording failures.
    fn collect_errors(
        &mut self,
        first_seq: u32,
        first_index: usize,
        last_seq: u32,
        failures: &mut Vec<(usize, io::Error)>,
    ) -> Result<(), KernelError> {
        loop {
            let n = self.recv()?;
            let mut done = false;
            for_each_message(&self.rx[..n], |msg| {
                if let NetlinkPayload::Error(e) = &msg.payload {
                    let seq = msg.header.sequence_number;
                    if e.code.is_some() {
                        let index = first_index + seq.wrapping_sub(first_seq) as usize;
                        failures.push((index, e.to_io()));
                    }
                    if seq == last_seq {
                        done = true;
                    }
                }
            })?;
            if done {
                return Ok(());
            }
        }
    }

    /// Dumps a table (links, addresses, routes, neighbours).
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let mut out = Vec::new();
        self.transact(msg, NLM_F_DUMP, what, |m| out.push(m))?;
        Ok(out)
    }

    /// Dumps a table, handing each entry to `f` as it is decoded (no list
    /// of the whole table is built). After an interrupted dump is retried
    /// `f` may see entries twice; callers keep maps keyed like the kernel.
    pub fn dump_each(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
        f: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), KernelError> {
        self.transact(msg, NLM_F_DUMP, what, f)
    }

    /// Sends one query (such as a route lookup) and returns its replies.
    pub fn query(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let mut out = Vec::new();
        self.transact(msg, NLM_F_ACK, what, |m| out.push(m))?;
        Ok(out)
    }

    /// Dumps a table the typed decoder does not know (e.g. nexthops):
    /// `f` gets each entry's type and payload.
    pub fn dump_raw(
        &mut self,
        kind: u16,
        payload: &[u8],
        what: &str,
        mut f: impl FnMut(RawMessage),
    ) -> Result<(), KernelError> {
        self.tx.clear();
        let seq = self.push_raw(kind, NLM_F_DUMP, payload);
        self.send_tx()?;
        loop {
            let n = self.recv()?;
            let mut buf = &self.rx[..n];
            while buf.len() >= NLMSG_HDRLEN {
                let nb = NetlinkBuffer::new_checked(buf)
                    .map_err(|e| KernelError::Decode(e.to_string()))?;
                let len = nb.length() as usize;
                if len < NLMSG_HDRLEN || len > buf.len() {
                    return Err(KernelError::Decode(format!("message length {len}")));
                }
                let (kind, msg_seq) = (nb.message_type(), nb.sequence_number());
                let body = &buf[NLMSG_HDRLEN..len];
                buf = &buf[align4(len).min(buf.len())..];
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .and_then(|b| <[u8; 4]>::try_from(b).ok())
                            .map(i32::from_ne_bytes)
                            .unwrap_or(0);
                        if code == 0 {
                            return Ok(());
                        }
                        return Err(KernelError::request(
                            what,
                            io::Error::from_raw_os_error(-code),
                        ));
                    }
                    _ => f(RawMessage {
                        kind,
                        payload: body,
                    }),
                }
            }
        }
    }

    fn transact(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
        mut f: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), KernelError> {
        for _ in 0..DUMP_RETRIES {
            self.tx.clear();
            let seq = self.push(msg.clone(), flags);
            self.send_tx()?;
            let mut interrupted = false;
            let mut finished = false;
            let mut failed: Option<io::Error> = None;
            while !finished {
                let n = self.recv()?;
                for_each_message(&self.rx[..n], |m| {
                    if m.header.sequence_number != seq {
                        return;
                    }
                    if m.header.flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match m.payload {
                        NetlinkPayload::InnerMessage(inner) => f(inner),
                        NetlinkPayload::Done(_) => finished = true,
                        NetlinkPayload::Error(e) => {
                            finished = true;
                            if e.code.is_some() {
                                failed = Some(e.to_io());
                            }
                        }
                        _ => {}
                    }
                })?;
            }
            if let Some(e) = failed {
                return Err(KernelError::request(what, e));
            }
            if !interrupted {
                return Ok(());
            }
        }
        Err(KernelError::request(
            what,
            io::Error::other("dump kept being interrupted by concurrent changes"),
        ))
    }
}

/// Calls `f` for every netlink message in one received datagram.
fn for_each_message(
    mut buf: &[u8],
    mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>),
) -> Result<(), KernelError> {
    while !buf.is_empty() {
        let len = NetlinkBuffer::new_checked(buf)
            .map_err(|e| KernelError::Decode(e.to_string()))?
            .length() as usize;
        if len < 16 || len > buf.len() {
            return Err(KernelError::Decode(format!("message length {len}")));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            .map_err(|e| KernelError::Decode(e.to_string()))?;
        f(msg);
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(())
}

/// Runs `open` on a helper thread that enters the network namespace at
/// `path` (e.g. `/run/netns/NAME`) and exits: sockets it creates live in
/// that namespace, and the calling thread stays where it is.
pub(crate) fn in_netns<T: Send + 'static>(
    path: &Path,
    open: impl FnOnce() -> Result<T, KernelError> + Send + 'static,
) -> Result<T, KernelError> {
    let owned = path.to_path_buf();
    let netns_err = |source: io::Error| KernelError::Netns {
        path: path.display().to_string(),
        source,
    };
    std::thread::spawn(move || -> Result<T, KernelError> {
        let err = |source: io::Error| KernelError::Netns {
            path: owned.display().to_string(),
            source,
        };
        let ns = File::open(&owned).map_err(err)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| err(io::Error::from(e)))?;
        open()
    })
    .join()
    .map_err(|_| netns_err(io::Error::other("helper thread panicked")))?
}

//! The threads that move a WireGuard device's packets, in batches as the
//! udp backend does: TUN reads with segmentation offload (one read is up
//! to 64 KB of a flow, cut into MTU-sized packets), each packet encrypted
//! into a reused buffer, same-size datagrams to one peer sent as one UDP
//! GSO train; UDP reads with GRO (many datagrams per read), decrypted
//! straight into the TUN write buffers, coalesced back into large
//! segments for the kernel. No allocation per packet.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::TunnResult;
use nix::sys::socket::{MsgFlags, SockaddrStorage};
use tun_rs::{ExpandBuffer, SyncDevice};

use super::device::{Peer, WgDevice};
use super::socket::canonical;
use crate::gso;
use crate::udp::retryable;

const BUF: usize = 65536;
/// What encryption adds to a packet (header 16, tag 16).
const SEAL: usize = 32;
const TICK: Duration = Duration::from_millis(250);

/// Starts the device's transmit, receive and timer threads.
pub fn start(tun: SyncDevice, wg: Arc<WgDevice>) -> io::Result<()> {
    let tun = Arc::new(tun);
    let name = wg.name.clone();
    let (tun_rx, wg_rx, wg_timer) = (tun.clone(), wg.clone(), wg.clone());
    std::thread::Builder::new()
        .name(format!("{name}-tx"))
        .spawn(move || {
            if let Err(e) = transmit(&tun, &wg) {
                tracing::error!(device = %wg.name, "WireGuard transmit stopped: {e}");
            }
        })?;
    std::thread::Builder::new()
        .name(format!("{name}-rx"))
        .spawn(move || {
            if let Err(e) = receive(&tun_rx, &wg_rx) {
                tracing::error!(device = %wg_rx.name, "WireGuard receive stopped: {e}");
            }
        })?;
    std::thread::Builder::new()
        .name(format!("{name}-timers"))
        .spawn(move || {
            let mut scratch = vec![0u8; BUF];
            let mut n: u32 = 0;
            loop {
                std::thread::sleep(TICK);
                wg_timer.tick(&mut scratch);
                n = n.wrapping_add(1);
                if n % 4 == 0 {
                    wg_timer.rate_limiter.reset_count();
                }
            }
        })?;
    Ok(())
}

/// TUN → UDP.
fn transmit(tun: &SyncDevice, wg: &WgDevice) -> io::Result<()> {
    let batch = tun_rs::IDEAL_BATCH_SIZE;
    let mut original = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + BUF];
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; BUF]).collect();
    let mut sizes = vec![0usize; batch];
    let mut sealed: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; BUF + SEAL]).collect();
    let mut sealed_len = vec![0usize; batch];
    let mut peers: Vec<Option<Arc<Peer>>> = vec![None; batch];
    loop {
        let n = match tun.recv_multiple(&mut original, &mut bufs, &mut sizes, 0) {
            Ok(n) => n,
            Err(e) if retryable(&e) => continue,
            Err(e) => return Err(e),
        };
        {
            let table = wg.table();
            for i in 0..n {
                peers[i] = boringtun::noise::Tunn::dst_address(&bufs[i][..sizes[i]])
                    .and_then(|d| table.route(d))
                    .cloned();
            }
        }
        let mut i = 0;
        while i < n {
            let Some(peer) = peers[i].take() else {
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < n && peers[j].as_ref().is_some_and(|p| Arc::ptr_eq(p, &peer)) {
                peers[j] = None;
                j += 1;
            }
            let mut k = 0;
            {
                let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
                for m in i..j {
                    if let TunnResult::WriteToNetwork(out) =
                        tunn.encapsulate(&bufs[m][..sizes[m]], &mut sealed[k])
                    {
                        sealed_len[k] = out.len();
                        k += 1;
                    }
                }
            }
            if let Some(to) = peer.endpoint() {
                wg.udp.send_all(&sealed[..k], &sealed_len[..k], to);
            }
            i = j;
        }
    }
}

/// A TUN write buffer that keeps its memory between packets (no zeroing
/// per packet), as tun-rs's coalescing needs it.
struct Slot {
    data: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Slot {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl AsMut<[u8]> for Slot {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

impl ExpandBuffer for Slot {
    fn buf_capacity(&self) -> usize {
        self.data.len()
    }
    fn buf_resize(&mut self, new_len: usize, value: u8) {
        if new_len > self.data.len() {
            self.data.resize(new_len, value);
        }
        if new_len > self.len {
            self.data[self.len..new_len].fill(value);
        }
        self.len = new_len;
    }
    fn buf_extend_from_slice(&mut self, extend: &[u8]) {
        let end = self.len + extend.len();
        if end > self.data.len() {
            self.data.resize(end, 0);
        }
        self.data[self.len..end].copy_from_slice(extend);
        self.len = end;
    }
}

/// UDP → TUN.
fn receive(tun: &SyncDevice, wg: &WgDevice) -> io::Result<()> {
    let hdr = tun_rs::VIRTIO_NET_HDR_LEN;
    let batch = tun_rs::IDEAL_BATCH_SIZE;
    let mut big = vec![0u8; BUF];
    let mut scratch = vec![0u8; BUF];
    let mut slots: Vec<Slot> = (0..batch)
        .map(|_| Slot {
            data: vec![0u8; hdr + BUF],
            len: 0,
        })
        .collect();
    let mut table = tun_rs::GROTable::default();
    let mut cmsg = nix::cmsg_space!(i32);
    let fd = wg.udp.fd();
    let gro = wg.udp.gro;
    loop {
        let mut count = 0;
        let mut flags = MsgFlags::empty();
        // one blocking read, then whatever else is already queued
        while count + gso::MAX_SEGMENTS <= slots.len() {
            let Some((n, seg, src)) = gso::recv_coalesced::<SockaddrStorage>(
                fd,
                &mut big,
                gro.then_some(&mut cmsg),
                &mut flags,
            )?
            else {
                break;
            };
            let Some(src) = src.and_then(socket_addr) else {
                continue;
            };
            for dgram in big[..n].chunks(seg) {
                let slot = &mut slots[count];
                if let Some(len) = wg.receive(dgram, src, &mut slot.data[hdr..], &mut scratch) {
                    slot.len = hdr + len;
                    slot.data[..hdr].fill(0);
                    count += 1;
                    if count == slots.len() {
                        break;
                    }
                }
            }
        }
        if count > 0 {
            if let Err(e) = tun.send_multiple(&mut table, &mut slots[..count], hdr) {
                if !retryable(&e) {
                    tracing::debug!(device = %wg.name, "writing to the TUN device: {e}");
                }
            }
        }
    }
}

fn socket_addr(s: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(canonical(SocketAddr::V4((*v4).into())));
    }
    s.as_sockaddr_in6()
        .map(|v6| canonical(SocketAddr::V6((*v6).into())))
}

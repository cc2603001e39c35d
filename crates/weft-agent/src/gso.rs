//! UDP segmentation offload: many datagrams to one destination leave in
//! one `sendmsg` (the kernel cuts them), shared by the udp and wireguard
//! data paths.

use std::io;
use std::os::fd::RawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrLike,
};

/// Most datagrams one UDP GSO send may carry.
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes one UDP GSO send may carry.
pub const MAX_BYTES: usize = 65_000;

/// Cuts `sizes` (datagrams to one destination, in order) into trains the
/// kernel can segment: runs of one size, of which only the last may be
/// shorter. Yields `(start, end, segment size)`.
pub fn trains(sizes: &[usize]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= sizes.len() {
            return None;
        }
        let seg = sizes[i];
        let (start, mut j, mut total) = (i, i + 1, seg);
        while j < sizes.len()
            && j - start < MAX_SEGMENTS
            && sizes[j] <= seg
            && total + sizes[j] <= MAX_BYTES
        {
            total += sizes[j];
            j += 1;
            if sizes[j - 1] < seg {
                break;
            }
        }
        i = j;
        Some((start, j, seg))
    })
}

/// Sends `bufs[k][..sizes[k]]` as one GSO train (one plain datagram when
/// alone). A full socket buffer drops them, as a NIC would.
pub fn send_train<S: SockaddrLike>(
    fd: RawFd,
    bufs: &[Vec<u8>],
    sizes: &[usize],
    seg: usize,
    to: &S,
) -> nix::Result<usize> {
    let iov: Vec<io::IoSlice> = bufs
        .iter()
        .zip(sizes)
        .map(|(b, n)| io::IoSlice::new(&b[..*n]))
        .collect();
    if iov.len() == 1 {
        return sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(to));
    }
    let gso = seg as u16;
    sendmsg(
        fd,
        &iov,
        &[ControlMessage::UdpGsoSegments(&gso)],
        MsgFlags::empty(),
        Some(to),
    )
}

/// One read of a batch from a socket with UDP GRO on (`cmsg` given): up to
/// 64 KB of same-size datagrams from one source, coalesced. The batch's
/// first read (`flags` empty) waits; after it `flags` becomes
/// `MSG_DONTWAIT`, so later reads take only what is already queued.
/// Returns the bytes read, the size of each datagram in them (the last may
/// be shorter) and the source, or `None` when the batch is over (`EAGAIN`,
/// `EINTR`).
pub fn recv_coalesced<S: SockaddrLike>(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: Option<&mut Vec<u8>>,
    flags: &mut MsgFlags,
) -> nix::Result<Option<(usize, usize, Option<S>)>> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = match recvmsg::<S>(fd, &mut iov, cmsg, *flags) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e),
    };
    *flags = MsgFlags::MSG_DONTWAIT;
    let seg = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::UdpGroSegments(s) => Some(s as usize),
            _ => None,
        })
    });
    let n = msg.bytes;
    Ok(Some((
        n,
        seg.filter(|s| *s > 0).unwrap_or(n.max(1)),
        msg.address,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_are_same_size_runs_with_a_short_tail() {
        let t: Vec<_> = trains(&[1400, 1400, 900, 1400, 148, 1400]).collect();
        assert_eq!(t, vec![(0, 3, 1400), (3, 5, 1400), (5, 6, 1400)]);
        let many = vec![1000; 70];
        let t: Vec<_> = trains(&many).collect();
        assert_eq!(t, vec![(0, 64, 1000), (64, 70, 1000)]);
        assert_eq!(trains(&[]).count(), 0);
    }
}

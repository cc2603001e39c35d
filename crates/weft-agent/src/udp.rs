//! flannel's udp backend data path: IP packets the kernel routes into the
//! TUN device `flannel0` are sent, unchanged, as the payload of a UDP
//! datagram to the host owning the destination's subnet (port 8285); the
//! datagrams received are written back into `flannel0`. The wire format
//! is flannel's, so weft and flanneld hosts interoperate.
//!
//! One thread per direction, one reusable buffer each: no allocation per
//! packet. Peers are looked up by masking the destination with the subnet
//! length (every lease has the same length). Datagrams are taken only from
//! the public addresses of admitted leases: anything else on the underlay
//! that sends to port 8285 is dropped and counted, so it cannot inject
//! packets into the pod network.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use nix::sys::socket::SockaddrIn;
use tun_rs::SyncDevice;

use crate::gso;

/// IPv4 header + UDP header: what encapsulation costs per packet.
pub const UDP_V4_OVERHEAD: u32 = 28;
pub const DEVICE: &str = "flannel0";
const BUF: usize = 65536;

/// Remote subnets and the hosts that own them.
#[derive(Debug)]
pub struct UdpPeers {
    mask: u32,
    port: u16,
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Subnet (network address) → the host owning it.
    by_subnet: HashMap<u32, SocketAddrV4>,
    /// Each peer host's address, with how many subnets it holds.
    hosts: HashMap<Ipv4Addr, usize>,
}

impl Table {
    fn forget(&mut self, host: Ipv4Addr) {
        if let Some(n) = self.hosts.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.hosts.remove(&host);
            }
        }
    }
}

impl UdpPeers {
    pub fn new(subnet_len: u8, port: u16) -> Self {
        UdpPeers {
            mask: u32::MAX.checked_shl(32 - subnet_len as u32).unwrap_or(0),
            port,
            table: RwLock::new(Table::default()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, subnet: Ipv4Net, host: Ipv4Addr) {
        let mut t = self.write();
        let to = SocketAddrV4::new(host, self.port);
        if let Some(old) = t.by_subnet.insert(u32::from(subnet.network()), to) {
            t.forget(*old.ip());
        }
        *t.hosts.entry(host).or_default() += 1;
    }

    pub fn remove(&self, subnet: Ipv4Net) {
        let mut t = self.write();
        if let Some(old) = t.by_subnet.remove(&u32::from(subnet.network())) {
            t.forget(*old.ip());
        }
    }

    pub fn clear(&self) {
        let mut t = self.write();
        t.by_subnet.clear();
        t.hosts.clear();
    }

    pub fn len(&self) -> usize {
        self.table.read().map(|t| t.by_subnet.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host to send a packet for `dst` to.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<SocketAddrV4> {
        let key = u32::from(dst) & self.mask;
        self.table.read().ok()?.by_subnet.get(&key).copied()
    }

    /// Whether `src` is the public address of a peer (datagrams from
    /// anyone else are dropped).
    pub fn knows(&self, src: Ipv4Addr) -> bool {
        self.table.read().is_ok_and(|t| t.hosts.contains_key(&src))
    }
}

/// The IPv4 destination of a packet, if it is a plausible IPv4 packet.
pub fn ipv4_dst(packet: &[u8]) -> Option<Ipv4Addr> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    Some(Ipv4Addr::new(
        packet[16], packet[17], packet[18], packet[19],
    ))
}

/// Creates the TUN device with TCP/UDP segmentation offload, so one read
/// returns up to 64 KB of a flow (split here into MTU-sized packets) and
/// one write can carry many coalesced segments; plain packet I/O where the
/// kernel cannot.
pub fn open_device(mtu: u32) -> io::Result<SyncDevice> {
    open_tun(DEVICE, mtu)
}

/// A TUN device `name` with offload where the kernel has it (see
/// [`open_device`]); the wireguard backend's devices are made the same way.
pub fn open_tun(name: &str, mtu: u32) -> io::Result<SyncDevice> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(mtu.min(u16::MAX as u32) as u16)
            .offload(offload)
            .build_sync()
    };
    build(true)
        .or_else(|e| {
            tracing::warn!("TUN offload unavailable ({e}); using plain packet I/O");
            build(false)
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}: the udp and userspace wireguard backends need /dev/net/tun \
                     (in a container: run it privileged, as the manifest's comment says)"
                ),
            )
        })
}

const SOCKET_BUFFER: usize = 8 << 20;

/// Starts the two forwarding threads.
pub fn start(dev: SyncDevice, sock: UdpSocket, peers: Arc<UdpPeers>) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    // Big socket buffers; GRO on receive (coalesced same-size datagrams).
    let _ = setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER);
    let _ = setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER);
    let gro = setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
    // One queue shared by both threads: reads and writes on a TUN fd are
    // independent (a second queue would receive some of the outgoing flows).
    let dev = Arc::new(dev);
    let dev_rx = dev.clone();
    let sock_rx = sock.try_clone()?;
    let peers_rx = peers.clone();
    std::thread::Builder::new()
        .name("weft-udp-tx".into())
        .spawn(move || {
            if let Err(e) = transmit(&dev, &sock, &peers) {
                tracing::error!("udp transmit stopped: {e}");
            }
        })?;
    std::thread::Builder::new()
        .name("weft-udp-rx".into())
        .spawn(move || {
            if let Err(e) = receive(&dev_rx, &sock_rx, gro, &peers_rx) {
                tracing::error!("udp receive stopped: {e}");
            }
        })?;
    Ok(())
}

/// An interrupted or would-block read or write: try again.
pub(crate) fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// TUN → UDP. Runs of same-size packets to one peer leave in one GSO send.
fn transmit(dev: &SyncDevice, sock: &UdpSocket, peers: &UdpPeers) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut original = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + BUF];
    let mut bufs: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; BUF])
        .collect();
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut dsts: Vec<Option<SocketAddrV4>> = vec![None; tun_rs::IDEAL_BATCH_SIZE];
    let fd = sock.as_raw_fd();
    loop {
        let n = match dev.recv_multiple(&mut original, &mut bufs, &mut sizes, 0) {
            Ok(n) => n,
            Err(e) if retryable(&e) => continue,
            Err(e) => return Err(e),
        };
        for i in 0..n {
            dsts[i] = ipv4_dst(&bufs[i][..sizes[i]]).and_then(|d| peers.lookup(d));
        }
        let mut i = 0;
        while i < n {
            let Some(peer) = dsts[i] else {
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < n && dsts[j] == Some(peer) {
                j += 1;
            }
            let to = SockaddrIn::from(peer);
            for (s, e, seg) in gso::trains(&sizes[i..j]) {
                // a full socket buffer drops the packets, as a NIC would
                let _ = gso::send_train(fd, &bufs[i + s..i + e], &sizes[i + s..i + e], seg, &to);
            }
            i = j;
        }
    }
}

/// Counts (and, the first time, tells of) datagrams from an address that
/// is no peer's.
fn foreign(src: Option<Ipv4Addr>, datagrams: usize) {
    static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    crate::metrics::get()
        .udp_foreign_datagrams
        .inc_by(datagrams as u64);
    if !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let from = src.map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        tracing::warn!(
            "udp: dropped a datagram from {from}, which is no lease's PublicIP (counted in weft_agent_udp_foreign_datagrams_total; told once)"
        );
    }
}

/// UDP → TUN. Coalesced datagrams are split into packets and written with
/// GRO, so a TCP flow's segments reach the kernel as few large writes.
/// Datagrams from addresses that are no peer's are dropped.
fn receive(dev: &SyncDevice, sock: &UdpSocket, gro: bool, peers: &UdpPeers) -> io::Result<()> {
    use nix::sys::socket::MsgFlags;
    use std::os::fd::AsRawFd;
    let hdr = tun_rs::VIRTIO_NET_HDR_LEN;
    let mut big = vec![0u8; BUF];
    let mut bufs: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| Vec::with_capacity(hdr + BUF))
        .collect();
    let mut table = tun_rs::GROTable::default();
    let mut cmsg = nix::cmsg_space!(i32);
    let fd = sock.as_raw_fd();
    loop {
        let mut count = 0;
        let mut flags = MsgFlags::empty();
        // one blocking read, then whatever else is already queued
        while count + gso::MAX_SEGMENTS <= bufs.len() {
            let Some((n, seg, src)) = gso::recv_coalesced::<SockaddrIn>(
                fd,
                &mut big,
                gro.then_some(&mut cmsg),
                &mut flags,
            )?
            else {
                break;
            };
            let src = src.map(|a| a.ip());
            if !src.is_some_and(|ip| peers.knows(ip)) {
                foreign(src, n.div_ceil(seg.max(1)));
                continue;
            }
            for chunk in big[..n].chunks(seg) {
                if ipv4_dst(chunk).is_none() || count == bufs.len() {
                    continue;
                }
                let b = &mut bufs[count];
                b.clear();
                b.resize(hdr, 0);
                b.extend_from_slice(chunk);
                count += 1;
            }
        }
        if count > 0 {
            if let Err(e) = dev.send_multiple(&mut table, &mut bufs[..count], hdr) {
                if !retryable(&e) {
                    tracing::debug!("writing to {DEVICE}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_subnet() {
        let p = UdpPeers::new(24, 8285);
        p.set(
            "172.30.14.0/24".parse().expect("net"),
            "198.18.0.12".parse().expect("ip"),
        );
        assert_eq!(
            p.lookup("172.30.14.77".parse().expect("ip")),
            Some("198.18.0.12:8285".parse().expect("addr"))
        );
        assert_eq!(p.lookup("172.30.15.1".parse().expect("ip")), None);
        p.remove("172.30.14.0/24".parse().expect("net"));
        assert!(p.is_empty());
    }

    #[test]
    fn only_peers_public_addresses_are_known_sources() {
        let p = UdpPeers::new(24, 8285);
        let host: Ipv4Addr = "198.18.0.12".parse().expect("ip");
        assert!(!p.knows(host));
        p.set("172.30.14.0/24".parse().expect("net"), host);
        p.set("172.30.15.0/24".parse().expect("net"), host);
        assert!(p.knows(host));
        // the host holds two subnets: it stays known until both are gone
        p.remove("172.30.14.0/24".parse().expect("net"));
        assert!(p.knows(host));
        // a subnet moving to another host forgets the old one
        let other: Ipv4Addr = "198.18.0.13".parse().expect("ip");
        p.set("172.30.15.0/24".parse().expect("net"), other);
        assert!(!p.knows(host));
        assert!(p.knows(other));
        p.clear();
        assert!(!p.knows(other));
    }

    #[test]
    fn a_gso_run_arrives_as_one_datagram_per_packet() {
        use std::os::fd::AsRawFd;
        // what a flanneld peer (no UDP GRO) receives from one GSO send
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let std::net::SocketAddr::V4(to) = rx.local_addr().expect("addr") else {
            panic!("v4")
        };
        let packet = |len: usize, fill: u8| {
            let mut p = vec![fill; len];
            p[0] = 0x45;
            p
        };
        let bufs = vec![
            packet(1400, 1),
            packet(1400, 2),
            packet(1400, 3),
            packet(900, 4),
        ];
        let sizes: Vec<usize> = bufs.iter().map(Vec::len).collect();
        let sent = gso::send_train(tx.as_raw_fd(), &bufs, &sizes, 1400, &SockaddrIn::from(to))
            .expect("gso send");
        assert_eq!(sent, 5100);
        let mut buf = [0u8; 65536];
        for want in &bufs {
            let n = rx.recv(&mut buf).expect("datagram");
            assert_eq!(
                &buf[..n],
                &want[..],
                "one datagram per packet, content intact"
            );
        }
    }

    #[test]
    fn only_ipv4_packets_have_a_destination() {
        let mut pkt = [0u8; 20];
        pkt[0] = 0x45;
        pkt[16..20].copy_from_slice(&[172, 30, 14, 2]);
        assert_eq!(ipv4_dst(&pkt), Some(Ipv4Addr::new(172, 30, 14, 2)));
        pkt[0] = 0x60;
        assert_eq!(ipv4_dst(&pkt), None);
        assert_eq!(ipv4_dst(&pkt[..10]), None);
    }
}

//! flannel's udp backend data path: IP packets the kernel routes into the
//! TUN device `flannel0` are sent, unchanged, as the payload of a UDP
//! datagram to the host owning the destination's subnet (port 8285); the
//! datagrams received are written back into `flannel0`. The wire format
//! is flannel's, so weft and flanneld hosts interoperate.
//!
//! One thread per direction, one reusable buffer each: no allocation per
//! packet. Peers are looked up by masking the destination with the subnet
//! length (every lease has the same length).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use tun_rs::SyncDevice;

/// IPv4 header + UDP header: what encapsulation costs per packet.
pub const UDP_V4_OVERHEAD: u32 = 28;
pub const DEVICE: &str = "flannel0";
const BUF: usize = 65536;

/// Remote subnets and the hosts that own them.
#[derive(Debug)]
pub struct UdpPeers {
    mask: u32,
    port: u16,
    table: RwLock<HashMap<u32, SocketAddrV4>>,
}

impl UdpPeers {
    pub fn new(subnet_len: u8, port: u16) -> Self {
        UdpPeers {
            mask: u32::MAX.checked_shl(32 - subnet_len as u32).unwrap_or(0),
            port,
            table: RwLock::new(HashMap::new()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, SocketAddrV4>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, subnet: Ipv4Net, host: Ipv4Addr) {
        self.write().insert(
            u32::from(subnet.network()),
            SocketAddrV4::new(host, self.port),
        );
    }

    pub fn remove(&self, subnet: Ipv4Net) {
        self.write().remove(&u32::from(subnet.network()));
    }

    pub fn clear(&self) {
        self.write().clear();
    }

    pub fn len(&self) -> usize {
        self.table.read().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host to send a packet for `dst` to.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<SocketAddrV4> {
        let key = u32::from(dst) & self.mask;
        self.table.read().ok()?.get(&key).copied()
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

/// Creates (or re-opens) the TUN device.
pub fn open_device(mtu: u32) -> io::Result<SyncDevice> {
    tun_rs::DeviceBuilder::new()
        .name(DEVICE)
        .mtu(mtu.min(u16::MAX as u32) as u16)
        .build_sync()
}

/// Starts the two forwarding threads.
pub fn start(dev: SyncDevice, sock: UdpSocket, peers: Arc<UdpPeers>) -> io::Result<()> {
    // One queue shared by both threads: reads and writes on a TUN fd are
    // independent (a second queue would receive some of the outgoing flows).
    let dev = Arc::new(dev);
    let dev_rx = dev.clone();
    let sock_rx = sock.try_clone()?;
    std::thread::Builder::new()
        .name("weft-udp-tx".into())
        .spawn(move || {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = match dev.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!("reading {DEVICE}: {e}; udp transmit stopped");
                        return;
                    }
                };
                let packet = &buf[..n];
                if let Some(peer) = ipv4_dst(packet).and_then(|d| peers.lookup(d)) {
                    // a full socket buffer drops the packet, as a NIC would
                    let _ = sock.send_to(packet, peer);
                }
            }
        })?;
    std::thread::Builder::new()
        .name("weft-udp-rx".into())
        .spawn(move || {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = match sock_rx.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!("receiving udp: {e}; udp receive stopped");
                        return;
                    }
                };
                if ipv4_dst(&buf[..n]).is_some() {
                    let _ = dev_rx.send(&buf[..n]);
                }
            }
        })?;
    Ok(())
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

//! A WireGuard device's UDP socket: one socket for both families (IPv4
//! peers as `::ffff:a.b.c.d`) where the host has IPv6, else IPv4 only;
//! large buffers, GRO on receive, GSO trains on send.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{setsockopt, sockopt, SockaddrStorage};

use crate::gso;

const SOCKET_BUFFER: usize = 8 << 20;

pub struct Udp {
    sock: UdpSocket,
    dual: bool,
    pub gro: bool,
}

impl Udp {
    /// Binds `port` on every address of both families (IPv4 alone when
    /// the host has no IPv6).
    pub fn bind(port: u16) -> io::Result<Udp> {
        let (sock, dual) = match bind_dual(port) {
            Ok(s) => (s, true),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => (UdpSocket::bind(("0.0.0.0", port))?, false),
        };
        let _ = setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER);
        let _ = setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER);
        let gro = setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
        Ok(Udp { sock, dual, gro })
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// `to` in the socket's family.
    pub fn sockaddr(&self, to: SocketAddr) -> SockaddrStorage {
        match (to, self.dual) {
            (SocketAddr::V4(v4), true) => SockaddrStorage::from(SocketAddr::V6(SocketAddrV6::new(
                v4.ip().to_ipv6_mapped(),
                v4.port(),
                0,
                0,
            ))),
            _ => SockaddrStorage::from(to),
        }
    }

    /// One datagram; a full socket buffer drops it, as a NIC would.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) {
        let _ = nix::sys::socket::sendto(
            self.fd(),
            buf,
            &self.sockaddr(to),
            nix::sys::socket::MsgFlags::empty(),
        );
    }

    /// Datagrams to one destination, in GSO trains.
    pub fn send_all(&self, bufs: &[Vec<u8>], sizes: &[usize], to: SocketAddr) {
        let addr = self.sockaddr(to);
        for (s, e, seg) in gso::trains(sizes) {
            let _ = gso::send_train(self.fd(), &bufs[s..e], &sizes[s..e], seg, &addr);
        }
    }
}

/// `[::]:port` taking IPv4 too, whatever `net.ipv6.bindv6only` says.
fn bind_dual(port: u16) -> io::Result<UdpSocket> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn6};
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(any))?;
    Ok(UdpSocket::from(fd))
}

/// A source address as peers are known by (IPv4 unmapped).
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

//! Kernel WireGuard devices, configured over their generic netlink
//! family `wireguard` (what `wg` does on Linux): the private key and
//! listen port, peers added, changed and removed, and the device read
//! back. The attribute numbers are those of `<linux/wireguard.h>`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr as NlAddr};

use crate::error::KernelError;
use crate::nla::{align4, attributes as attrs, nest_end, nest_start, put_attr, put_str};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const WG_GENL_VERSION: u8 = 1;
const WG_CMD_GET_DEVICE: u8 = 0;
const WG_CMD_SET_DEVICE: u8 = 1;

const WGDEVICE_A_IFINDEX: u16 = 1;
const WGDEVICE_A_IFNAME: u16 = 2;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_PUBLIC_KEY: u16 = 4;
const WGDEVICE_A_FLAGS: u16 = 5;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_PEERS: u16 = 8;
const WGDEVICE_F_REPLACE_PEERS: u32 = 1;

const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_PRESHARED_KEY: u16 = 2;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
const WGPEER_A_ALLOWEDIPS: u16 = 9;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;

const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A generic netlink message under construction.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&family.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        put_attr(&mut self.buf, kind, value);
        self
    }

    fn u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(nest_start(&mut self.buf, kind));
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            nest_end(&mut self.buf, at);
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `struct sockaddr_in` / `sockaddr_in6` as the kernel takes an endpoint.
fn sockaddr(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(28);
    match a {
        SocketAddr::V4(a) => {
            v.extend_from_slice(&AF_INET.to_ne_bytes());
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(a) => {
            v.extend_from_slice(&AF_INET6.to_ne_bytes());
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.flowinfo().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    v
}

fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        AF_INET if b.len() >= 8 => Some(SocketAddr::new(
            IpAddr::from(<[u8; 4]>::try_from(&b[4..8]).ok()?),
            port,
        )),
        AF_INET6 if b.len() >= 24 => Some(SocketAddr::new(
            IpAddr::from(<[u8; 16]>::try_from(&b[8..24]).ok()?),
            port,
        )),
        _ => None,
    }
}

/// One peer to set on a kernel device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPeer {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub preshared_key: Option<[u8; 32]>,
    pub keepalive: u16,
}

/// A kernel device as read back (no private key kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelDevice {
    pub public_key: Option<[u8; 32]>,
    pub listen_port: u16,
    pub peers: Vec<KernelPeerState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPeerState {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub last_handshake_sec: i64,
}

fn set_device_msg(family: u16, seq: u32, ifindex: u32, private: &[u8; 32], port: u16) -> Vec<u8> {
    let mut m = Msg::new(family, NLM_F_ACK, seq, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
    m.u32(WGDEVICE_A_IFINDEX, ifindex)
        .attr(WGDEVICE_A_PRIVATE_KEY, private)
        .u16(WGDEVICE_A_LISTEN_PORT, port)
        .u32(WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS);
    m.finish()
}

fn set_peer_msg(family: u16, seq: u32, ifindex: u32, p: &KernelPeer) -> Vec<u8> {
    let mut m = Msg::new(family, NLM_F_ACK, seq, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
    m.u32(WGDEVICE_A_IFINDEX, ifindex)
        .begin(WGDEVICE_A_PEERS)
        .begin(0);
    m.attr(WGPEER_A_PUBLIC_KEY, &p.public_key)
        .u32(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS)
        .attr(WGPEER_A_PRESHARED_KEY, &p.preshared_key.unwrap_or([0; 32]))
        .u16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p.keepalive);
    if let Some(e) = p.endpoint {
        m.attr(WGPEER_A_ENDPOINT, &sockaddr(e));
    }
    m.begin(WGPEER_A_ALLOWEDIPS);
    for (i, net) in p.allowed_ips.iter().enumerate() {
        m.begin(i as u16);
        match net {
            IpNet::V4(n) => m
                .u16(WGALLOWEDIP_A_FAMILY, AF_INET)
                .attr(WGALLOWEDIP_A_IPADDR, &n.network().octets()),
            IpNet::V6(n) => m
                .u16(WGALLOWEDIP_A_FAMILY, AF_INET6)
                .attr(WGALLOWEDIP_A_IPADDR, &n.network().octets()),
        };
        m.attr(WGALLOWEDIP_A_CIDR_MASK, &[net.prefix_len()]).end();
    }
    m.end().end().end();
    m.finish()
}

fn remove_peer_msg(family: u16, seq: u32, ifindex: u32, key: &[u8; 32]) -> Vec<u8> {
    let mut m = Msg::new(family, NLM_F_ACK, seq, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
    m.u32(WGDEVICE_A_IFINDEX, ifindex)
        .begin(WGDEVICE_A_PEERS)
        .begin(0)
        .attr(WGPEER_A_PUBLIC_KEY, key)
        .u32(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME)
        .end()
        .end();
    m.finish()
}

fn key32(v: &[u8]) -> Option<[u8; 32]> {
    v.try_into().ok()
}

/// Adds one GET_DEVICE reply's contents (attributes after the genl
/// header) to `dev`: a large device comes in several messages.
fn read_device(payload: &[u8], dev: &mut KernelDevice) {
    for (kind, v) in attrs(payload) {
        match kind {
            WGDEVICE_A_PUBLIC_KEY => dev.public_key = key32(v),
            WGDEVICE_A_LISTEN_PORT if v.len() == 2 => {
                dev.listen_port = u16::from_ne_bytes([v[0], v[1]])
            }
            WGDEVICE_A_PEERS => {
                for (_, peer) in attrs(v) {
                    let mut p = KernelPeerState::default();
                    let mut continued = true;
                    for (k, pv) in attrs(peer) {
                        match k {
                            WGPEER_A_PUBLIC_KEY => {
                                p.public_key = key32(pv).unwrap_or_default();
                                continued = dev
                                    .peers
                                    .last()
                                    .is_some_and(|l| l.public_key == p.public_key);
                            }
                            WGPEER_A_ENDPOINT => p.endpoint = parse_sockaddr(pv),
                            WGPEER_A_LAST_HANDSHAKE_TIME if pv.len() >= 8 => {
                                p.last_handshake_sec =
                                    i64::from_ne_bytes(pv[..8].try_into().unwrap_or_default())
                            }
                            WGPEER_A_ALLOWEDIPS => {
                                for (_, ip) in attrs(pv) {
                                    let (mut addr, mut mask) = (None, None);
                                    for (ak, av) in attrs(ip) {
                                        match ak {
                                            WGALLOWEDIP_A_IPADDR => {
                                                addr = match av.len() {
                                                    4 => <[u8; 4]>::try_from(av)
                                                        .ok()
                                                        .map(IpAddr::from),
                                                    16 => <[u8; 16]>::try_from(av)
                                                        .ok()
                                                        .map(IpAddr::from),
                                                    _ => None,
                                                }
                                            }
                                            WGALLOWEDIP_A_CIDR_MASK => mask = av.first().copied(),
                                            _ => {}
                                        }
                                    }
                                    if let (Some(a), Some(m)) = (addr, mask) {
                                        if let Ok(n) = IpNet::new(a, m) {
                                            p.allowed_ips.push(n);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    // a peer split across messages repeats its key
                    match dev.peers.last_mut() {
                        Some(last) if continued => last.allowed_ips.append(&mut p.allowed_ips),
                        _ => dev.peers.push(p),
                    }
                }
            }
            _ => {}
        }
    }
}

/// A socket on the `wireguard` generic netlink family.
pub struct WireguardGenl {
    sock: Socket,
    family: u16,
    seq: u32,
}

impl WireguardGenl {
    /// Opens the family; `Ok(None)` when the kernel has no WireGuard.
    pub fn open() -> Result<Option<WireguardGenl>, KernelError> {
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(KernelError::Socket)?;
        sock.bind_auto().map_err(KernelError::Socket)?;
        let mut m = Msg::new(GENL_ID_CTRL, NLM_F_ACK, 1, CTRL_CMD_GETFAMILY, 1);
        m.attr(CTRL_ATTR_FAMILY_NAME, b"wireguard\0");
        let mut g = WireguardGenl {
            sock,
            family: 0,
            seq: 1,
        };
        let replies = match g.exchange(&m.finish()) {
            Ok(r) => r,
            Err(KernelError::Socket(e)) if e.raw_os_error() == Some(2) => return Ok(None),
            Err(e) => return Err(e),
        };
        for r in replies {
            for (k, v) in attrs(&r[4.min(r.len())..]) {
                if k == CTRL_ATTR_FAMILY_ID && v.len() == 2 {
                    g.family = u16::from_ne_bytes([v[0], v[1]]);
                }
            }
        }
        Ok((g.family != 0).then_some(g))
    }

    /// Sends `msg`; returns the payloads (genl header first) of the data
    /// messages that came back before the ACK or DONE.
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<Vec<u8>>, KernelError> {
        self.sock
            .send_to(msg, &NlAddr::new(0, 0), 0)
            .map_err(KernelError::Socket)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (n, _) = self
                .sock
                .recv_from(&mut &mut buf[..], 0)
                .map_err(KernelError::Socket)?;
            let mut at = 0;
            while at + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if len < 16 || at + len > n {
                    return Err(KernelError::Socket(io::Error::other(
                        "malformed netlink reply",
                    )));
                }
                let payload = &buf[at + 16..at + len];
                match kind {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|c| i32::from_ne_bytes(c.try_into().unwrap_or_default()))
                            .unwrap_or(0);
                        if code != 0 {
                            return Err(KernelError::Socket(io::Error::from_raw_os_error(-code)));
                        }
                        return Ok(out);
                    }
                    NLMSG_DONE => return Ok(out),
                    _ => out.push(payload.to_vec()),
                }
                at += align4(len);
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sets the device's key and port, and drops every peer.
    pub fn configure(
        &mut self,
        ifindex: u32,
        private: &[u8; 32],
        port: u16,
    ) -> Result<(), KernelError> {
        let seq = self.next_seq();
        self.exchange(&set_device_msg(self.family, seq, ifindex, private, port))
            .map(|_| ())
    }

    /// Adds or updates a peer (its allowed IPs replaced).
    pub fn set_peer(&mut self, ifindex: u32, peer: &KernelPeer) -> Result<(), KernelError> {
        let seq = self.next_seq();
        self.exchange(&set_peer_msg(self.family, seq, ifindex, peer))
            .map(|_| ())
    }

    pub fn remove_peer(&mut self, ifindex: u32, key: &[u8; 32]) -> Result<(), KernelError> {
        let seq = self.next_seq();
        self.exchange(&remove_peer_msg(self.family, seq, ifindex, key))
            .map(|_| ())
    }

    /// Reads a device back by name.
    pub fn device(&mut self, name: &str) -> Result<KernelDevice, KernelError> {
        let seq = self.next_seq();
        let mut m = Msg::new(
            self.family,
            NLM_F_DUMP,
            seq,
            WG_CMD_GET_DEVICE,
            WG_GENL_VERSION,
        );
        put_str(&mut m.buf, WGDEVICE_A_IFNAME, name);
        let mut dev = KernelDevice::default();
        for payload in self.exchange(&m.finish())? {
            read_device(payload.get(4..).unwrap_or_default(), &mut dev);
        }
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nla::NLA_F_NESTED;

    fn peer() -> KernelPeer {
        KernelPeer {
            public_key: [7; 32],
            endpoint: Some("198.18.0.12:51820".parse().expect("addr")),
            allowed_ips: vec![
                "172.30.12.0/24".parse().expect("net"),
                "2001:db8:f:12::/64".parse().expect("net"),
            ],
            preshared_key: None,
            keepalive: 25,
        }
    }

    #[test]
    fn set_peer_layout_follows_linux_wireguard_h() {
        let m = set_peer_msg(0x22, 9, 4, &peer());
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().expect("len")) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x22, "family id");
        assert_eq!(&m[16..18], &[WG_CMD_SET_DEVICE, WG_GENL_VERSION]);
        let top: Vec<(u16, &[u8])> = attrs(&m[20..]).collect();
        assert_eq!(top[0], (WGDEVICE_A_IFINDEX, &4u32.to_ne_bytes()[..]));
        assert_eq!(top[1].0, WGDEVICE_A_PEERS);
        // nested attributes carry NLA_F_NESTED
        let peers_type = u16::from_ne_bytes([m[30], m[31]]);
        assert_eq!(peers_type, WGDEVICE_A_PEERS | NLA_F_NESTED);
        let (_, p) = attrs(top[1].1).next().expect("peer 0");
        let fields: Vec<(u16, &[u8])> = attrs(p).collect();
        assert_eq!(fields[0], (WGPEER_A_PUBLIC_KEY, &[7u8; 32][..]));
        assert_eq!(
            fields[1],
            (
                WGPEER_A_FLAGS,
                &WGPEER_F_REPLACE_ALLOWEDIPS.to_ne_bytes()[..]
            )
        );
        let ep = fields
            .iter()
            .find(|(k, _)| *k == WGPEER_A_ENDPOINT)
            .expect("endpoint");
        assert_eq!(ep.1.len(), 16, "sockaddr_in");
        assert_eq!(&ep.1[2..4], &51820u16.to_be_bytes());
        assert_eq!(parse_sockaddr(ep.1), peer().endpoint);
        // and the kernel's read-back format is the same attributes: round trip
        let mut dev = KernelDevice::default();
        read_device(&m[20..], &mut dev);
        assert_eq!(dev.peers.len(), 1);
        assert_eq!(dev.peers[0].allowed_ips, peer().allowed_ips);
        assert_eq!(dev.peers[0].endpoint, peer().endpoint);
    }

    #[test]
    fn v6_endpoints_are_sockaddr_in6() {
        let a: SocketAddr = "[2001:db8::12]:51821".parse().expect("addr");
        let b = sockaddr(a);
        assert_eq!(b.len(), 28);
        assert_eq!(parse_sockaddr(&b), Some(a));
    }

    #[test]
    fn device_and_removal_messages() {
        let m = set_device_msg(0x22, 1, 4, &[1; 32], 51820);
        let top: Vec<(u16, &[u8])> = attrs(&m[20..]).collect();
        assert_eq!(top[1], (WGDEVICE_A_PRIVATE_KEY, &[1u8; 32][..]));
        assert_eq!(
            top[2],
            (WGDEVICE_A_LISTEN_PORT, &51820u16.to_ne_bytes()[..])
        );
        assert_eq!(
            top[3],
            (
                WGDEVICE_A_FLAGS,
                &WGDEVICE_F_REPLACE_PEERS.to_ne_bytes()[..]
            )
        );
        let r = remove_peer_msg(0x22, 2, 4, &[9; 32]);
        let (_, peers) = attrs(&r[20..]).nth(1).expect("peers");
        let (_, p) = attrs(peers).next().expect("peer");
        let f: Vec<(u16, &[u8])> = attrs(p).collect();
        assert_eq!(
            f[1],
            (WGPEER_A_FLAGS, &WGPEER_F_REMOVE_ME.to_ne_bytes()[..])
        );
    }
}

//! One userspace WireGuard device: this host's key, its peers (each a
//! boringtun [`Tunn`]: the Noise handshake, sessions and timers), the UDP
//! socket, and what happens to one datagram or one outgoing packet.
//! The threads that move packets in batches are in [`super::io`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use weft_core::{WgKey, WgSecret};

use super::peers::{Keyed, PeerTable};
use super::socket::Udp;

/// Handshakes per second before cookies are asked for (boringtun's figure).
const HANDSHAKE_RATE_LIMIT: u64 = 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One peer: its key, session state and where it is.
pub struct Peer {
    key: WgKey,
    index: u32,
    pub(super) tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    allowed: Mutex<Vec<IpNet>>,
    psk: Option<WgSecret>,
    keepalive: u16,
}

impl Keyed for Peer {
    fn key(&self) -> WgKey {
        self.key
    }
    fn index(&self) -> u32 {
        self.index
    }
}

/// A peer as `wg show` and `weft status` see it (no secrets but whether a
/// PSK is set; the UAPI adds it from [`Peer::psk`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub key: WgKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: u16,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Peer {
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *lock(&self.endpoint)
    }

    /// Roaming: an authenticated packet from a new address moves the peer.
    fn seen_at(&self, src: SocketAddr) {
        let mut e = lock(&self.endpoint);
        if *e != Some(src) {
            *e = Some(src);
        }
    }

    pub fn psk(&self) -> Option<&WgSecret> {
        self.psk.as_ref()
    }

    pub fn status(&self) -> PeerStatus {
        let (since, tx, rx, _, _) = lock(&self.tunn).stats();
        PeerStatus {
            key: self.key,
            endpoint: self.endpoint(),
            allowed_ips: lock(&self.allowed).clone(),
            keepalive: self.keepalive,
            last_handshake: since.and_then(|d| SystemTime::now().checked_sub(d)),
            rx_bytes: rx as u64,
            tx_bytes: tx as u64,
        }
    }
}

/// A change to one peer (`wg set … peer KEY …`, or a lease).
#[derive(Debug, Clone, Default)]
pub struct PeerUpdate {
    pub endpoint: Option<SocketAddr>,
    /// Drop the peer's allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<IpNet>,
    /// `Some(None)` removes the PSK.
    pub psk: Option<Option<WgSecret>>,
    pub keepalive: Option<u16>,
}

/// One WireGuard device's state.
pub struct WgDevice {
    pub name: String,
    secret: WgSecret,
    private: StaticSecret,
    public: PublicKey,
    pub public_key: WgKey,
    pub udp: Udp,
    peers: RwLock<PeerTable<Peer>>,
    pub(super) rate_limiter: Arc<RateLimiter>,
    next_index: AtomicU32,
}

impl WgDevice {
    pub fn new(name: &str, secret: WgSecret, udp: Udp) -> WgDevice {
        let private = StaticSecret::from(secret.0);
        let public = PublicKey::from(&private);
        WgDevice {
            name: name.to_string(),
            public_key: WgKey(*public.as_bytes()),
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            secret,
            private,
            public,
            udp,
            peers: RwLock::new(PeerTable::default()),
            next_index: AtomicU32::new(rand::random::<u32>() & 0xff_ffff),
        }
    }

    pub(super) fn secret(&self) -> &WgSecret {
        &self.secret
    }

    pub(super) fn table(&self) -> RwLockReadGuard<'_, PeerTable<Peer>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, PeerTable<Peer>> {
        self.peers.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn peer_count(&self) -> usize {
        self.table().len()
    }

    pub fn peers(&self) -> Vec<Arc<Peer>> {
        self.table().all().cloned().collect()
    }

    fn new_peer(&self, key: WgKey, psk: Option<WgSecret>, keepalive: u16) -> Peer {
        // session indices are 24 bits, shifted left by 8 inside Tunn
        let index = self.next_index.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        let tunn = Tunn::new(
            self.private.clone(),
            PublicKey::from(key.0),
            psk.as_ref().map(|k| k.0),
            (keepalive > 0).then_some(keepalive),
            index,
            Some(self.rate_limiter.clone()),
        );
        Peer {
            key,
            index,
            tunn: Mutex::new(tunn),
            endpoint: Mutex::new(None),
            allowed: Mutex::new(Vec::new()),
            psk,
            keepalive,
        }
    }

    /// Adds or changes a peer. Its sessions survive unless its PSK or
    /// keepalive changes (a new tunnel state then).
    pub fn update_peer(&self, key: WgKey, u: PeerUpdate) {
        if key == self.public_key {
            return; // WireGuard ignores a peer with the device's own key
        }
        let mut t = self.table_mut();
        let old = t.get(&key).cloned();
        let psk = match (&u.psk, &old) {
            (Some(p), _) => p.clone(),
            (None, Some(o)) => o.psk.clone(),
            (None, None) => None,
        };
        let keepalive = u
            .keepalive
            .or(old.as_ref().map(|o| o.keepalive))
            .unwrap_or(0);
        let peer = match old {
            Some(o) if o.psk == psk && o.keepalive == keepalive => o,
            other => {
                let p = Arc::new(self.new_peer(key, psk, keepalive));
                if let Some(o) = other {
                    *lock(&p.endpoint) = o.endpoint();
                    *lock(&p.allowed) = lock(&o.allowed).clone();
                }
                t.insert(p.clone());
                for net in lock(&p.allowed).iter() {
                    t.route_to(*net, p.clone());
                }
                p
            }
        };
        if let Some(e) = u.endpoint {
            *lock(&peer.endpoint) = Some(e);
        }
        if u.replace_allowed_ips {
            let stale: Vec<IpNet> = std::mem::take(&mut *lock(&peer.allowed));
            for net in stale {
                if t.route(net.addr()).is_some_and(|p| p.key == key) {
                    t.unroute(net);
                }
            }
        }
        for net in u.allowed_ips {
            let net = net.trunc();
            if let Some(prev) = t.route_to(net, peer.clone()) {
                if prev != key {
                    if let Some(p) = t.get(&prev) {
                        lock(&p.allowed).retain(|n| *n != net);
                    }
                }
            }
            let mut a = lock(&peer.allowed);
            if !a.contains(&net) {
                a.push(net);
            }
        }
    }

    pub fn remove_peer(&self, key: &WgKey) -> bool {
        let mut t = self.table_mut();
        let Some(p) = t.remove(key) else {
            return false;
        };
        for net in lock(&p.allowed).iter() {
            if t.route(net.addr()).is_some_and(|q| q.key == *key) {
                t.unroute(*net);
            }
        }
        true
    }

    pub fn clear_peers(&self) {
        *self.table_mut() = PeerTable::default();
    }

    /// One datagram from the network. Returns the length of the packet it
    /// decrypted into `out` when that packet is for the TUN device.
    pub(super) fn receive(
        &self,
        dgram: &[u8],
        src: SocketAddr,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Option<usize> {
        let packet = match self
            .rate_limiter
            .verify_packet(Some(src.ip()), dgram, scratch)
        {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.udp.send_to(cookie, src);
                return None;
            }
            Err(_) => return None,
        };
        let table = self.table();
        let peer = match packet {
            Packet::HandshakeInit(ref p) => parse_handshake_anon(&self.private, &self.public, p)
                .ok()
                .and_then(|h| table.get(&WgKey(h.peer_static_public))),
            Packet::HandshakeResponse(ref p) => table.by_index(p.receiver_idx >> 8),
            Packet::PacketCookieReply(ref p) => table.by_index(p.receiver_idx >> 8),
            Packet::PacketData(ref p) => table.by_index(p.receiver_idx >> 8),
        }?
        .clone();
        let mut tunn = lock(&peer.tunn);
        match tunn.decapsulate(Some(src.ip()), dgram, out) {
            TunnResult::WriteToNetwork(p) => {
                // a handshake answer; then what waited for the session
                self.udp.send_to(p, src);
                peer.seen_at(src);
                while let TunnResult::WriteToNetwork(q) = tunn.decapsulate(None, &[], scratch) {
                    self.udp.send_to(q, src);
                }
                None
            }
            TunnResult::WriteToTunnelV4(p, from) => {
                let len = p.len();
                self.accept_from(&table, &peer, IpAddr::V4(from), src)
                    .then_some(len)
            }
            TunnResult::WriteToTunnelV6(p, from) => {
                let len = p.len();
                self.accept_from(&table, &peer, IpAddr::V6(from), src)
                    .then_some(len)
            }
            TunnResult::Done => {
                peer.seen_at(src); // keepalive
                None
            }
            TunnResult::Err(e) => {
                tracing::trace!(device = %self.name, peer = %peer.key, "dropped a datagram: {e:?}");
                None
            }
        }
    }

    /// Cryptokey routing: a decrypted packet is delivered only when its
    /// source address is one its peer may use.
    fn accept_from(
        &self,
        table: &PeerTable<Peer>,
        peer: &Arc<Peer>,
        from: IpAddr,
        src: SocketAddr,
    ) -> bool {
        if table.route(from).is_some_and(|p| Arc::ptr_eq(p, peer)) {
            peer.seen_at(src);
            true
        } else {
            tracing::trace!(device = %self.name, %from, "dropped a packet from outside its peer's allowed IPs");
            false
        }
    }

    /// The timers of every peer: handshakes, rekeys, keepalives.
    pub(super) fn tick(&self, scratch: &mut [u8]) {
        for peer in self.peers() {
            let mut tunn = lock(&peer.tunn);
            if let TunnResult::WriteToNetwork(p) = tunn.update_timers(scratch) {
                if let Some(to) = peer.endpoint() {
                    self.udp.send_to(p, to);
                }
            }
        }
    }
}

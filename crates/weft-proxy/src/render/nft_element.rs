//! One element of a map in the `kube-proxy` table, kept as values rather
//! than text: a proxy holds every element of every port between syncs
//! (110,000 of them at 10,000 services × 10 endpoints), and as text each
//! cost three heap strings. Written out as nft spells it when a sync
//! sends it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::nft_names::{FixedMap, Pool, REJECT_CHAIN};
use crate::spec::Protocol;

/// Which map (or set) an element is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapName {
    /// One of the table's fixed maps (`service-ips`, …).
    Fixed(FixedMap),
    /// A balancing pool's endpoint map.
    Pool(Pool),
}

impl fmt::Display for MapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapName::Fixed(map) => f.write_str(map.name()),
            MapName::Pool(pool) => f.write_str(&pool.map()),
        }
    }
}

/// One key's elements in a balancing pool's map, kept compactly: slot
/// `i` of `key` sends to endpoint `i`. 6 bytes an IPv4 endpoint where an
/// [`Element`] is 64, and a port's pool elements compare slot by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMembers {
    pub pool: Pool,
    /// The key without a slot.
    pub key: ElementKey,
    pub endpoints: SlotEndpoints,
}

/// A pool key's endpoints (address and port) in slot order: 6 bytes each
/// when all are IPv4, as a proxy's IPv4 table's are, else 20. The proxy
/// keeps one per service port between syncs (100,000 endpoints at 10,000
/// Services × 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEndpoints(Slots);

/// (private, so that every value is built by `from_iter` and the same
/// endpoints always take the same variant)
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slots {
    V4(Box<[(Ipv4Addr, u16)]>),
    Any(Box<[(IpAddr, u16)]>),
}

impl SlotEndpoints {
    pub fn len(&self) -> usize {
        match &self.0 {
            Slots::V4(v) => v.len(),
            Slots::Any(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint in slot `i`.
    pub fn get(&self, i: usize) -> Option<(IpAddr, u16)> {
        match &self.0 {
            Slots::V4(v) => v.get(i).map(|(ip, port)| (IpAddr::V4(*ip), *port)),
            Slots::Any(v) => v.get(i).copied(),
        }
    }

    /// Every slot's endpoint, in slot order.
    pub fn iter(&self) -> SlotIter<'_> {
        match &self.0 {
            Slots::V4(v) => SlotIter::V4(v.iter()),
            Slots::Any(v) => SlotIter::Any(v.iter()),
        }
    }
}

/// The endpoints of a [`SlotEndpoints`], in slot order.
pub enum SlotIter<'a> {
    V4(std::slice::Iter<'a, (Ipv4Addr, u16)>),
    Any(std::slice::Iter<'a, (IpAddr, u16)>),
}

impl Iterator for SlotIter<'_> {
    type Item = (IpAddr, u16);

    fn next(&mut self) -> Option<(IpAddr, u16)> {
        match self {
            SlotIter::V4(it) => it.next().map(|(ip, port)| (IpAddr::V4(*ip), *port)),
            SlotIter::Any(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            SlotIter::V4(it) => it.size_hint(),
            SlotIter::Any(it) => it.size_hint(),
        }
    }
}

impl FromIterator<(IpAddr, u16)> for SlotEndpoints {
    fn from_iter<I: IntoIterator<Item = (IpAddr, u16)>>(eps: I) -> SlotEndpoints {
        let mut eps = eps.into_iter();
        let mut v4 = Vec::with_capacity(eps.size_hint().0);
        while let Some((ip, port)) = eps.next() {
            match ip {
                IpAddr::V4(ip) => v4.push((ip, port)),
                IpAddr::V6(_) => {
                    let mut all: Vec<(IpAddr, u16)> = v4
                        .iter()
                        .map(|(ip, port)| (IpAddr::V4(*ip), *port))
                        .collect();
                    all.push((ip, port));
                    all.extend(eps);
                    return SlotEndpoints(Slots::Any(all.into_boxed_slice()));
                }
            }
        }
        SlotEndpoints(Slots::V4(v4.into_boxed_slice()))
    }
}

impl PoolMembers {
    /// Whether both are one key of one pool.
    pub fn same_key(&self, other: &PoolMembers) -> bool {
        self.pool == other.pool && self.key == other.key
    }

    /// The endpoint in slot `i`, if there is one.
    pub fn at(&self, i: usize) -> Option<(IpAddr, u16)> {
        self.endpoints.get(i)
    }

    /// Slot `i`'s element.
    pub fn element(&self, i: usize, (ip, port): (IpAddr, u16)) -> Element {
        Element {
            map: MapName::Pool(self.pool),
            key: self.key.slot(i),
            value: ElementValue::Endpoint(ip, port),
        }
    }

    /// Every slot's element, in slot order.
    pub fn elements(&self) -> impl Iterator<Item = Element> + '_ {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| self.element(i, ep))
    }
}

/// `addr . proto . port`, or `proto . port` for node ports, followed by
/// ` . slot` in a pool's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ElementKey {
    pub addr: Option<IpAddr>,
    pub proto: Protocol,
    pub port: u16,
    pub slot: Option<u32>,
}

impl ElementKey {
    pub fn addr(addr: IpAddr, proto: Protocol, port: u16) -> ElementKey {
        ElementKey {
            addr: Some(addr),
            proto,
            port,
            slot: None,
        }
    }

    pub fn node_port(proto: Protocol, port: u16) -> ElementKey {
        ElementKey {
            addr: None,
            proto,
            port,
            slot: None,
        }
    }

    /// The key of slot `i` of this key in a pool's map.
    pub fn slot(self, i: usize) -> ElementKey {
        ElementKey {
            slot: Some(i as u32),
            ..self
        }
    }
}

impl fmt::Display for ElementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = self.addr {
            write!(f, "{a} . ")?;
        }
        write!(f, "{} . {}", self.proto.lower(), self.port)?;
        if let Some(i) = self.slot {
            write!(f, " . {i}")?;
        }
        Ok(())
    }
}

/// A key of one of the table's sets or maps, as a batch adds or deletes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// A map element's key.
    Key(ElementKey),
    /// A hairpin pair `ip . ip`.
    Pair(IpAddr),
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Key(k) => k.fmt(f),
            Member::Pair(ip) => write!(f, "{ip} . {ip}"),
        }
    }
}

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElementValue {
    /// `goto` a chain of the port's own.
    Goto(Box<str>),
    /// `goto` a balancing pool's chain.
    GotoPool(Pool),
    /// `goto reject-chain`.
    Reject,
    Drop,
    /// An endpoint, in a pool's map: `addr . port` (not a `SocketAddr`,
    /// which is 32 bytes for an IPv6 address's scope and flow: this is 20).
    Endpoint(IpAddr, u16),
}

impl fmt::Display for ElementValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementValue::Goto(chain) => write!(f, "goto {chain}"),
            ElementValue::GotoPool(pool) => write!(f, "goto {}", pool.chain()),
            ElementValue::Reject => write!(f, "goto {REJECT_CHAIN}"),
            ElementValue::Drop => f.write_str("drop"),
            ElementValue::Endpoint(ip, port) => write!(f, "{ip} . {port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    pub map: MapName,
    pub key: ElementKey,
    pub value: ElementValue,
}

impl Element {
    pub fn new(map: FixedMap, key: ElementKey, value: ElementValue) -> Element {
        Element {
            map: MapName::Fixed(map),
            key,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A proxy keeps every element of every port between syncs (110,000
    /// at 10,000 services × 10 endpoints): 64 bytes each, not 88.
    #[test]
    fn an_element_is_at_most_64_bytes() {
        assert!(std::mem::size_of::<Element>() <= 64);
    }

    #[test]
    fn ipv4_slots_take_6_bytes_and_any_ipv6_keeps_every_address() {
        let v4: SlotEndpoints = [("100.64.0.2", 80), ("100.64.0.3", 81)]
            .iter()
            .map(|(ip, port)| (ip.parse().expect("ip"), *port))
            .collect();
        assert!(matches!(&v4.0, Slots::V4(v) if std::mem::size_of_val(&**v) == 12));
        assert_eq!(v4.get(1), Some(("100.64.0.3".parse().expect("ip"), 81)));
        assert_eq!(v4.get(2), None);
        let mixed: SlotEndpoints = [("100.64.0.2", 80), ("fd00::5", 8080)]
            .iter()
            .map(|(ip, port)| (ip.parse().expect("ip"), *port))
            .collect();
        assert!(matches!(mixed.0, Slots::Any(_)));
        assert_eq!(
            mixed
                .iter()
                .map(|(ip, _)| ip.to_string())
                .collect::<Vec<_>>(),
            ["100.64.0.2", "fd00::5"]
        );
    }

    #[test]
    fn elements_are_written_as_nft_spells_them() {
        let ip: IpAddr = "10.96.0.10".parse().expect("ip");
        let key = ElementKey::addr(ip, Protocol::Tcp, 80);
        assert_eq!(key.to_string(), "10.96.0.10 . tcp . 80");
        assert_eq!(key.slot(3).to_string(), "10.96.0.10 . tcp . 80 . 3");
        assert_eq!(
            ElementKey::node_port(Protocol::Udp, 30053)
                .slot(0)
                .to_string(),
            "udp . 30053 . 0"
        );
        let pool = Pool {
            node_port: false,
            n: 2,
        };
        assert_eq!(MapName::Pool(pool).to_string(), "service-endpoints-2");
        assert_eq!(
            ElementValue::GotoPool(pool).to_string(),
            "goto service-balance-2"
        );
        assert_eq!(ElementValue::Reject.to_string(), "goto reject-chain");
        let ep: SocketAddr = "[fd00::5]:8080".parse().expect("addr");
        assert_eq!(
            ElementValue::Endpoint(ep.ip(), ep.port()).to_string(),
            "fd00::5 . 8080"
        );
    }
}

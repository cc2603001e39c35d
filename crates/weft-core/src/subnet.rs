//! Subnet arithmetic over a cluster network: the pool of per-host subnets
//! between SubnetMin and SubnetMax, and flannel's way of choosing one.
//! IPv4 and IPv6 share one implementation over `u128`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// How many free subnets flannel considers before picking one at random.
pub const RANDOM_CHOICE_WINDOW: usize = 100;

/// The address pools of a cluster, per family: the config's networks cut
/// into per-host subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    pub v4: Option<SubnetPool>,
    pub v6: Option<SubnetPool>,
}

impl Pools {
    /// Whether a lease's subnets are those of these pools: one subnet of
    /// each family's pool, no subnet of a family the cluster lacks.
    pub fn contains(&self, key: &crate::lease::LeaseKey) -> bool {
        let v4_ok = match (&self.v4, key.v4) {
            (Some(p), Some(n)) => p.contains_subnet(&IpNet::V4(n)),
            (None, None) => true,
            _ => false,
        };
        let v6_ok = match (&self.v6, key.v6) {
            (Some(p), Some(n)) => p.contains_subnet(&IpNet::V6(n)),
            (None, None) => true,
            _ => false,
        };
        v4_ok && v6_ok
    }
}

/// The per-host subnets a cluster network is cut into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetPool {
    network: IpNet,
    subnet_len: u8,
    min: IpAddr,
    max: IpAddr,
}

/// An address as a number, for either family.
pub fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn addr_from(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Builds a network from an address and prefix length (the length is always valid here).
pub fn make_net(addr: IpAddr, len: u8) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, len).unwrap_or_default()),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, len).unwrap_or_default()),
    }
}

impl SubnetPool {
    /// A pool over the whole network (`min` = first, `max` = last subnet).
    pub fn new(network: IpNet, subnet_len: u8) -> Self {
        let network = network.trunc();
        let mut pool = SubnetPool {
            network,
            subnet_len,
            min: network.network(),
            max: network.network(),
        };
        pool.max = pool.nth_subnet(pool.total() - 1);
        pool
    }

    /// Restricts the pool to `[min, max]` (both must be aligned subnets).
    pub fn with_range(mut self, min: IpAddr, max: IpAddr) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    pub fn network(&self) -> IpNet {
        self.network
    }

    pub fn subnet_len(&self) -> u8 {
        self.subnet_len
    }

    pub fn min(&self) -> IpAddr {
        self.min
    }

    pub fn max(&self) -> IpAddr {
        self.max
    }

    fn step(&self) -> u128 {
        1u128 << (self.network.max_prefix_len() - self.subnet_len)
    }

    /// Number of subnets of `subnet_len` in the network (saturating for huge IPv6 pools).
    pub fn total(&self) -> u128 {
        let shift = self.subnet_len - self.network.prefix_len();
        1u128.checked_shl(shift as u32).unwrap_or(u128::MAX)
    }

    /// Number of subnets between min and max.
    pub fn capacity(&self) -> u128 {
        (addr_u128(self.max) - addr_u128(self.min)) / self.step() + 1
    }

    /// The n-th subnet's network address (0 is the network's own first subnet).
    pub fn nth_subnet(&self, n: u128) -> IpAddr {
        let base = addr_u128(self.network.network());
        addr_from(self.network.network(), base + n * self.step())
    }

    /// Checks that `a` is inside the network on a subnet boundary.
    pub fn aligned(&self, a: IpAddr) -> Result<IpAddr, String> {
        if a.is_ipv4() != self.network.network().is_ipv4() || !self.network.contains(&a) {
            return Err(format!(
                "{a} is not in the range of the network {}",
                self.network
            ));
        }
        if addr_u128(a) % self.step() != 0 {
            return Err(format!(
                "{a} is not on a /{} subnet boundary",
                self.subnet_len
            ));
        }
        Ok(a)
    }

    /// True when `net` is one of this pool's subnets between min and max.
    pub fn contains_subnet(&self, net: &IpNet) -> bool {
        net.prefix_len() == self.subnet_len
            && self.aligned(net.addr()).is_ok()
            && addr_u128(net.addr()) >= addr_u128(self.min)
            && addr_u128(net.addr()) <= addr_u128(self.max)
    }

    /// The subnets from min to max, in order.
    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        let step = self.step();
        let (lo, hi) = (addr_u128(self.min), addr_u128(self.max));
        let like = self.min;
        let len = self.subnet_len;
        (0u128..)
            .map(move |i| lo.checked_add(i.checked_mul(step)?))
            .take_while(move |v| matches!(v, Some(v) if *v <= hi))
            .map(move |v| make_net(addr_from(like, v.unwrap_or(lo)), len))
    }

    /// flannel's choice: `preferred` when it is a free subnet of this pool,
    /// else one at random (`random` is any random number) among the first
    /// [`RANDOM_CHOICE_WINDOW`] free subnets. `None` when the pool is full.
    pub fn choose(
        &self,
        taken: &HashSet<IpNet>,
        preferred: Option<IpNet>,
        random: u64,
    ) -> Option<IpNet> {
        if let Some(p) = preferred {
            if self.contains_subnet(&p) && !taken.contains(&p) {
                return Some(p);
            }
        }
        let free: Vec<IpNet> = self
            .iter()
            .filter(|s| !taken.contains(s))
            .take(RANDOM_CHOICE_WINDOW)
            .collect();
        if free.is_empty() {
            return None;
        }
        Some(free[(random % free.len() as u64) as usize])
    }
}

/// The first host address of a subnet (the bridge's address, FLANNEL_SUBNET's IP).
pub fn first_host(net: &IpNet) -> IpAddr {
    addr_from(net.network(), addr_u128(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test net")
    }

    fn pool16() -> SubnetPool {
        let p = SubnetPool::new(net("172.30.0.0/16"), 24);
        let min = p.nth_subnet(1);
        let max = p.nth_subnet(255);
        p.with_range(min, max)
    }

    #[test]
    fn counts_and_bounds() {
        let p = pool16();
        assert_eq!(p.total(), 256);
        assert_eq!(p.capacity(), 255);
        assert_eq!(p.iter().count(), 255);
        assert_eq!(p.iter().next(), Some(net("172.30.1.0/24")));
        assert_eq!(p.iter().last(), Some(net("172.30.255.0/24")));
    }

    #[test]
    fn alignment() {
        let p = pool16();
        assert!(p.aligned("172.30.5.0".parse().expect("ip")).is_ok());
        assert!(p.aligned("172.30.5.1".parse().expect("ip")).is_err());
        assert!(p.aligned("10.0.0.0".parse().expect("ip")).is_err());
        assert!(p.aligned("fc00::".parse().expect("ip")).is_err());
    }

    #[test]
    fn contains_subnet_respects_range_and_len() {
        let p = pool16();
        assert!(p.contains_subnet(&net("172.30.46.0/24")));
        assert!(!p.contains_subnet(&net("172.30.0.0/24")), "below SubnetMin");
        assert!(!p.contains_subnet(&net("172.30.46.0/25")));
        assert!(!p.contains_subnet(&net("172.31.46.0/24")));
    }

    #[test]
    fn choose_prefers_free_preferred() {
        let p = pool16();
        let taken = HashSet::new();
        assert_eq!(
            p.choose(&taken, Some(net("172.30.46.0/24")), 7),
            Some(net("172.30.46.0/24"))
        );
    }

    #[test]
    fn choose_skips_taken_preferred_and_stays_in_window() {
        let p = pool16();
        let taken: HashSet<IpNet> = [net("172.30.46.0/24"), net("172.30.1.0/24")].into();
        for r in 0..500u64 {
            let got = p
                .choose(&taken, Some(net("172.30.46.0/24")), r)
                .expect("free subnet");
            assert!(!taken.contains(&got));
            // the first 100 free subnets are 172.30.2.0 .. 172.30.101.0 (46 taken)
            let third = match got.addr() {
                IpAddr::V4(a) => a.octets()[2],
                IpAddr::V6(_) => unreachable!(),
            };
            assert!((2..=102).contains(&third), "{got} outside the window");
        }
    }

    #[test]
    fn choose_full_pool_is_none() {
        let p = SubnetPool::new(net("100.64.0.0/28"), 30);
        let (min, max) = (p.nth_subnet(1), p.nth_subnet(3));
        let p = p.with_range(min, max);
        let taken: HashSet<IpNet> = p.iter().collect();
        assert_eq!(taken.len(), 3);
        assert_eq!(p.choose(&taken, None, 1), None);
    }

    #[test]
    fn ipv6_pool() {
        let p = SubnetPool::new(net("fc00::/48"), 64);
        assert_eq!(p.total(), 65536);
        assert_eq!(
            p.nth_subnet(5),
            "fc00:0:0:5::".parse::<IpAddr>().expect("ip")
        );
        let huge = SubnetPool::new(net("fc00::/8"), 120);
        assert_eq!(huge.total(), 1u128 << 112);
        let first = huge.iter().next().expect("one");
        assert_eq!(first, net("fc00::/120"));
    }

    #[test]
    fn first_host_is_dot_one() {
        assert_eq!(
            first_host(&net("172.30.46.0/24")),
            "172.30.46.1".parse::<IpAddr>().expect("ip")
        );
    }
}

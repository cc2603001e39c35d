//! Which remote leases reach the kernel. Anyone who can write to etcd (or
//! annotate a Node) can publish a lease, so every remote lease is checked
//! against the network config, this host's own lease and the leases
//! already admitted before a route, neighbour, FDB entry or peer is made
//! for it. Without this, one written key could route `0.0.0.0/1`, this
//! host's pod subnet or the underlay itself into the overlay.
//!
//! A lease is left out when, for a family the network uses:
//! - its subnet is not inside the network (`Network`, `IPv6Network`);
//! - its subnet's length is not the cluster's (`SubnetLen`; in Kubernetes
//!   mode, the length of this node's own pod range);
//! - its subnet is this host's own or one an admitted lease already holds
//!   (the first holder keeps it; the other is admitted when it goes);
//! - its public address is not a unicast address (unspecified, loopback,
//!   multicast, broadcast) or lies inside the overlay network.
//!
//! Pure: no I/O. The agent keeps one [`Admission`] per lease stream;
//! `weft status` and `weft doctor` run the same checks on a listing.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::lease::{Lease, LeaseKey};
use crate::subnet::SubnetPool;

/// What one family's leases must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyRule {
    pub network: IpNet,
    pub subnet_len: u8,
}

impl From<&SubnetPool> for FamilyRule {
    fn from(p: &SubnetPool) -> Self {
        FamilyRule {
            network: p.network(),
            subnet_len: p.subnet_len(),
        }
    }
}

/// The checks for a cluster: one rule per family the network enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    pub v4: Option<FamilyRule>,
    pub v6: Option<FamilyRule>,
}

impl Rules {
    /// etcd mode: the config's networks and subnet lengths.
    pub fn from_pools(v4: Option<&SubnetPool>, v6: Option<&SubnetPool>) -> Rules {
        Rules {
            v4: v4.map(FamilyRule::from),
            v6: v6.map(FamilyRule::from),
        }
    }

    /// Kubernetes mode: the config's networks, and the length of this
    /// node's own pod ranges (the controller-manager gives every Node one
    /// length, which need not be the config's `SubnetLen`).
    pub fn from_pools_and_own(
        v4: Option<&SubnetPool>,
        v6: Option<&SubnetPool>,
        own: &LeaseKey,
    ) -> Rules {
        let rule = |p: Option<&SubnetPool>, len: Option<u8>| {
            p.map(|p| FamilyRule {
                network: p.network(),
                subnet_len: len.unwrap_or(p.subnet_len()),
            })
        };
        Rules {
            v4: rule(v4, own.v4.map(|n| n.prefix_len())),
            v6: rule(v6, own.v6.map(|n| n.prefix_len())),
        }
    }
}

/// Why a lease is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    OutsideNetwork {
        subnet: IpNet,
        network: IpNet,
    },
    SubnetLength {
        subnet: IpNet,
        want: u8,
    },
    OwnSubnet {
        subnet: IpNet,
    },
    Taken {
        subnet: IpNet,
        by: LeaseKey,
    },
    PublicAddress {
        field: &'static str,
        addr: IpAddr,
        why: &'static str,
    },
}

impl Refusal {
    /// A short name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::OutsideNetwork { .. } => "outside_network",
            Refusal::SubnetLength { .. } => "subnet_length",
            Refusal::OwnSubnet { .. } => "own_subnet",
            Refusal::Taken { .. } => "subnet_taken",
            Refusal::PublicAddress { .. } => "public_address",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OutsideNetwork { subnet, network } => {
                write!(f, "subnet {subnet} is not inside the network {network}")
            }
            Refusal::SubnetLength { subnet, want } => write!(
                f,
                "subnet {subnet} is not a /{want} (the cluster's subnet length)"
            ),
            Refusal::OwnSubnet { subnet } => write!(f, "subnet {subnet} is this host's own"),
            Refusal::Taken { subnet, by } => {
                write!(f, "subnet {subnet} is already held by lease {by}")
            }
            Refusal::PublicAddress { field, addr, why } => {
                write!(f, "{field} {addr} {why}")
            }
        }
    }
}

/// Why a lease's public address cannot carry its traffic, if it cannot.
fn public_address(addr: IpAddr, network: IpNet) -> Option<&'static str> {
    let why = match addr {
        IpAddr::V4(a) if a.is_unspecified() => "is unspecified",
        IpAddr::V4(a) if a.is_loopback() => "is a loopback address",
        IpAddr::V4(a) if a.is_multicast() => "is a multicast address",
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => "is the broadcast address",
        IpAddr::V6(a) if a.is_unspecified() => "is unspecified",
        IpAddr::V6(a) if a.is_loopback() => "is a loopback address",
        IpAddr::V6(a) if a.is_multicast() => "is a multicast address",
        _ if network.contains(&addr) => "is inside the overlay network",
        _ => return None,
    };
    Some(why)
}

/// The checks that need no other lease: subnets against the rules, public
/// addresses against unicast and the network.
pub fn check_alone(rules: &Rules, lease: &Lease) -> Result<(), Refusal> {
    if let (Some(subnet), Some(rule)) = (lease.key.v4, rules.v4) {
        let public = IpAddr::V4(lease.attrs.public_ip);
        check_family(IpNet::V4(subnet), rule, Some(public), "PublicIP")?;
    }
    if let (Some(subnet), Some(rule)) = (lease.key.v6, rules.v6) {
        let public = lease.attrs.public_ipv6.map(IpAddr::V6);
        check_family(IpNet::V6(subnet), rule, public, "PublicIPv6")?;
    }
    Ok(())
}

/// One family's subnet and public address (`field` names the address).
fn check_family(
    subnet: IpNet,
    rule: FamilyRule,
    public: Option<IpAddr>,
    field: &'static str,
) -> Result<(), Refusal> {
    if !rule.network.contains(&subnet) {
        return Err(Refusal::OutsideNetwork {
            subnet,
            network: rule.network,
        });
    }
    if subnet.prefix_len() != rule.subnet_len {
        return Err(Refusal::SubnetLength {
            subnet,
            want: rule.subnet_len,
        });
    }
    match public.and_then(|addr| Some((addr, public_address(addr, rule.network)?))) {
        Some((addr, why)) => Err(Refusal::PublicAddress { field, addr, why }),
        None => Ok(()),
    }
}

/// The subnets of a lease the rules look at.
fn subnets(rules: &Rules, key: &LeaseKey) -> impl Iterator<Item = IpNet> {
    let v4 = key.v4.filter(|_| rules.v4.is_some()).map(IpNet::V4);
    let v6 = key.v6.filter(|_| rules.v6.is_some()).map(IpNet::V6);
    v4.into_iter().chain(v6)
}

/// What [`Admission::put`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Left out; `new` when this lease or its reason differs from what was
    /// refused last time (so callers warn once, not on every re-listing).
    Refused {
        refusal: Refusal,
        new: bool,
    },
}

/// The admitted leases of a stream and the ones waiting outside.
#[derive(Debug, Clone)]
pub struct Admission {
    rules: Rules,
    own: LeaseKey,
    /// Subnet → the admitted lease holding it.
    holders: HashMap<IpNet, LeaseKey>,
    /// Refused leases, kept so that one refused only for a subnet another
    /// lease held is admitted when that lease goes.
    refused: BTreeMap<LeaseKey, (Lease, Refusal)>,
}

impl Admission {
    pub fn new(rules: Rules, own: LeaseKey) -> Admission {
        Admission {
            rules,
            own,
            holders: HashMap::new(),
            refused: BTreeMap::new(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Leases left out now, with why.
    pub fn refused(&self) -> impl Iterator<Item = (&LeaseKey, &Refusal)> {
        self.refused.iter().map(|(k, (_, r))| (k, r))
    }

    pub fn refused_count(&self) -> usize {
        self.refused.len()
    }

    pub fn is_admitted(&self, key: &LeaseKey) -> bool {
        subnets(&self.rules, key)
            .next()
            .is_some_and(|s| self.holders.get(&s) == Some(key))
    }

    fn check(&self, lease: &Lease) -> Result<(), Refusal> {
        check_alone(&self.rules, lease)?;
        for subnet in subnets(&self.rules, &lease.key) {
            if subnets(&self.rules, &self.own).any(|o| o == subnet) {
                return Err(Refusal::OwnSubnet { subnet });
            }
            match self.holders.get(&subnet) {
                Some(by) if *by != lease.key => {
                    return Err(Refusal::Taken { subnet, by: *by });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A lease appeared or changed (this host's own is not passed here).
    pub fn put(&mut self, lease: &Lease) -> Verdict {
        match self.check(lease) {
            Ok(()) => {
                for s in subnets(&self.rules, &lease.key) {
                    self.holders.insert(s, lease.key);
                }
                self.refused.remove(&lease.key);
                Verdict::Admitted
            }
            Err(refusal) => {
                self.release(&lease.key);
                let new = self
                    .refused
                    .get(&lease.key)
                    .is_none_or(|(l, r)| l != lease || *r != refusal);
                self.refused
                    .insert(lease.key, (lease.clone(), refusal.clone()));
                Verdict::Refused { refusal, new }
            }
        }
    }

    /// Frees the subnets `key` held.
    fn release(&mut self, key: &LeaseKey) {
        for s in subnets(&self.rules, key) {
            if self.holders.get(&s) == Some(key) {
                self.holders.remove(&s);
            }
        }
    }

    /// A lease went away. Returns the refused leases that are admitted now
    /// (they were refused only because this one held their subnet).
    pub fn remove(&mut self, key: &LeaseKey) -> Vec<Lease> {
        self.refused.remove(key);
        self.release(key);
        let freed: Vec<IpNet> = subnets(&self.rules, key).collect();
        let waiting: Vec<Lease> = self
            .refused
            .values()
            .filter(|(_, r)| matches!(r, Refusal::Taken { subnet, .. } if freed.contains(subnet)))
            .map(|(l, _)| l.clone())
            .collect();
        waiting
            .into_iter()
            .filter(|l| self.put(l) == Verdict::Admitted)
            .collect()
    }

    /// Every lease there is (a listing): leases admitted before keep their
    /// subnets, then the others are admitted in order. Returns each lease's
    /// verdict, in the order given.
    pub fn reset(&mut self, leases: &[Lease]) -> Vec<Verdict> {
        let before = std::mem::take(&mut self.holders);
        let was_admitted = |l: &Lease| {
            subnets(&self.rules, &l.key)
                .next()
                .is_some_and(|s| before.get(&s) == Some(&l.key))
        };
        let mut verdicts = vec![Verdict::Admitted; leases.len()];
        let previously_refused = std::mem::take(&mut self.refused);
        let order: Vec<usize> = (0..leases.len())
            .filter(|&i| was_admitted(&leases[i]))
            .chain((0..leases.len()).filter(|&i| !was_admitted(&leases[i])))
            .collect();
        for i in order {
            let l = &leases[i];
            if l.key == self.own {
                continue;
            }
            verdicts[i] = match self.put(l) {
                Verdict::Refused { refusal, .. } => {
                    let new = previously_refused
                        .get(&l.key)
                        .is_none_or(|(old, r)| old != l || *r != refusal);
                    Verdict::Refused { refusal, new }
                }
                v => v,
            };
        }
        verdicts
    }
}

/// The leases of a listing that the agent of `own` leaves out, with why
/// (what `weft status` and `weft doctor` report).
pub fn refusals(rules: Rules, own: LeaseKey, leases: &[Lease]) -> Vec<(LeaseKey, Refusal)> {
    let mut a = Admission::new(rules, own);
    a.reset(leases);
    a.refused().map(|(k, r)| (*k, r.clone())).collect()
}

#[cfg(test)]
mod tests;

//! The ipsec backend's plan, as flanneld v0.28 lays it out: for each
//! remote ipsec lease, three kernel policies (`out` from this subnet to
//! the remote one, `in` and `fwd` back) that send the traffic through an
//! ESP tunnel between the two public IPs with request id 11, and one IKEv2
//! connection in charon that negotiates that tunnel's keys. No routes and
//! no device: the policies catch pod traffic on its way out.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::relisting::Relisting;
use crate::lease::{Lease, LeaseError, LeaseKey};
use crate::subnet::Pools;

/// flanneld's request id, shared by the policies and charon's SAs.
pub const REQID: u32 = 11;
/// flanneld's per-packet overhead: outer IPv4 header, ESP header, IV,
/// padding, trailer and ICV.
pub const OVERHEAD: u32 = 77;
/// And the UDP header with UDPEncap.
pub const UDP_ENCAP_OVERHEAD: u32 = 8;

/// The pods' MTU over an underlay of `underlay_mtu`.
pub fn pod_mtu(underlay_mtu: u32, udp_encap: bool) -> u32 {
    let encap = if udp_encap { UDP_ENCAP_OVERHEAD } else { 0 };
    underlay_mtu.saturating_sub(OVERHEAD + encap)
}

/// A policy's direction (the kernel's XFRM_POLICY_* order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    In,
    Out,
    Fwd,
}

/// One ESP tunnel-mode policy with [`REQID`]: traffic from `src` to `dst`
/// goes through (or, `In`/`Fwd`, must have come through) the tunnel from
/// `tunnel_src` to `tunnel_dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy {
    pub src: Ipv4Net,
    pub dst: Ipv4Net,
    pub dir: Direction,
    pub tunnel_src: Ipv4Addr,
    pub tunnel_dst: Ipv4Addr,
}

impl fmt::Display for Policy {
    /// `172.30.1.0/24 -> 172.30.7.0/24 out (tunnel 198.18.0.11 -> 198.18.0.12)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.dir {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Fwd => "fwd",
        };
        write!(
            f,
            "{} -> {} {dir} (tunnel {} -> {})",
            self.src, self.dst, self.tunnel_src, self.tunnel_dst
        )
    }
}

/// What the kernel holds against the plan: policies to add, and policies
/// of weft's form no lease asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    pub missing: Vec<Policy>,
    pub stale: Vec<Policy>,
}

/// One end of a tunnel: a host's subnet and public IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct End {
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
}

/// A remote host as charon and the kernel see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub remote: End,
    /// The IKE connection's name, flanneld's
    /// `<local IP>-<local subnet>-<remote subnet>-<remote IP>`.
    pub connection: String,
    /// The child SA's name, `<local subnet>-<remote subnet>`.
    pub child: String,
    pub policies: [Policy; 3],
}

/// Plans ipsec peers for this host (IPv4 only, as flannel's backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpsecPlanner {
    pub local: End,
    /// The cluster network: policies between subnets of it with
    /// [`REQID`] are weft's.
    pub network: Ipv4Net,
}

impl IpsecPlanner {
    /// The planner of the host holding lease `subnet` in `pools` with
    /// `public_ip`; `None` without an IPv4 network and subnet (the
    /// backend carries IPv4 only).
    pub fn for_host(
        pools: &Pools,
        subnet: Option<Ipv4Net>,
        public_ip: Ipv4Addr,
    ) -> Option<IpsecPlanner> {
        let IpNet::V4(network) = pools.v4.as_ref()?.network() else {
            return None;
        };
        Some(IpsecPlanner {
            local: End {
                subnet: subnet?,
                public_ip,
            },
            network,
        })
    }

    /// The peer a remote lease means, or why it is unusable.
    pub fn peer(
        &self,
        key: &LeaseKey,
        attrs: &crate::lease::LeaseAttrs,
    ) -> Result<Peer, LeaseError> {
        let bad = |field: &'static str, msg: String| LeaseError::Value {
            key: key.to_string(),
            field,
            msg,
        };
        if attrs.backend() != "ipsec" {
            return Err(bad(
                "BackendType",
                format!("{:?} is not ipsec; lease ignored", attrs.backend()),
            ));
        }
        let subnet = key
            .v4
            .ok_or_else(|| bad("PublicIP", "no IPv4 subnet; lease ignored".into()))?;
        let ip = attrs.public_ip;
        if ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_broadcast()
            || ip == self.local.public_ip
        {
            return Err(bad(
                "PublicIP",
                format!("{ip} cannot be a tunnel's remote end; lease ignored"),
            ));
        }
        let local = self.local;
        Ok(Peer {
            remote: End {
                subnet,
                public_ip: ip,
            },
            connection: format!("{}-{}-{}-{}", local.public_ip, local.subnet, subnet, ip),
            child: format!("{}-{}", local.subnet, subnet),
            policies: self.policies(subnet, ip),
        })
    }

    fn policies(&self, remote: Ipv4Net, remote_ip: Ipv4Addr) -> [Policy; 3] {
        let (local, local_ip) = (self.local.subnet, self.local.public_ip);
        let inbound = |dir| Policy {
            src: remote,
            dst: local,
            dir,
            tunnel_src: remote_ip,
            tunnel_dst: local_ip,
        };
        [
            Policy {
                src: local,
                dst: remote,
                dir: Direction::Out,
                tunnel_src: local_ip,
                tunnel_dst: remote_ip,
            },
            inbound(Direction::In),
            inbound(Direction::Fwd),
        ]
    }

    /// Whether a kernel policy with [`REQID`] between these selectors is
    /// this backend's to manage.
    pub fn owns(&self, src: Ipv4Net, dst: Ipv4Net) -> bool {
        self.network.contains(&src) && self.network.contains(&dst)
    }
}

/// What charon must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Load the peer's key and connection; add its policies.
    Load(Peer),
    /// Unload its connection; delete its policies.
    Unload(Peer),
}

/// The remote leases this host has tunnels to.
#[derive(Debug)]
pub struct IpsecPeers {
    planner: IpsecPlanner,
    known: HashMap<LeaseKey, Peer>,
    /// Leases named since [`IpsecPeers::begin_reset`].
    relisting: Relisting,
}

impl IpsecPeers {
    pub fn new(planner: IpsecPlanner) -> IpsecPeers {
        IpsecPeers {
            planner,
            known: HashMap::new(),
            relisting: Relisting::default(),
        }
    }

    pub fn planner(&self) -> &IpsecPlanner {
        &self.planner
    }

    /// A remote lease appeared or changed: nothing when its tunnel is as
    /// before; else the old one unloaded and the new one loaded.
    pub fn upsert(&mut self, lease: &Lease) -> Result<Vec<Change>, LeaseError> {
        self.relisting.note(lease.key);
        let peer = match self.planner.peer(&lease.key, &lease.attrs) {
            Ok(p) => p,
            Err(e) => {
                // what it had is stale now
                let gone = self.remove(&lease.key);
                return if gone.is_some() {
                    Ok(gone.into_iter().collect())
                } else {
                    Err(e)
                };
            }
        };
        let mut changes = Vec::new();
        match self.known.insert(lease.key, peer.clone()) {
            Some(old) if old == peer => {}
            Some(old) => changes.extend([Change::Unload(old), Change::Load(peer)]),
            None => changes.push(Change::Load(peer)),
        }
        Ok(changes)
    }

    /// A remote lease went away.
    pub fn remove(&mut self, key: &LeaseKey) -> Option<Change> {
        self.known.remove(key).map(Change::Unload)
    }

    /// A full listing follows; leases it does not name are unloaded at
    /// [`IpsecPeers::end_reset`].
    pub fn begin_reset(&mut self) {
        self.relisting.begin();
    }

    pub fn end_reset(&mut self) -> Vec<Change> {
        let stale = self.relisting.end(self.known.keys());
        stale.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Every policy the kernel should hold.
    pub fn policies(&self) -> HashSet<Policy> {
        self.known.values().flat_map(|p| p.policies).collect()
    }

    /// The plan against `kernel`'s policies of weft's form; those outside
    /// the cluster network are someone else's and left out.
    pub fn drift(&self, kernel: impl IntoIterator<Item = Policy>) -> Drift {
        let want = self.policies();
        let have: HashSet<Policy> = kernel
            .into_iter()
            .filter(|p| self.planner.owns(p.src, p.dst))
            .collect();
        let mut drift = Drift {
            missing: want.difference(&have).copied().collect(),
            stale: have.difference(&want).copied().collect(),
        };
        drift.missing.sort();
        drift.stale.sort();
        drift
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.known.values()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseAttrs;

    fn planner() -> IpsecPlanner {
        IpsecPlanner {
            local: End {
                subnet: "172.30.1.0/24".parse().expect("net"),
                public_ip: "198.18.0.11".parse().expect("ip"),
            },
            network: "172.30.0.0/16".parse().expect("net"),
        }
    }

    fn lease(key: &str, backend: &str, ip: &str) -> Lease {
        Lease {
            key: key.parse().expect("key"),
            attrs: LeaseAttrs::parse(
                key,
                format!(r#"{{"PublicIP":"{ip}","BackendType":"{backend}"}}"#).as_bytes(),
            )
            .expect("attrs"),
        }
    }

    #[test]
    fn a_peer_is_flanneld_s_names_and_three_policies() {
        let l = lease("172.30.7.0-24", "ipsec", "198.18.0.12");
        let p = planner().peer(&l.key, &l.attrs).expect("peer");
        assert_eq!(
            p.connection,
            "198.18.0.11-172.30.1.0/24-172.30.7.0/24-198.18.0.12"
        );
        assert_eq!(p.child, "172.30.1.0/24-172.30.7.0/24");
        let show: Vec<String> = p
            .policies
            .iter()
            .map(|p| {
                format!(
                    "{:?} {}>{} via {}>{}",
                    p.dir, p.src, p.dst, p.tunnel_src, p.tunnel_dst
                )
            })
            .collect();
        assert_eq!(
            show,
            [
                "Out 172.30.1.0/24>172.30.7.0/24 via 198.18.0.11>198.18.0.12",
                "In 172.30.7.0/24>172.30.1.0/24 via 198.18.0.12>198.18.0.11",
                "Fwd 172.30.7.0/24>172.30.1.0/24 via 198.18.0.12>198.18.0.11",
            ]
        );
        assert!(planner().owns(p.policies[0].src, p.policies[0].dst));
        assert!(!planner().owns("10.0.0.0/24".parse().expect("n"), p.policies[0].dst));
        assert_eq!(pod_mtu(1500, false), 1423);
        assert_eq!(pod_mtu(1500, true), 1415);
    }

    #[test]
    fn unusable_leases_are_refused_with_the_field() {
        let p = planner();
        for (l, field) in [
            (
                lease("172.30.7.0-24", "vxlan", "198.18.0.12"),
                "BackendType",
            ),
            (lease("172.30.7.0-24", "ipsec", "0.0.0.0"), "PublicIP"),
            (lease("172.30.7.0-24", "ipsec", "198.18.0.11"), "PublicIP"),
        ] {
            let e = p.peer(&l.key, &l.attrs).expect_err("refused").to_string();
            assert!(e.contains(&format!("field {field}")), "{e}");
        }
    }

    #[test]
    fn changes_only_when_the_tunnel_changes_and_resets_drop_the_unseen() {
        let mut peers = IpsecPeers::new(planner());
        let a = lease("172.30.7.0-24", "ipsec", "198.18.0.12");
        let b = lease("172.30.8.0-24", "ipsec", "198.18.0.13");
        assert!(matches!(
            peers.upsert(&a).expect("ok")[..],
            [Change::Load(_)]
        ));
        assert!(
            peers.upsert(&a).expect("ok").is_empty(),
            "a renewal changes nothing"
        );
        let moved = lease("172.30.7.0-24", "ipsec", "198.18.0.14");
        assert!(matches!(
            peers.upsert(&moved).expect("ok")[..],
            [Change::Unload(_), Change::Load(_)]
        ));
        peers.upsert(&b).expect("ok");
        assert_eq!(peers.policies().len(), 6);
        let planned: Vec<Policy> = peers.policies().into_iter().collect();
        let foreign = Policy {
            src: "10.9.0.0/24".parse().expect("net"),
            ..planned[0]
        };
        let stale = Policy {
            src: "172.30.200.0/24".parse().expect("net"),
            ..planned[0]
        };
        let kernel = planned[1..].iter().copied().chain([foreign, stale]);
        assert_eq!(
            peers.drift(kernel),
            Drift {
                missing: vec![planned[0]],
                stale: vec![stale],
            },
            "the missing one, the stale one; the foreign one left alone"
        );
        peers.begin_reset();
        peers.upsert(&b).expect("ok");
        let gone = peers.end_reset();
        assert!(
            matches!(&gone[..], [Change::Unload(p)] if p.remote.subnet.to_string() == "172.30.7.0/24")
        );
        assert_eq!(peers.len(), 1);
        let other = lease("172.30.8.0-24", "vxlan", "198.18.0.13");
        assert!(matches!(
            peers.upsert(&other).expect("unloads")[..],
            [Change::Unload(_)]
        ));
        assert!(peers.upsert(&other).is_err());
        assert!(peers.is_empty());
    }
}

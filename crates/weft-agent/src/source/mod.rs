//! Where leases come from: one seam, two sources.
//!
//! - [`etcd`]: flannel's registry under `-etcd-prefix` (the `config` key,
//!   leases under `subnets/` that this host creates, renews and watches);
//! - [`kube`]: `-kube-subnet-mgr`, the Kubernetes API (`-net-config-path`
//!   for the config, each Node's `spec.podCIDR(s)` as its subnet, the lease
//!   attributes as annotations on the Node).
//!
//! Both answer the same questions in the agent's start-up order — the
//! network config, what this host published before (its VTEP MACs and,
//! for Kubernetes, stored public addresses), this host's lease — and then
//! follow the other hosts' leases as a
//! stream of [`Update`]s. What the agent does with an update is the same
//! for both ([`crate::follow`]).

pub mod claims;
pub mod etcd;
#[cfg(feature = "kube")]
pub mod kube;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::network::Network;
use anyhow::Result;
use tokio::sync::{mpsc, Notify};
use weft_core::admission::Rules;
use weft_core::lease::{Lease, LeaseAttrs, LeaseKey};
use weft_core::MacAddr;

use crate::options::SourceOptions;
use crate::Never;

/// What the agent owning lease `own` leaves out of a complete listing,
/// one line each, naming the Node (Kubernetes) or the lease and why: in
/// Kubernetes mode a Node whose pod range another Node holds, then any
/// lease the admission refuses ([`weft_core::admission`]). What `weft
/// status` and `weft doctor` report.
pub fn left_out(
    rules: Rules,
    own: Option<LeaseKey>,
    listing: &[(Option<String>, Lease)],
) -> Vec<String> {
    let no_lease = LeaseKey { v4: None, v6: None };
    let mut lines = Vec::new();
    let kube = listing.iter().any(|(node, _)| node.is_some());
    let leases: Vec<Lease> = if kube {
        let own_node = listing
            .iter()
            .find(|(_, l)| Some(l.key) == own)
            .and_then(|(n, _)| n.clone())
            .unwrap_or_default();
        let mut claims = claims::Claims::new(&own_node, own.unwrap_or(no_lease));
        let named = listing
            .iter()
            .map(|(n, l)| (n.clone().unwrap_or_default(), l.clone()))
            .collect();
        let (leases, refused) = claims.reset(named);
        lines.extend(refused);
        leases
    } else {
        listing.iter().map(|(_, l)| l.clone()).collect()
    };
    let node_of = |k: &LeaseKey| {
        listing
            .iter()
            .find(|(_, l)| l.key == *k)
            .and_then(|(n, _)| n.clone())
    };
    for (key, why) in weft_core::admission::refusals(rules, own.unwrap_or(no_lease), &leases) {
        lines.push(match node_of(&key) {
            Some(n) => format!("Node {n}: lease {key}: {why}"),
            None => format!("lease {key}: {why}"),
        });
    }
    lines
}

/// What a source reports about the other hosts.
#[derive(Debug)]
pub enum Update {
    /// Every lease there is (the first listing, or a re-listing): what is
    /// not in it is gone.
    All(Vec<Lease>),
    /// Leases added, changed or removed since the last update, in order.
    Changes(Vec<Change>),
}

#[derive(Debug)]
pub enum Change {
    Put(Lease),
    Delete(LeaseKey),
}

/// The lease source the flags select.
pub enum Source {
    Etcd(etcd::EtcdSource),
    #[cfg(feature = "kube")]
    Kube(Box<kube::KubeSource>),
}

impl Source {
    /// Connects. etcd: nothing is sent yet; fails on bad flags or TLS
    /// files. Kubernetes: finds this host's Node and reads it, waiting for
    /// it to exist; fails on a bad kubeconfig or a refused request.
    pub async fn open(options: &SourceOptions) -> Result<Source> {
        Ok(match options {
            #[cfg(feature = "kube")]
            SourceOptions::Kube(o) => Source::Kube(Box::new(kube::KubeSource::open(o).await?)),
            #[cfg(not(feature = "kube"))]
            SourceOptions::Kube(_) => anyhow::bail!(
                "-kube-subnet-mgr: this agent was built without Kubernetes mode (etcd only: weft-agent's \"kube\" feature off); use weft or a flanneld built with it"
            ),
            SourceOptions::Etcd(o) => Source::Etcd(etcd::EtcdSource::open(o).await?),
        })
    }

    /// The network config; etcd waits until a valid one is stored, the
    /// Kubernetes source reads its file once (a bad file is fatal).
    pub async fn network(&mut self) -> Result<Network> {
        match self {
            Source::Etcd(s) => Ok(s.network().await),
            #[cfg(feature = "kube")]
            Source::Kube(s) => s.network(),
        }
    }

    /// Public addresses stored for this host that replace `-public-ip` and
    /// `-public-ipv6` (the Node's `node-public-ip(v6)` annotations).
    pub fn stored_public_ips(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        match self {
            Source::Etcd(_) => (None, None),
            #[cfg(feature = "kube")]
            Source::Kube(s) => s.stored_public_ips(),
        }
    }

    /// The VTEP MACs (IPv4, IPv6) this host published before, so that a
    /// re-created vxlan device keeps them and peers' entries stay valid.
    pub async fn previous_macs(
        &mut self,
        network: &Network,
        probe: &LeaseAttrs,
    ) -> (Option<MacAddr>, Option<MacAddr>) {
        match self {
            Source::Etcd(s) => s.previous_macs(network, probe).await,
            #[cfg(feature = "kube")]
            Source::Kube(s) => s.previous_macs(),
        }
    }

    /// Takes (etcd) or finds and announces (Kubernetes) this host's lease.
    pub async fn acquire(&mut self, network: &Network, attrs: &LeaseAttrs) -> Result<LeaseKey> {
        match self {
            Source::Etcd(s) => s.acquire(network, attrs).await,
            #[cfg(feature = "kube")]
            Source::Kube(s) => s.acquire(network, attrs).await,
        }
    }

    /// The checks every remote lease must pass before it is programmed:
    /// the config's networks and subnet length (Kubernetes: the length of
    /// this node's own pod ranges, the controller-manager's choice).
    #[cfg_attr(not(feature = "kube"), allow(unused_variables))]
    pub fn admission_rules(&self, network: &Network, own: &LeaseKey) -> Rules {
        let (v4, v6) = (network.pools.v4.as_ref(), network.pools.v6.as_ref());
        match self {
            Source::Etcd(_) => Rules::from_pools(v4, v6),
            #[cfg(feature = "kube")]
            Source::Kube(_) => Rules::from_pools_and_own(v4, v6, own),
        }
    }

    /// Follows every host's lease until a fatal condition: sends an
    /// [`Update::All`] first, then changes. `ready` is notified once the
    /// data path holds the first listing.
    #[cfg_attr(not(feature = "kube"), allow(unused_variables))]
    pub async fn follow(
        self,
        own: LeaseKey,
        updates: mpsc::Sender<Update>,
        ready: Arc<Notify>,
    ) -> Result<Never> {
        match self {
            Source::Etcd(s) => s.follow(own, updates).await,
            #[cfg(feature = "kube")]
            Source::Kube(s) => s.follow(own, updates, ready).await,
        }
    }
}

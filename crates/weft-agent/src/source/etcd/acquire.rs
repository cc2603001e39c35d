//! Getting this host's lease: reuse one that already carries our public
//! IP, else the subnet of the previous subnet file if it is free, else a
//! random free one. A lost creation race is retried with a fresh listing.
//! Creation is a transaction that succeeds only while the subnets are
//! free, and a dual-stack lease whose IPv6 subnet an earlier key took at
//! the same moment is given back (`Registry::create`), so two weft hosts never
//! end up with one subnet of either family.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::subnet::{Pools, SubnetPool};
use weft_etcd::{AcquiredLease, EtcdError, LeaseListing, Registry};

/// flannel's lease TTL.
pub const LEASE_TTL_SECS: i64 = 24 * 60 * 60;
const MAX_ATTEMPTS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(
        "no free subnet left in {network} between {min} and {max} ({capacity} subnets, all leased)"
    )]
    PoolExhausted {
        network: IpNet,
        min: IpAddr,
        max: IpAddr,
        capacity: u128,
    },
    #[error("gave up after {0} lost races for a subnet")]
    TooManyRaces(usize),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// The lease among `listing` that this host held before, if any: same
/// public address (IPv4, or IPv6 in IPv6-only clusters) and subnets that
/// fit the current pools.
pub fn own_previous<'a>(
    listing: &'a LeaseListing,
    pools: &Pools,
    attrs: &LeaseAttrs,
) -> Option<&'a weft_etcd::LeaseRecord> {
    listing.leases.iter().find(|r| {
        let same_host = if pools.v4.is_some() {
            r.attrs.public_ip == attrs.public_ip
        } else {
            r.attrs.public_ipv6.is_some() && r.attrs.public_ipv6 == attrs.public_ipv6
        };
        same_host && pools.contains(&r.key)
    })
}

fn exhausted(pool: &SubnetPool) -> AcquireError {
    AcquireError::PoolExhausted {
        network: pool.network(),
        min: pool.min(),
        max: pool.max(),
        capacity: pool.capacity(),
    }
}

/// A free subnet of `pool` (the previous one when free), or the pool is full.
fn pick(
    pool: &SubnetPool,
    taken: &HashSet<IpNet>,
    previous: Option<IpNet>,
) -> Result<IpNet, AcquireError> {
    pool.choose(taken, previous, rand::random())
        .ok_or_else(|| exhausted(pool))
}

/// Acquires a lease for `attrs`; `listing` is refreshed as races are lost.
pub async fn acquire(
    reg: &mut Registry,
    pools: &Pools,
    attrs: &LeaseAttrs,
    previous: (Option<Ipv4Net>, Option<Ipv6Net>),
    mut listing: LeaseListing,
) -> Result<AcquiredLease, AcquireError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            listing = reg.list().await?;
        }
        if let Some(rec) = own_previous(&listing, pools, attrs) {
            let rec = rec.clone();
            if let Some(l) = reg.reuse(&rec, attrs, LEASE_TTL_SECS).await? {
                tracing::info!(subnet = %rec.key, "reusing this host's existing lease");
                return Ok(l);
            }
            continue;
        }
        let taken: HashSet<IpNet> = listing
            .leases
            .iter()
            .flat_map(|r| [r.key.v4.map(IpNet::V4), r.key.v6.map(IpNet::V6)])
            .flatten()
            .collect();
        let mut key = LeaseKey { v4: None, v6: None };
        if let Some(pool) = &pools.v4 {
            if let IpNet::V4(n) = pick(pool, &taken, previous.0.map(IpNet::V4))? {
                key.v4 = Some(n);
            }
        }
        if let Some(pool) = &pools.v6 {
            if let IpNet::V6(n) = pick(pool, &taken, previous.1.map(IpNet::V6))? {
                key.v6 = Some(n);
            }
        }
        if let Some(l) = reg.create(key, attrs, LEASE_TTL_SECS).await? {
            tracing::info!(subnet = %key, "acquired a new lease");
            return Ok(l);
        }
        tracing::info!(subnet = %key, "another host took this subnet first; choosing again");
    }
    Err(AcquireError::TooManyRaces(MAX_ATTEMPTS))
}

//! Getting this host's lease: reuse one that already carries our public
//! IP, else the subnet of the previous subnet file if it is free, else a
//! random free one. A lost creation race is retried with a fresh listing
//! (two hosts can never end up with one subnet: creation is a
//! create-if-absent transaction).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::subnet::SubnetPool;
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

/// The lease among `listing` that this host held before, if any.
pub fn own_previous<'a>(
    listing: &'a LeaseListing,
    pool: &SubnetPool,
    attrs: &LeaseAttrs,
) -> Option<&'a weft_etcd::LeaseRecord> {
    listing.leases.iter().find(|r| {
        r.attrs.public_ip == attrs.public_ip
            && r.key
                .v4
                .is_some_and(|n| pool.contains_subnet(&IpNet::V4(n)))
    })
}

/// Acquires a lease for `attrs`; `listing` is refreshed as races are lost.
pub async fn acquire(
    reg: &mut Registry,
    pool: &SubnetPool,
    attrs: &LeaseAttrs,
    previous_file_subnet: Option<Ipv4Net>,
    mut listing: LeaseListing,
) -> Result<AcquiredLease, AcquireError> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            listing = reg.list().await?;
        }
        if let Some(rec) = own_previous(&listing, pool, attrs) {
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
            .filter_map(|r| r.key.v4.map(IpNet::V4))
            .collect();
        let preferred = previous_file_subnet.map(IpNet::V4);
        let Some(IpNet::V4(choice)) = pool.choose(&taken, preferred, rand::random()) else {
            return Err(AcquireError::PoolExhausted {
                network: pool.network(),
                min: pool.min(),
                max: pool.max(),
                capacity: pool.capacity(),
            });
        };
        if let Some(l) = reg
            .create(LeaseKey::v4(choice), attrs, LEASE_TTL_SECS)
            .await?
        {
            tracing::info!(subnet = %choice, "acquired a new lease");
            return Ok(l);
        }
        tracing::info!(subnet = %choice, "another host took this subnet first; choosing again");
    }
    Err(AcquireError::TooManyRaces(MAX_ATTEMPTS))
}

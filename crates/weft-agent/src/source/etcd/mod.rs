//! Leases from etcd, as flanneld keeps them: the network config at
//! `<prefix>/config`, this host's lease created or reused under
//! `<prefix>/subnets/` ([`acquire`]) and renewed before it expires, every
//! lease listed and then watched from the listing's revision (re-listed
//! when the watch falls behind compaction).

pub mod acquire;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use weft_core::config::NetConfig;
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::MacAddr;
use weft_etcd::{
    connect, AcquiredLease, LeaseEvent, LeaseListing, LeaseWatch, Registry, WatchError,
};

use self::acquire::{acquire, own_previous, AcquireError};
use super::{Change, Update};
use crate::network::Network;
use crate::options::EtcdSourceOptions;
use crate::{subnet_file, Never};

const RENEW_RETRY: Duration = Duration::from_secs(60);

pub struct EtcdSource {
    reg: Registry,
    subnet_file: PathBuf,
    renew_margin_min: u32,
    /// The listing taken for the MACs, reused by the first acquisition.
    listing: Option<LeaseListing>,
    lease: Option<AcquiredLease>,
}

impl EtcdSource {
    /// The registry on the etcd of the flags (fails on bad TLS files or
    /// endpoints only: nothing is sent yet).
    pub async fn open(options: &EtcdSourceOptions) -> Result<EtcdSource> {
        let etcd = connect(&options.connect).await?;
        Ok(EtcdSource {
            reg: Registry::new(etcd, &options.prefix),
            subnet_file: options.previous_subnet_file.clone(),
            renew_margin_min: options.renew_margin_minutes,
            listing: None,
            lease: None,
        })
    }

    /// Reads `<prefix>/config` until it exists and is valid for weft.
    pub async fn network(&mut self) -> Network {
        let mut last_problem = String::new();
        loop {
            let problem = match self.reg.config().await {
                Ok(Some(json)) => match NetConfig::parse(&json) {
                    Ok(c) => match Network::from_config(c) {
                        Ok(n) => return n,
                        Err(e) => e,
                    },
                    Err(e) => e.to_string(),
                },
                Ok(None) => format!("{} does not exist yet", self.reg.config_key()),
                Err(e) => e.to_string(),
            };
            if problem != last_problem {
                tracing::error!("network config: {problem}; retrying every second");
                last_problem = problem;
            }
            sleep(Duration::from_secs(1)).await;
        }
    }

    /// The MACs of this host's previous lease (same public address).
    pub async fn previous_macs(
        &mut self,
        network: &Network,
        probe: &LeaseAttrs,
    ) -> (Option<MacAddr>, Option<MacAddr>) {
        let listing = list_leases(&self.reg).await;
        let previous = own_previous(&listing, &network.pools, probe);
        let mac = |v6| {
            previous
                .and_then(|r| r.attrs.vxlan_data("", v6).ok())
                .map(|d| d.vtep_mac)
        };
        let macs = (mac(false), mac(true));
        self.listing = Some(listing);
        macs
    }

    pub async fn acquire(&mut self, network: &Network, attrs: &LeaseAttrs) -> Result<LeaseKey> {
        let previous = subnet_file::previous_subnets(&self.subnet_file);
        let lease = loop {
            let current = match self.listing.take() {
                Some(l) => l,
                None => list_leases(&self.reg).await,
            };
            match acquire(&mut self.reg, &network.pools, attrs, previous, current).await {
                Ok(lease) => break lease,
                // etcd trouble is never fatal here: flanneld keeps trying too
                Err(AcquireError::Etcd(e)) => {
                    tracing::warn!("acquiring a subnet lease: {e}; retrying in 1 s");
                    sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e).context("acquiring a subnet lease"),
            }
        };
        self.lease = Some(lease);
        Ok(lease.key)
    }

    /// Lists, then watches from the listing's revision; renews this host's
    /// lease on time. Fatal: this host's lease deleted.
    pub async fn follow(mut self, own: LeaseKey, updates: mpsc::Sender<Update>) -> Result<Never> {
        let Some(lease) = self.lease else {
            bail!("no lease acquired before following the others");
        };
        let mut revision = self.relist(&updates).await?;
        let mut watch = open_watch(&self.reg, revision + 1).await;
        let mut next_renew = Instant::now() + renew_delay(lease.ttl, self.renew_margin_min);
        loop {
            tokio::select! {
                r = watch.next() => match r {
                    Ok(events) => {
                        revision = revision.max(watch.revision);
                        let changes = changes(&own, events)?;
                        if !changes.is_empty() {
                            send(&updates, Update::Changes(changes)).await?;
                        }
                    }
                    Err(WatchError::Compacted(rev)) => {
                        crate::metrics::get().etcd_reconnects.inc();
                        tracing::warn!("watch fell behind compaction (revision {rev}); re-listing");
                        revision = self.relist(&updates).await?;
                        watch = open_watch(&self.reg, revision + 1).await;
                    }
                    Err(e) => {
                        revision = revision.max(watch.revision);
                        crate::metrics::get().etcd_reconnects.inc();
                        tracing::warn!("{e}; resuming the watch from revision {}", revision + 1);
                        sleep(Duration::from_millis(200)).await;
                        watch = open_watch(&self.reg, revision + 1).await;
                    }
                },
                _ = sleep_until(next_renew) => {
                    match self.reg.renew(lease.etcd_lease).await {
                        Ok(ttl) => {
                            tracing::info!(subnet = %own, ttl, "lease renewed");
                            next_renew = Instant::now() + renew_delay(ttl, self.renew_margin_min);
                        }
                        Err(e) => {
                            tracing::warn!("renewing the lease: {e}; retrying in a minute");
                            next_renew = Instant::now() + RENEW_RETRY;
                        }
                    }
                }
            }
        }
    }

    /// Sends every lease as one update; returns the listing's revision.
    async fn relist(&self, updates: &mpsc::Sender<Update>) -> Result<i64> {
        let listing = list_leases(&self.reg).await;
        for e in &listing.invalid {
            tracing::warn!("{e}");
        }
        let revision = listing.revision;
        let all = listing.leases.into_iter().map(|r| r.into_lease()).collect();
        send(updates, Update::All(all)).await?;
        Ok(revision)
    }
}

async fn send(updates: &mpsc::Sender<Update>, u: Update) -> Result<()> {
    updates
        .send(u)
        .await
        .map_err(|_| anyhow::anyhow!("the data path stopped taking lease updates"))
}

/// One batch of etcd events as changes, in order.
fn changes(own: &LeaseKey, events: Vec<LeaseEvent>) -> Result<Vec<Change>> {
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        match ev {
            LeaseEvent::Put(r) => out.push(Change::Put(r.into_lease())),
            LeaseEvent::Delete(k) if &k == own => bail!(
                "this host's lease {k} was deleted from etcd; exiting so that the agent restarts and takes a new lease"
            ),
            LeaseEvent::Delete(k) => out.push(Change::Delete(k)),
            LeaseEvent::Invalid(e) => tracing::warn!("{e}"),
        }
    }
    Ok(out)
}

/// Every lease, retried until etcd answers.
async fn list_leases(reg: &Registry) -> LeaseListing {
    retry("listing leases", || {
        let mut r = reg.clone();
        async move { r.list().await }
    })
    .await
}

async fn open_watch(reg: &Registry, from: i64) -> LeaseWatch {
    let prefix = reg.subnets_prefix();
    retry("watching leases", || {
        LeaseWatch::start(reg.etcd(), &prefix, from)
    })
    .await
}

/// Retries an etcd operation with exponential backoff (0.1 s to 5 s).
async fn retry<T, E, F, Fut>(what: &str, mut f: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match f().await {
            Ok(v) => {
                if logged {
                    tracing::info!("{what}: succeeded");
                }
                return v;
            }
            Err(e) => {
                tracing::warn!("{what}: {e}; retrying in {delay:?}");
                logged = true;
            }
        }
        sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn renew_delay(ttl_secs: i64, margin_min: u32) -> Duration {
    let ttl = ttl_secs.max(2) as u64;
    let margin = margin_min as u64 * 60;
    Duration::from_secs(if ttl > margin { ttl - margin } else { ttl / 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_margin_minutes_before_expiry() {
        // flannel's defaults: 24 h lease, renewed 60 min before it expires
        assert_eq!(renew_delay(86_400, 60), Duration::from_secs(23 * 3600));
        assert_eq!(renew_delay(86_400, 1439), Duration::from_secs(60));
        // a lease shorter than the margin is renewed half-way
        assert_eq!(renew_delay(600, 60), Duration::from_secs(300));
        assert_eq!(renew_delay(0, 60), Duration::from_secs(1));
    }

    #[test]
    fn own_lease_deleted_is_fatal_others_are_changes() {
        let own: LeaseKey = "172.30.1.0-24".parse().expect("key");
        let other: LeaseKey = "172.30.2.0-24".parse().expect("key");
        let c = changes(&own, vec![LeaseEvent::Delete(other)]).expect("other");
        assert!(matches!(c.as_slice(), [Change::Delete(k)] if *k == other));
        let e = changes(&own, vec![LeaseEvent::Delete(own)]).expect_err("own");
        assert!(e.to_string().contains("172.30.1.0-24"), "{e}");
    }
}

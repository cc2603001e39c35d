//! Reading the config and listing, creating, reusing and renewing leases.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use weft_core::lease::{Lease, LeaseAttrs, LeaseError, LeaseKey};

use crate::error::EtcdError;
use crate::failover::Etcd;

/// A lease key and what it holds, as read from etcd.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub key: LeaseKey,
    pub attrs: LeaseAttrs,
    /// The etcd lease the key is bound to (0 = none).
    pub etcd_lease: i64,
    pub mod_revision: i64,
}

impl LeaseRecord {
    /// The lease without etcd's bookkeeping.
    pub fn into_lease(self) -> Lease {
        Lease {
            key: self.key,
            attrs: self.attrs,
        }
    }
}

/// All leases at one revision.
#[derive(Debug, Default)]
pub struct LeaseListing {
    pub leases: Vec<LeaseRecord>,
    /// Keys under `subnets/` that are not valid leases.
    pub invalid: Vec<LeaseError>,
    pub revision: i64,
}

/// A lease this host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredLease {
    pub key: LeaseKey,
    pub etcd_lease: i64,
    /// Seconds to live granted at acquisition.
    pub ttl: i64,
}

/// flannel's registry under one prefix.
#[derive(Clone)]
pub struct Registry {
    etcd: Etcd,
    prefix: String,
}

impl Registry {
    /// `prefix` as given by `-etcd-prefix` (a trailing `/` is ignored).
    pub fn new(etcd: Etcd, prefix: &str) -> Self {
        Registry {
            etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    pub fn lease_key(&self, key: &LeaseKey) -> String {
        format!("{}{}", self.subnets_prefix(), key)
    }

    /// The raw config JSON, or `None` when the key does not exist.
    pub async fn config(&mut self) -> Result<Option<String>, EtcdError> {
        let key = self.config_key();
        let resp = self.etcd.get(&key, None).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Every lease, with the revision of the read.
    pub async fn list(&mut self) -> Result<LeaseListing, EtcdError> {
        let prefix = self.subnets_prefix();
        let (kvs, revision) = self.etcd.get_prefix(&prefix).await?;
        let mut out = LeaseListing {
            revision,
            ..Default::default()
        };
        out.leases.reserve(kvs.len());
        for kv in kvs {
            match parse_record(&prefix, kv.key(), kv.value(), kv.lease(), kv.mod_revision()) {
                Ok(r) => out.leases.push(r),
                Err(e) => out.invalid.push(e),
            }
        }
        Ok(out)
    }

    /// Creates `key` if its subnets are free (`subnets_free`). `None`
    /// means another host holds one of them.
    pub async fn create(
        &mut self,
        key: LeaseKey,
        attrs: &LeaseAttrs,
        ttl: i64,
    ) -> Result<Option<AcquiredLease>, EtcdError> {
        let k = self.lease_key(&key);
        let grant = self.grant(&k, ttl).await?;
        let txn = Txn::new()
            .when(self.subnets_free(&key))
            .and_then([TxnOp::put(
                k.clone(),
                attrs.to_json(),
                Some(PutOptions::new().with_lease(grant.0)),
            )]);
        let resp = self.etcd.txn(&format!("creating {k}"), txn).await?;
        if !resp.succeeded() {
            // unused, it would expire anyway: a failure to revoke is moot
            let _ = self.revoke(grant.0, "revoking an unused lease").await;
            return Ok(None);
        }
        let created = resp.header().map_or(0, |h| h.revision());
        if key.v4.is_some() && self.ipv6_held_before(&key, created).await? {
            // revoking the etcd lease deletes the key bound to it
            self.revoke(grant.0, "revoking a lease that lost its IPv6 subnet")
                .await?;
            return Ok(None);
        }
        Ok(Some(AcquiredLease {
            key,
            etcd_lease: grant.0,
            ttl: grant.1,
        }))
    }

    /// Whether another dual-stack key created before revision `created`
    /// holds `key`'s IPv6 subnet. It ends the key, so the transaction
    /// that created `key` could not check it (`subnets_free`): when two
    /// hosts take one IPv6 subnet at once, the later one gives it back.
    async fn ipv6_held_before(&self, key: &LeaseKey, created: i64) -> Result<bool, EtcdError> {
        let Some(v6) = key.v6 else {
            return Ok(false);
        };
        let prefix = self.subnets_prefix();
        let (kvs, _) = self.etcd.get_prefix(&prefix).await?;
        Ok(kvs.iter().any(|kv| {
            let text = String::from_utf8_lossy(kv.key());
            let other = text
                .strip_prefix(&prefix)
                .and_then(|short| short.parse::<LeaseKey>().ok());
            other.is_some_and(|o| o.v6 == Some(v6) && o != *key) && kv.create_revision() < created
        }))
    }

    /// The conditions under which `key`'s subnets are free. The lease's
    /// own key is absent. A dual-stack key names both subnets
    /// (`10.5.34.0-24&fc00::-64`, as flannel writes it), so its absence
    /// alone would let two hosts that chose one IPv4 subnet at once
    /// take it with different IPv6 subnets. So no other key may start
    /// with this IPv4 subnet either, alone or followed by `&`. (The same
    /// IPv6 subnet behind two IPv4 subnets ends the key, and etcd compares
    /// ranges only by prefix: `create` checks it after the transaction.)
    fn subnets_free(&self, key: &LeaseKey) -> Vec<Compare> {
        let k = self.lease_key(key);
        let mut free = vec![Compare::create_revision(k, CompareOp::Equal, 0)];
        if key.v4.is_some() {
            let v4_only = self.lease_key(&LeaseKey {
                v4: key.v4,
                v6: None,
            });
            free.push(Compare::version(format!("{v4_only}&"), CompareOp::Equal, 0).with_prefix());
            if key.v6.is_some() {
                free.push(Compare::create_revision(v4_only, CompareOp::Equal, 0));
            }
        }
        free
    }

    /// Takes over an existing lease of this host (same PublicIP), writing
    /// fresh attributes. `None` when the key changed since it was read.
    pub async fn reuse(
        &mut self,
        record: &LeaseRecord,
        attrs: &LeaseAttrs,
        ttl: i64,
    ) -> Result<Option<AcquiredLease>, EtcdError> {
        let k = self.lease_key(&record.key);
        // Keep the key's etcd lease when it is alive, else bind a new one.
        let mut lease = (record.etcd_lease, 0);
        if record.etcd_lease != 0 {
            if let Ok(left) = self.renew(record.etcd_lease).await {
                lease.1 = left;
            }
        }
        if lease.1 <= 0 {
            lease = self.grant(&k, ttl).await?;
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                k.clone(),
                CompareOp::Equal,
                record.mod_revision,
            )])
            .and_then([TxnOp::put(
                k.clone(),
                attrs.to_json(),
                Some(PutOptions::new().with_lease(lease.0)),
            )]);
        let resp = self.etcd.txn(&format!("taking over {k}"), txn).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(Some(AcquiredLease {
            key: record.key,
            etcd_lease: lease.0,
            ttl: lease.1,
        }))
    }

    /// Refreshes an etcd lease to its full TTL; returns the seconds left.
    pub async fn renew(&mut self, etcd_lease: i64) -> Result<i64, EtcdError> {
        let what = format!("renewing lease {etcd_lease:x}");
        let resp = self
            .etcd
            .call(&what, |mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(etcd_lease).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await?;
        match resp {
            Some(r) if r.ttl() > 0 => Ok(r.ttl()),
            _ => Err(EtcdError::LeaseLost(etcd_lease)),
        }
    }

    /// Revokes etcd lease `id`, deleting the keys bound to it; `what`
    /// names the call in errors.
    async fn revoke(&self, id: i64, what: &str) -> Result<(), EtcdError> {
        self.etcd
            .call(what, |mut c| async move { c.lease_revoke(id).await })
            .await
            .map(|_| ())
    }

    /// A new etcd lease of `ttl` seconds for key `k`: (id, granted TTL).
    async fn grant(&self, k: &str, ttl: i64) -> Result<(i64, i64), EtcdError> {
        let resp = self
            .etcd
            .call(&format!("granting a lease for {k}"), |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?;
        Ok((resp.id(), resp.ttl()))
    }
}

/// Decodes one key/value under `subnets/`.
pub(crate) fn parse_record(
    prefix: &str,
    key: &[u8],
    value: &[u8],
    etcd_lease: i64,
    mod_revision: i64,
) -> Result<LeaseRecord, LeaseError> {
    let full = String::from_utf8_lossy(key);
    let short = full.strip_prefix(prefix).unwrap_or(&full);
    let lease_key: LeaseKey = short.parse()?;
    let attrs = LeaseAttrs::parse(short, value)?;
    Ok(LeaseRecord {
        key: lease_key,
        attrs,
        etcd_lease,
        mod_revision,
    })
}

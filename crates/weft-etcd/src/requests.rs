//! The requests every user of [`Etcd`] makes, each through the fail-over
//! of [`Etcd::call`] and named in its errors.

use etcd_client::{GetOptions, GetResponse, KeyValue, Txn, TxnResponse};

use crate::error::EtcdError;
use crate::failover::Etcd;

impl Etcd {
    /// `key` (or the range `options` make of it).
    pub async fn get(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, EtcdError> {
        self.call(&format!("reading {key}"), |mut c| {
            let (key, options) = (key.to_string(), options.clone());
            async move { c.get(key, options).await }
        })
        .await
    }

    /// Every key under `prefix`, at one revision (see [`crate::paged`]).
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        self.call(&format!("listing {prefix}"), |mut c| {
            let prefix = prefix.to_string();
            async move { crate::paged::get_prefix(&mut c, &prefix).await }
        })
        .await
    }

    /// A transaction; `what` names it in errors.
    pub async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, EtcdError> {
        self.call(what, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }
}

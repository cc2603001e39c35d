//! Services and endpoint sets in etcd, under weft's prefix:
//!
//! ```text
//! <prefix>/services/<namespace>/<name>    Service JSON
//! <prefix>/endpoints/<namespace>/<name>   EndpointSlice JSON
//! <prefix>/service-ips/<ip>               "<namespace>/<name>" (allocation)
//! <prefix>/node-ports/<port>              "<namespace>/<name>" (allocation)
//! ```
//!
//! Writes are compare-and-swap transactions, so two `weft service` commands
//! never hand out the same cluster IP or node port.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnet::IpNet;
use weft_etcd::Etcd;

use crate::spec::{parse_object, EndpointSet, Object, Service, ServiceName, SpecError};

/// The default prefix of weft's service objects.
pub const DEFAULT_PREFIX: &str = "/weft";
/// kube-apiserver's default node port range.
pub const NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] weft_etcd::EtcdError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Conflict(String),
}

/// Which object a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Service(ServiceName),
    Endpoints(ServiceName),
    /// Allocation records and anything else under the prefix.
    Other,
}

pub struct Store {
    etcd: Etcd,
    prefix: String,
}

/// One consistent listing.
pub struct Listing {
    pub objects: Vec<(String, Result<Object, SpecError>)>,
    pub revision: i64,
}

impl Store {
    pub fn new(etcd: Etcd, prefix: &str) -> Store {
        Store {
            etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// `<prefix>/`, the key prefix to list and watch.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn service_key(&self, id: &ServiceName) -> String {
        format!("{}/services/{}/{}", self.prefix, id.namespace, id.name)
    }

    pub fn endpoints_key(&self, id: &ServiceName) -> String {
        format!("{}/endpoints/{}/{}", self.prefix, id.namespace, id.name)
    }

    fn ip_key(&self, ip: IpAddr) -> String {
        format!("{}/service-ips/{ip}", self.prefix)
    }

    fn node_port_key(&self, port: u16) -> String {
        format!("{}/node-ports/{port}", self.prefix)
    }

    /// What a key under the prefix holds.
    pub fn classify(&self, key: &str) -> KeyKind {
        let Some(rest) = key.strip_prefix(&self.root()) else {
            return KeyKind::Other;
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return KeyKind::Other;
        };
        let id = ServiceName::new(ns, name);
        match kind {
            "services" => KeyKind::Service(id),
            "endpoints" => KeyKind::Endpoints(id),
            _ => KeyKind::Other,
        }
    }

    /// Parses a value stored at `key`; the object must match its key.
    pub fn parse_value(&self, key: &str, value: &[u8]) -> Result<Object, SpecError> {
        let bad = |message: String| SpecError {
            object: key.into(),
            field: "(value)".into(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let obj = parse_object(&v, key)?;
        let (want, got) = match (&obj, self.classify(key)) {
            (Object::Service(s), KeyKind::Service(id)) => (id, &s.id),
            (Object::Endpoints(e), KeyKind::Endpoints(id)) => (id, &e.service),
            _ => return Err(bad("object kind does not match its key".into())),
        };
        if &want != got {
            return Err(bad(format!("object names {got}, key names {want}")));
        }
        Ok(obj)
    }

    /// Every service and endpoint set, at one revision.
    pub async fn list(&mut self) -> Result<Listing, StoreError> {
        let root = self.root();
        let (kvs, revision) = self.etcd.get_prefix(&root).await?;
        let mut objects = Vec::new();
        for kv in &kvs {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if self.classify(&key) == KeyKind::Other {
                continue;
            }
            let obj = self.parse_value(&key, kv.value());
            objects.push((key, obj));
        }
        Ok(Listing { objects, revision })
    }

    async fn get_object(&mut self, key: &str) -> Result<Option<(Object, i64)>, StoreError> {
        let resp = self.etcd.get(key, None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((
                self.parse_value(key, kv.value())?,
                kv.mod_revision(),
            ))),
        }
    }

    pub async fn get_service(
        &mut self,
        id: &ServiceName,
    ) -> Result<Option<(Service, i64)>, StoreError> {
        match self.get_object(&self.service_key(id)).await? {
            Some((Object::Service(s), rev)) => Ok(Some((s, rev))),
            _ => Ok(None),
        }
    }

    pub async fn get_endpoints(
        &mut self,
        id: &ServiceName,
    ) -> Result<Option<(EndpointSet, i64)>, StoreError> {
        match self.get_object(&self.endpoints_key(id)).await? {
            Some((Object::Endpoints(e), rev)) => Ok(Some((e, rev))),
            _ => Ok(None),
        }
    }

    /// Allocated values under `<prefix>/<what>/`.
    async fn allocated(&mut self, what: &str) -> Result<BTreeSet<String>, StoreError> {
        let prefix = format!("{}/{what}/", self.prefix);
        let resp = self
            .etcd
            .call(&format!("listing {prefix}"), |mut c| {
                let prefix = prefix.clone();
                async move {
                    c.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                String::from_utf8_lossy(kv.key())
                    .trim_start_matches(&prefix)
                    .to_string()
            })
            .collect())
    }

    /// Creates or updates a service. A missing cluster IP is kept from the
    /// stored service or allocated from `ip_range`; missing node ports
    /// likewise from the node port range. With `create_only`, an existing
    /// service is an error. Returns the service as stored.
    pub async fn put_service(
        &mut self,
        svc: Service,
        ip_range: IpNet,
        create_only: bool,
    ) -> Result<Service, StoreError> {
        for _attempt in 0..10 {
            let existing = self.get_service(&svc.id).await?;
            if create_only && existing.is_some() {
                return Err(StoreError::Conflict(format!(
                    "service {} already exists",
                    svc.id
                )));
            }
            let old = existing.as_ref().map(|(s, _)| s);
            let mut cand = svc.clone();
            let mut compares = vec![Compare::mod_revision(
                self.service_key(&svc.id),
                CompareOp::Equal,
                existing.as_ref().map_or(0, |(_, rev)| *rev),
            )];
            let mut ops = Vec::new();
            let owner = svc.id.to_string();

            if cand.cluster_ip.is_none() && !cand.headless {
                cand.cluster_ip = match old.and_then(|o| o.cluster_ip) {
                    Some(ip) => Some(ip),
                    None => Some(self.free_ip(ip_range).await?),
                };
            }
            let old_ip = old.and_then(|o| o.cluster_ip);
            if cand.cluster_ip != old_ip {
                if let Some(ip) = cand.cluster_ip {
                    compares.push(Compare::create_revision(
                        self.ip_key(ip),
                        CompareOp::Equal,
                        0,
                    ));
                    ops.push(TxnOp::put(self.ip_key(ip), owner.clone(), None));
                }
                if let Some(ip) = old_ip {
                    ops.push(TxnOp::delete(self.ip_key(ip), None));
                }
            }

            let old_ports: BTreeSet<u16> = old
                .map(|o| o.ports.iter().filter_map(|p| p.node_port).collect())
                .unwrap_or_default();
            if cand.kind.node_ports() {
                let mut taken = self.allocated("node-ports").await?;
                for p in cand.ports.iter_mut() {
                    if p.node_port.is_none() {
                        let kept = old.and_then(|o| {
                            o.ports
                                .iter()
                                .find(|q| q.name == p.name && q.protocol == p.protocol)
                                .and_then(|q| q.node_port)
                        });
                        p.node_port = match kept {
                            Some(n) => Some(n),
                            None => Some(free_node_port(&taken)?),
                        };
                    }
                    if let Some(n) = p.node_port {
                        taken.insert(n.to_string());
                    }
                }
            }
            let new_ports: BTreeSet<u16> = cand.ports.iter().filter_map(|p| p.node_port).collect();
            for n in new_ports.difference(&old_ports) {
                compares.push(Compare::create_revision(
                    self.node_port_key(*n),
                    CompareOp::Equal,
                    0,
                ));
                ops.push(TxnOp::put(self.node_port_key(*n), owner.clone(), None));
            }
            for n in old_ports.difference(&new_ports) {
                ops.push(TxnOp::delete(self.node_port_key(*n), None));
            }
            ops.push(TxnOp::put(
                self.service_key(&svc.id),
                cand.to_value().to_string(),
                None,
            ));
            let resp = self
                .etcd
                .txn(
                    &format!("writing service {}", svc.id),
                    Txn::new().when(compares).and_then(ops),
                )
                .await?;
            if resp.succeeded() {
                return Ok(cand);
            }
            // Lost a race (or an address/port is taken): look again.
            if let Some(ip) = svc.cluster_ip {
                if Some(ip) != old_ip
                    && self
                        .allocated("service-ips")
                        .await?
                        .contains(&ip.to_string())
                {
                    return Err(StoreError::Conflict(format!(
                        "cluster IP {ip} is already used by another service"
                    )));
                }
            }
            let taken = self.allocated("node-ports").await?;
            for p in &svc.ports {
                if let Some(n) = p.node_port {
                    if !old_ports.contains(&n) && taken.contains(&n.to_string()) {
                        return Err(StoreError::Conflict(format!(
                            "node port {n} is already used by another service"
                        )));
                    }
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "service {}: too many concurrent changes, try again",
            svc.id
        )))
    }

    async fn free_ip(&mut self, range: IpNet) -> Result<IpAddr, StoreError> {
        let taken = self.allocated("service-ips").await?;
        // The first address (network + 1) is kept for the API service, as
        // Kubernetes does (10.254.0.1 is `kubernetes` in the article).
        range
            .hosts()
            .skip(1)
            .take(1 << 20)
            .find(|ip| !taken.contains(&ip.to_string()))
            .ok_or_else(|| StoreError::Conflict(format!("no free cluster IP left in {range}")))
    }

    /// Deletes a service, its endpoint set and its allocations.
    pub async fn delete_service(&mut self, id: &ServiceName) -> Result<bool, StoreError> {
        let Some((svc, rev)) = self.get_service(id).await? else {
            return Ok(false);
        };
        let mut ops = vec![
            TxnOp::delete(self.service_key(id), None),
            TxnOp::delete(self.endpoints_key(id), None),
        ];
        if let Some(ip) = svc.cluster_ip {
            ops.push(TxnOp::delete(self.ip_key(ip), None));
        }
        for p in &svc.ports {
            if let Some(n) = p.node_port {
                ops.push(TxnOp::delete(self.node_port_key(n), None));
            }
        }
        let cmp = Compare::mod_revision(self.service_key(id), CompareOp::Equal, rev);
        let resp = self
            .etcd
            .txn(
                &format!("deleting service {id}"),
                Txn::new().when([cmp]).and_then(ops),
            )
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict(format!(
                "service {id} changed meanwhile, try again"
            )));
        }
        Ok(true)
    }

    /// Writes an endpoint set (`expect_rev` 0 = must not exist, `None` =
    /// unconditionally); false when the compare failed.
    pub async fn put_endpoints(
        &mut self,
        set: &EndpointSet,
        expect_rev: Option<i64>,
    ) -> Result<bool, StoreError> {
        let key = self.endpoints_key(&set.service);
        let put = TxnOp::put(key.clone(), set.to_value().to_string(), None);
        let txn = match expect_rev {
            Some(rev) => Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([put]),
            None => Txn::new().and_then([put]),
        };
        let what = format!("writing endpoints of {}", set.service);
        Ok(self.etcd.txn(&what, txn).await?.succeeded())
    }
}

fn free_node_port(taken: &BTreeSet<String>) -> Result<u16, StoreError> {
    NODE_PORT_RANGE
        .into_iter()
        .find(|n| !taken.contains(&n.to_string()))
        .ok_or_else(|| StoreError::Conflict("no free node port left".into()))
}

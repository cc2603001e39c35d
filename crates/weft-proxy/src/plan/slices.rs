//! The endpoint sets known, by Service. Kubernetes splits endpoints over
//! several EndpointSlices per Service (100 endpoints per slice by
//! default, one slice per address family); the planner merges them per
//! service port as kube-proxy does. weft's own store keeps one set per
//! Service, under the Service's name. Pure.

use std::collections::{BTreeMap, HashMap};

use crate::spec::{EndpointSet, ServiceName};

/// A slice's key: its namespace and name, as shared text (the namespace
/// interned, the name one allocation both maps share).
pub type SliceKey = ServiceName;

/// One endpoint set and the key it is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub key: SliceKey,
    pub set: EndpointSet,
}

/// The slices known, by Service and by slice (a change looks up one
/// Service's slices without a scan of the cluster's: at 10,000 Services
/// under churn that scan was most of the proxy's CPU). The sync loop's
/// catalog holds the only copy; a source keeps none once it has handed
/// its first listing over.
#[derive(Debug, Default, Clone)]
pub struct Slices {
    /// (a Service has one or a few slices: a vector sorted by key costs a
    /// fraction of a map's nodes)
    by_service: BTreeMap<ServiceName, Vec<Slice>>,
    /// Which Service each slice belongs to now.
    owner: HashMap<SliceKey, ServiceName>,
}

impl Slices {
    /// Stores slice `key`; returns the Services whose endpoints changed
    /// (the slice may have moved from one Service to another).
    pub fn put(&mut self, key: SliceKey, set: EndpointSet) -> Vec<ServiceName> {
        let service = set.service.clone();
        let mut touched = vec![service.clone()];
        if let Some(old) = self.owner.insert(key.clone(), service.clone()) {
            if old != service {
                self.forget(&old, &key);
                touched.push(old);
            }
        }
        let slices = self.by_service.entry(service).or_default();
        match slices.binary_search_by(|s| s.key.cmp(&key)) {
            Ok(i) => slices[i].set = set,
            Err(i) => {
                // most Services have one slice: no room for four
                slices.reserve_exact(1);
                slices.insert(i, Slice { key, set })
            }
        }
        touched
    }

    /// Forgets slice `key`; returns its Service.
    pub fn remove(&mut self, key: &SliceKey) -> Option<ServiceName> {
        let service = self.owner.remove(key)?;
        self.forget(&service, key);
        Some(service)
    }

    fn forget(&mut self, service: &ServiceName, key: &SliceKey) {
        if let Some(slices) = self.by_service.get_mut(service) {
            slices.retain(|s| &s.key != key);
            if slices.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    /// Takes every slice of `service` out.
    pub fn take(&mut self, service: &ServiceName) -> Vec<Slice> {
        let slices = self.by_service.remove(service).unwrap_or_default();
        for s in &slices {
            self.owner.remove(&s.key);
        }
        slices
    }

    /// The slices of `service`, sorted by key (empty when it has none).
    pub fn of(&self, service: &ServiceName) -> &[Slice] {
        self.by_service.get(service).map_or(&[], Vec::as_slice)
    }

    /// How many Services have slices.
    pub fn services(&self) -> usize {
        self.by_service.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Endpoint, EndpointPort, Protocol};

    fn set(service: &str, ips: &[&str], ports: &[(&str, u16)]) -> EndpointSet {
        EndpointSet {
            service: ServiceName::parse(service).expect("name"),
            endpoints: ips
                .iter()
                .map(|ip| Endpoint::ready(ip.parse().expect("ip"), None))
                .collect(),
            ports: ports
                .iter()
                .map(|(name, port)| EndpointPort {
                    name: name.to_string(),
                    protocol: Protocol::Tcp,
                    port: *port,
                })
                .collect(),
        }
    }

    #[test]
    fn slices_group_by_service_and_moves_touch_both_services() {
        let mut s = Slices::default();
        let web = ServiceName::parse("web").expect("name");
        let key = |name: &str| ServiceName::new("default", name);
        s.put(
            key("web-a"),
            set("web", &["172.30.1.2", "172.30.1.3"], &[("", 80)]),
        );
        s.put(
            key("web-b"),
            set("web", &["172.30.2.2", "172.30.1.3"], &[("", 81), ("x", 9)]),
        );
        let m = s.of(&web);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].set.ports.len(), 2);

        let touched = s.put(key("web-b"), set("api", &["172.30.3.2"], &[("", 80)]));
        assert_eq!(touched.len(), 2);
        assert_eq!(s.services(), 2);
        assert_eq!(s.remove(&key("web-a")), Some(web.clone()));
        assert!(s.of(&web).is_empty());
        assert_eq!(s.remove(&key("web-a")), None);

        let api = ServiceName::parse("api").expect("name");
        assert_eq!(s.take(&api).len(), 1);
        assert_eq!(s.services(), 0);
        // the taken slice's owner is gone too: putting it again is new
        assert_eq!(s.put(key("web-b"), set("web", &[], &[])), vec![web]);
    }
}

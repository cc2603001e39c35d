//! The EndpointSlices seen, by Service. Kubernetes splits endpoints over
//! several slices per Service (100 endpoints per slice by default, one
//! slice per address family); the planner merges them per service port
//! as kube-proxy does. Pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::spec::{EndpointSet, ServiceName};

/// A slice's key: its namespace and name, as shared text (the namespace
/// interned, the name one allocation both maps share).
type SliceKey = ServiceName;

/// The slices seen, by Service and by slice (a change looks up one
/// Service's slices without a scan of the cluster's: at 10,000 Services
/// under churn that scan was most of the proxy's CPU).
#[derive(Debug, Default, Clone)]
pub struct Slices {
    /// Shared with the sync loop's catalog (one copy of every endpoint).
    /// (a Service has one or a few slices: a vector sorted by key costs a
    /// fraction of a map's nodes)
    by_service: BTreeMap<ServiceName, Vec<(SliceKey, Arc<EndpointSet>)>>,
    /// Which Service each slice belongs to now.
    owner: HashMap<SliceKey, ServiceName>,
}

impl Slices {
    /// Stores slice `namespace/name`; returns the Services whose endpoints
    /// changed (the slice may have moved from one Service to another).
    pub fn put(&mut self, namespace: &str, name: &str, set: EndpointSet) -> Vec<ServiceName> {
        let key = ServiceName::new(namespace, name);
        let service = set.service.clone();
        let mut touched = vec![service.clone()];
        if let Some(old) = self.owner.insert(key.clone(), service.clone()) {
            if old != service {
                self.forget(&old, &key);
                touched.push(old);
            }
        }
        let slices = self.by_service.entry(service).or_default();
        let set = Arc::new(set);
        match slices.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => slices[i].1 = set,
            Err(i) => {
                // most Services have one slice: no room for four
                slices.reserve_exact(1);
                slices.insert(i, (key, set))
            }
        }
        touched
    }

    /// Forgets slice `namespace/name`; returns its Service.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ServiceName> {
        let key = ServiceName::new(namespace, name);
        let service = self.owner.remove(&key)?;
        self.forget(&service, &key);
        Some(service)
    }

    fn forget(&mut self, service: &ServiceName, key: &SliceKey) {
        if let Some(slices) = self.by_service.get_mut(service) {
            slices.retain(|(k, _)| k != key);
            if slices.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    /// Forgets every slice.
    pub fn clear(&mut self) {
        self.by_service.clear();
        self.owner.clear();
    }

    /// The slices of `service` (by slice name), `None` when it has none.
    pub fn of(&self, service: &ServiceName) -> Option<Vec<Arc<EndpointSet>>> {
        let slices = self.by_service.get(service)?;
        Some(slices.iter().map(|(_, set)| set.clone()).collect())
    }

    /// Every service's slices.
    pub fn all(&self) -> BTreeMap<ServiceName, Vec<Arc<EndpointSet>>> {
        self.by_service
            .iter()
            .map(|(service, slices)| {
                let sets = slices.iter().map(|(_, set)| set.clone()).collect();
                (service.clone(), sets)
            })
            .collect()
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
        s.put(
            "default",
            "web-a",
            set("web", &["172.30.1.2", "172.30.1.3"], &[("", 80)]),
        );
        s.put(
            "default",
            "web-b",
            set("web", &["172.30.2.2", "172.30.1.3"], &[("", 81), ("x", 9)]),
        );
        let m = s.of(&web).expect("slices");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].ports.len(), 2);

        let touched = s.put("default", "web-b", set("api", &["172.30.3.2"], &[("", 80)]));
        assert_eq!(touched.len(), 2);
        assert_eq!(s.all().len(), 2);
        assert_eq!(s.remove("default", "web-a"), Some(web.clone()));
        assert!(s.of(&web).is_none());
        s.clear();
        assert!(s.all().is_empty());
    }
}

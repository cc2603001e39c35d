//! The EndpointSlices seen, by Service. Kubernetes splits endpoints over
//! several slices per Service (100 endpoints per slice by default, one
//! slice per address family); the planner merges them per service port
//! as kube-proxy does. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::spec::{EndpointSet, ServiceName};

/// The slices seen, by namespace and slice name.
#[derive(Debug, Default, Clone)]
pub struct Slices {
    /// Shared with the sync loop's catalog (one copy of every endpoint).
    slices: BTreeMap<(String, String), Arc<EndpointSet>>,
}

impl Slices {
    /// Stores slice `namespace/name`; returns the Services whose endpoints
    /// changed (the slice may have moved from one Service to another).
    pub fn put(&mut self, namespace: &str, name: &str, set: EndpointSet) -> Vec<ServiceName> {
        let key = (namespace.to_string(), name.to_string());
        let mut touched = vec![set.service.clone()];
        if let Some(old) = self.slices.insert(key, Arc::new(set)) {
            if !touched.contains(&old.service) {
                touched.push(old.service.clone());
            }
        }
        touched
    }

    /// Forgets slice `namespace/name`; returns its Service.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ServiceName> {
        self.slices
            .remove(&(namespace.to_string(), name.to_string()))
            .map(|s| s.service.clone())
    }

    /// Forgets every slice.
    pub fn clear(&mut self) {
        self.slices.clear();
    }

    /// The slices of `service` (by slice name), `None` when it has none.
    pub fn of(&self, service: &ServiceName) -> Option<Vec<Arc<EndpointSet>>> {
        let out: Vec<Arc<EndpointSet>> = self
            .slices
            .values()
            .filter(|s| &s.service == service)
            .cloned()
            .collect();
        (!out.is_empty()).then_some(out)
    }

    /// Every service's slices.
    pub fn all(&self) -> BTreeMap<ServiceName, Vec<Arc<EndpointSet>>> {
        let mut out: BTreeMap<ServiceName, Vec<Arc<EndpointSet>>> = BTreeMap::new();
        for set in self.slices.values() {
            out.entry(set.service.clone())
                .or_default()
                .push(set.clone());
        }
        out
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

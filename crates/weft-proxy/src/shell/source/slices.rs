//! A Service's endpoints from all its EndpointSlices. Kubernetes splits
//! endpoints over several slices per Service (100 endpoints per slice by
//! default, one slice per address family); the rule engine wants one
//! [`EndpointSet`] per Service. Pure.

use std::collections::BTreeMap;

use crate::spec::{EndpointSet, ServiceName};

/// The slices seen, by namespace and slice name.
#[derive(Debug, Default, Clone)]
pub struct Slices {
    slices: BTreeMap<(String, String), EndpointSet>,
}

impl Slices {
    /// Stores slice `namespace/name`; returns the Services whose endpoints
    /// changed (the slice may have moved from one Service to another).
    pub fn put(&mut self, namespace: &str, name: &str, set: EndpointSet) -> Vec<ServiceName> {
        let key = (namespace.to_string(), name.to_string());
        let mut touched = vec![set.service.clone()];
        if let Some(old) = self.slices.insert(key, set) {
            if !touched.contains(&old.service) {
                touched.push(old.service);
            }
        }
        touched
    }

    /// Forgets slice `namespace/name`; returns its Service.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ServiceName> {
        self.slices
            .remove(&(namespace.to_string(), name.to_string()))
            .map(|s| s.service)
    }

    /// Forgets every slice.
    pub fn clear(&mut self) {
        self.slices.clear();
    }

    /// The merged endpoints of `service`, `None` when it has no slice.
    /// Endpoints are the union (an address listed by two slices counts
    /// once, as kube-proxy does); ports are the union by name and
    /// protocol, the first slice (by name) winning a conflict.
    pub fn merged(&self, service: &ServiceName) -> Option<EndpointSet> {
        let mut out: Option<EndpointSet> = None;
        for set in self.slices.values().filter(|s| &s.service == service) {
            let Some(acc) = out.as_mut() else {
                out = Some(set.clone());
                continue;
            };
            for e in &set.endpoints {
                if !acc.endpoints.iter().any(|a| a.ip == e.ip) {
                    acc.endpoints.push(e.clone());
                }
            }
            for p in &set.ports {
                if !acc
                    .ports
                    .iter()
                    .any(|a| a.name == p.name && a.protocol == p.protocol)
                {
                    acc.ports.push(p.clone());
                }
            }
        }
        out
    }

    /// The merged endpoints of every Service that has slices.
    pub fn all(&self) -> Vec<EndpointSet> {
        let mut services: Vec<&ServiceName> = self.slices.values().map(|s| &s.service).collect();
        services.sort();
        services.dedup();
        services
            .into_iter()
            .filter_map(|s| self.merged(s))
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
                .map(|ip| Endpoint {
                    ip: ip.parse().expect("ip"),
                    ready: true,
                    node: None,
                })
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
    fn slices_of_a_service_merge_and_moves_touch_both_services() {
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
        let m = s.merged(&web).expect("merged");
        let ips: Vec<String> = m.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["172.30.1.2", "172.30.1.3", "172.30.2.2"]);
        let ports: Vec<(String, u16)> = m.ports.iter().map(|p| (p.name.clone(), p.port)).collect();
        assert_eq!(ports, [("".to_string(), 80), ("x".to_string(), 9)]);

        let touched = s.put("default", "web-b", set("api", &["172.30.3.2"], &[("", 80)]));
        assert_eq!(touched.len(), 2);
        assert_eq!(s.all().len(), 2);
        assert_eq!(s.remove("default", "web-a"), Some(web.clone()));
        assert!(s.merged(&web).is_none());
        s.clear();
        assert!(s.all().is_empty());
    }
}

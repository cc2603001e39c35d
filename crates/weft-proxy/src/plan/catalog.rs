//! The services and endpoint sets the proxy knows, and the port plans they
//! give on one node.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::slices::{Slice, SliceKey, Slices};
use super::{plan_service, PortPlan};
use crate::spec::{EndpointSet, Object, Service, ServiceName};

/// Everything the sync loop knows: the only copy in the proxy (a source
/// hands its listing over and then sends changes).
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub services: BTreeMap<ServiceName, Arc<Service>>,
    /// Each service's endpoint sets.
    pub slices: Slices,
}

/// Objects a re-listing found invalid: each keeps its last good version.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kept {
    pub services: Vec<ServiceName>,
    /// weft's own store: the Services whose endpoint set is kept.
    pub endpoints: Vec<ServiceName>,
}

impl Catalog {
    /// Stores an object of weft's own store (one endpoint set per
    /// service, under the service's name); returns the service it affects.
    pub fn put(&mut self, obj: Object) -> ServiceName {
        match obj {
            Object::Service(s) => self.put_service(Arc::new(s)),
            Object::Endpoints(e) => {
                let id = e.service.clone();
                self.slices.put(id.clone(), e);
                id
            }
        }
    }

    /// Stores a service; returns its name.
    pub fn put_service(&mut self, s: Arc<Service>) -> ServiceName {
        let id = s.id.clone();
        self.services.insert(id.clone(), s);
        id
    }

    /// Stores EndpointSlice `key`; returns the services it changed.
    pub fn put_slice(&mut self, key: SliceKey, set: EndpointSet) -> Vec<ServiceName> {
        self.slices.put(key, set)
    }

    /// Forgets EndpointSlice `key`; returns the service it belonged to.
    pub fn remove_slice(&mut self, key: &SliceKey) -> Option<ServiceName> {
        self.slices.remove(key)
    }

    pub fn remove_service(&mut self, id: &ServiceName) {
        self.services.remove(id);
    }

    /// Forgets the endpoint set weft's own store keeps for `id`.
    pub fn remove_endpoints(&mut self, id: &ServiceName) {
        self.slices.remove(id);
    }

    /// Replaces everything with a fresh listing; what it found invalid
    /// stays as it was.
    pub fn replace(&mut self, mut fresh: Catalog, kept: &Kept) {
        self.keep_services(&mut fresh.services, &kept.services);
        for id in &kept.endpoints {
            for Slice { key, set } in self.slices.take(id) {
                fresh.slices.put(key, set);
            }
        }
        *self = fresh;
    }

    /// Replaces the services with a fresh listing of them; the ones it
    /// found invalid stay as they were.
    pub fn replace_services(
        &mut self,
        mut fresh: BTreeMap<ServiceName, Arc<Service>>,
        kept: &[ServiceName],
    ) {
        self.keep_services(&mut fresh, kept);
        self.services = fresh;
    }

    fn keep_services(
        &mut self,
        fresh: &mut BTreeMap<ServiceName, Arc<Service>>,
        kept: &[ServiceName],
    ) {
        for id in kept {
            if let Some(s) = self.services.remove(id) {
                fresh.insert(id.clone(), s);
            }
        }
    }

    /// The endpoint sets of service `id`.
    pub fn slices(&self, id: &ServiceName) -> &[Slice] {
        self.slices.of(id)
    }

    /// The port plans of one service (empty when it does not exist).
    pub fn plan(&self, id: &ServiceName, node: &str) -> Vec<PortPlan> {
        self.services
            .get(id)
            .map(|s| plan_service(s, self.slices(id), node))
            .unwrap_or_default()
    }

    /// The port plans of every service.
    pub fn plan_all(&self, node: &str) -> Vec<PortPlan> {
        let services: Vec<&Arc<Service>> = self.services.values().collect();
        crate::halves::map_halves(&services, |s| plan_service(s, self.slices(&s.id), node))
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_documents;

    const OBJECTS: &str = "\
kind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.254.0.10, ports: [{port: 80}]}\n---\n\
kind: Service\nmetadata: {name: api}\nspec: {clusterIP: 10.254.0.11, ports: [{port: 80}]}\n---\n\
kind: EndpointSlice\nmetadata: {name: web, labels: {kubernetes.io/service-name: web}}\n\
addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [100.64.1.2]}]\n---\n\
kind: EndpointSlice\nmetadata: {name: api, labels: {kubernetes.io/service-name: api}}\n\
addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [100.64.2.2]}]\n";

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for o in parse_documents(OBJECTS, "test").expect("valid") {
            c.put(o);
        }
        c
    }

    #[test]
    fn a_relisting_replaces_everything_but_what_it_found_invalid() {
        let (web, api) = (
            ServiceName::new("default", "web"),
            ServiceName::new("default", "api"),
        );
        let mut c = catalog();
        // the listing found web's Service and api's endpoints invalid
        let mut fresh = catalog();
        fresh.remove_service(&web);
        fresh.remove_endpoints(&api);
        fresh.remove_service(&api);
        let kept = Kept {
            services: vec![web.clone()],
            endpoints: vec![api.clone()],
        };
        c.replace(fresh, &kept);
        assert_eq!(c.services.keys().collect::<Vec<_>>(), [&web]);
        assert_eq!(c.slices(&web).len(), 1);
        assert_eq!(c.slices(&api).len(), 1);
        assert_eq!(c.plan(&web, "n1").len(), 1);

        let mut services = catalog().services;
        services.remove(&web);
        c.replace_services(services, std::slice::from_ref(&web));
        assert_eq!(c.services.len(), 2);
    }
}

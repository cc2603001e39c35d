//! The services and endpoint sets the proxy knows, and the port plans they
//! give on one node.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{plan_service, PortPlan};
use crate::spec::{EndpointSet, Object, Service, ServiceName};

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Shared with the source that keeps them, as the slices are.
    pub services: BTreeMap<ServiceName, Arc<Service>>,
    /// Each service's EndpointSlices (shared with the source that keeps
    /// them).
    pub endpoints: BTreeMap<ServiceName, Vec<Arc<EndpointSet>>>,
}

impl Catalog {
    /// Stores an object; returns the service it affects.
    pub fn put(&mut self, obj: Object) -> ServiceName {
        match obj {
            Object::Service(s) => self.put_service(Arc::new(s)),
            Object::Endpoints(e) => {
                let id = e.service.clone();
                self.endpoints.insert(id.clone(), vec![Arc::new(e)]);
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

    /// Replaces the slices of service `id`.
    pub fn put_slices(&mut self, id: ServiceName, slices: Vec<Arc<EndpointSet>>) {
        self.endpoints.insert(id, slices);
    }

    pub fn remove_service(&mut self, id: &ServiceName) {
        self.services.remove(id);
    }

    pub fn remove_endpoints(&mut self, id: &ServiceName) {
        self.endpoints.remove(id);
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
        self.services
            .values()
            .flat_map(|s| plan_service(s, self.slices(&s.id), node))
            .collect()
    }

    fn slices(&self, id: &ServiceName) -> &[Arc<EndpointSet>] {
        self.endpoints.get(id).map_or(&[], Vec::as_slice)
    }
}

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
    /// Which Service each slice belongs to, for the slices whose names do
    /// not say it. Kubernetes names a Service's slices `<service>-<suffix>`
    /// and weft's store names its one set after its Service, so a slice's
    /// Service is nearly always found from its name; a map of every
    /// slice's Service was 1 MiB at 10,000 Services.
    unnamed_owner: HashMap<SliceKey, ServiceName>,
}

/// Whether `slice`'s name says it belongs to `service`: it is the
/// Service's name, or that name and a dash.
fn named_after(slice: &SliceKey, service: &ServiceName) -> bool {
    slice.namespace == service.namespace
        && slice
            .name
            .strip_prefix(&*service.name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

impl Slices {
    /// Stores slice `key`; returns the Services whose endpoints changed
    /// (the slice may have moved from one Service to another).
    pub fn put(&mut self, key: SliceKey, set: EndpointSet) -> Vec<ServiceName> {
        let service = set.service.clone();
        let mut touched = vec![service.clone()];
        if let Some(slices) = self.by_service.get_mut(&service) {
            if let Ok(i) = slices.binary_search_by(|s| s.key.cmp(&key)) {
                slices[i].set = set;
                return touched;
            }
        }
        if let Some(old) = self.remove(&key) {
            touched.push(old);
        }
        if !named_after(&key, &service) {
            self.unnamed_owner.insert(key.clone(), service.clone());
        }
        let slices = self.by_service.entry(service).or_default();
        if let Err(i) = slices.binary_search_by(|s| s.key.cmp(&key)) {
            // most Services have one slice: no room for four
            slices.reserve_exact(1);
            slices.insert(i, Slice { key, set })
        }
        touched
    }

    /// The Service slice `key` belongs to, if it is known.
    fn owner(&self, key: &SliceKey) -> Option<ServiceName> {
        if let Some(service) = self.unnamed_owner.get(key) {
            return Some(service.clone());
        }
        let name = &*key.name;
        let ends = std::iter::once(name.len()).chain(name.match_indices('-').map(|(i, _)| i));
        ends.map(|end| ServiceName {
            namespace: key.namespace.clone(),
            name: name[..end].into(),
        })
        .find(|service| {
            self.by_service
                .get(service)
                .is_some_and(|slices| slices.binary_search_by(|s| s.key.cmp(key)).is_ok())
        })
    }

    /// Forgets slice `key`; returns its Service.
    pub fn remove(&mut self, key: &SliceKey) -> Option<ServiceName> {
        let service = self.owner(key)?;
        self.unnamed_owner.remove(key);
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
        if !self.unnamed_owner.is_empty() {
            for s in &slices {
                self.unnamed_owner.remove(&s.key);
            }
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
                    name: crate::spec::port_name(name),
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

    #[test]
    fn slices_not_named_after_their_service_are_found_too() {
        let mut s = Slices::default();
        let name = |n: &str| ServiceName::parse(n).expect("name");
        let key = |n: &str| ServiceName::new("default", n);
        // named after a Service with a dash in its name, and one that is not
        s.put(key("web-x-1"), set("web-x", &["172.30.1.2"], &[("", 80)]));
        s.put(key("custom"), set("web", &["172.30.1.3"], &[("", 80)]));
        s.put(key("web"), set("web", &["172.30.1.4"], &[("", 80)]));
        assert_eq!(s.unnamed_owner.len(), 1);
        assert_eq!(s.of(&name("web")).len(), 2);
        // moved: both Services are touched, the old one loses it
        assert_eq!(
            s.put(key("custom"), set("web-x", &[], &[])),
            vec![name("web-x"), name("web")]
        );
        assert_eq!(s.of(&name("web")).len(), 1);
        assert_eq!(s.remove(&key("custom")), Some(name("web-x")));
        assert!(s.unnamed_owner.is_empty());
        // a name that fits two Services: the one holding it owns it
        s.put(key("web-x-1"), set("web", &[], &[]));
        assert_eq!(s.of(&name("web-x")).len(), 0);
        assert_eq!(s.unnamed_owner.len(), 0);
        assert_eq!(s.remove(&key("web-x-1")), Some(name("web")));
        assert_eq!(s.remove(&key("web")), Some(name("web")));
        assert_eq!((s.services(), s.unnamed_owner.len()), (0, 0));
    }
}

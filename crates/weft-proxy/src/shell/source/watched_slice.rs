//! The proxy's watch of EndpointSlices: [`crate::spec::api_slice`]'s lean
//! decoding, as a resource kube-runtime's watcher can list and watch.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use crate::spec::api_slice::ApiSlice;
use crate::spec::{EndpointSet, SpecError};

/// An EndpointSlice from the watch: the fields the proxy reads, and the
/// metadata the watcher needs (name, namespace, resourceVersion).
#[derive(Debug, Clone, Default)]
pub struct WatchedSlice {
    metadata: ObjectMeta,
    slice: ApiSlice,
}

impl<'de> Deserialize<'de> for WatchedSlice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WatchedSlice, D::Error> {
        let slice = ApiSlice::deserialize(d)?;
        let m = &slice.metadata;
        let metadata = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            resource_version: m.resource_version.clone(),
            uid: m.uid.clone(),
            ..ObjectMeta::default()
        };
        Ok(WatchedSlice { metadata, slice })
    }
}

impl kube::Resource for WatchedSlice {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "EndpointSlice".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "discovery.k8s.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "endpointslices".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WatchedSlice {
    /// `namespace`, `name`.
    pub fn key(&self) -> (String, String) {
        self.slice.key()
    }

    /// The trigger time; absent or unreadable (untrusted) is none.
    pub fn trigger_time(&self) -> Option<std::time::SystemTime> {
        let text = self.slice.metadata.trigger_time.as_deref()?;
        let at: jiff::Timestamp = text.parse().ok()?;
        Some(std::time::SystemTime::from(at))
    }

    /// See [`ApiSlice::into_endpoints`].
    pub fn into_endpoints(self) -> Result<Option<EndpointSet>, SpecError> {
        self.slice.into_endpoints()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::api_slice::parse_api_slice;
    use crate::spec::{parse_object, Object};
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    const SLICE: &str = include_str!("../../../../../fuzz/corpus/watched_slice/seed-slice.json");

    /// The lean decoding gives what the typed object's round trip gave.
    #[test]
    fn lean_slice_equals_the_typed_round_trip() {
        let lean = parse_api_slice(SLICE.as_bytes()).expect("parses");
        let typed: EndpointSlice = serde_json::from_str(SLICE).expect("typed");
        let mut v = serde_json::to_value(&typed).expect("value");
        v["kind"] = "EndpointSlice".into();
        let Object::Endpoints(expected) = parse_object(&v, "typed").expect("spec") else {
            panic!("not endpoints");
        };
        assert_eq!(lean, Some(expected));
    }

    #[test]
    fn the_watcher_sees_name_namespace_and_version() {
        let s: WatchedSlice = serde_json::from_str(SLICE).expect("parses");
        assert_eq!(s.metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
        assert!(s.trigger_time().is_some());
        assert_eq!(s.key(), ("shop".to_string(), "web-abc".to_string()));
    }
}

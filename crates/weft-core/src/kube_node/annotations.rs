//! flannel's lease as Node annotations (`-kube-subnet-mgr`): their names
//! under `-kube-annotation-prefix`, the values this node publishes — byte
//! for byte what flanneld writes, so that each reads the other's Nodes —
//! and a Node read back as a lease. Pure: no API calls here.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lease::{Lease, LeaseAttrs, LeaseKey, VxlanLeaseData};
use crate::mac::MacAddr;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::value::RawValue;

/// The annotation names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationNames {
    pub kube_subnet_manager: String,
    pub backend_type: String,
    pub backend_data: String,
    pub backend_v6_data: String,
    pub public_ip: String,
    pub public_ipv6: String,
    pub public_ip_overwrite: String,
    pub public_ipv6_overwrite: String,
    pub node_public_ip: String,
    pub node_public_ipv6: String,
}

/// The parts of a Node the lease is made of.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
    pub pod_cidr: Option<&'a str>,
    pub pod_cidrs: &'a [String],
}

impl<'a> NodeView<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.annotations.get(name).map(String::as_str)
    }
}

impl AnnotationNames {
    /// flanneld's rules for `-kube-annotation-prefix`: at most one `/`; a
    /// prefix without one gets a `/` appended, one that does not end in
    /// `/` or `-` gets a `-`; the result must look like `fqdn/[a-z0-9_-]*`.
    pub fn new(prefix: &str) -> Result<AnnotationNames, String> {
        let mut p = prefix.to_string();
        match p.matches('/').count() {
            0 => p.push('/'),
            1 => {}
            _ => {
                return Err(format!(
                    "-kube-annotation-prefix {prefix:?}: at most one '/' is allowed"
                ))
            }
        }
        if !p.ends_with('/') && !p.ends_with('-') {
            p.push('-');
        }
        // anchored at the start, unlike flanneld's: a prefix that only ends
        // well ("Example.com/x") would be refused by the API server later
        let shape = regex_lite::Regex::new(r"^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$")
            .map_err(|e| e.to_string())?;
        if !shape.is_match(&p) {
            return Err(format!(
                "-kube-annotation-prefix {prefix:?}: must look like fqdn/[a-z0-9_-]* (lower case)"
            ));
        }
        let n = |s: &str| format!("{p}{s}");
        Ok(AnnotationNames {
            kube_subnet_manager: n("kube-subnet-manager"),
            backend_type: n("backend-type"),
            backend_data: n("backend-data"),
            backend_v6_data: n("backend-v6-data"),
            public_ip: n("public-ip"),
            public_ipv6: n("public-ipv6"),
            public_ip_overwrite: n("public-ip-overwrite"),
            public_ipv6_overwrite: n("public-ipv6-overwrite"),
            node_public_ip: n("node-public-ip"),
            node_public_ipv6: n("node-public-ipv6"),
        })
    }

    /// The annotations this node must carry for `attrs`, given what it
    /// carries now (an operator's `public-ip-overwrite` replaces the
    /// published address). Mirrors flanneld's choices: vxlan publishes a
    /// family only with its backend data; host-gw publishes IPv6 only with
    /// a public IPv6; absent backend data is the text `null`.
    pub fn publish(
        &self,
        attrs: &LeaseAttrs,
        current: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let raw = |v: &Option<Box<RawValue>>| {
            v.as_ref()
                .map_or_else(|| "null".to_string(), |r| r.get().to_string())
        };
        let (bd, v6bd) = (raw(&attrs.backend_data), raw(&attrs.backend_v6_data));
        let bt = attrs.backend_type.clone().unwrap_or_default();
        let overwrite = |name: &str| current.get(name).filter(|v| !v.is_empty()).cloned();
        let mut out = BTreeMap::new();
        out.insert(self.backend_type.clone(), bt.clone());
        let has_data = bd != "null";
        if bt != "vxlan" || has_data {
            out.insert(self.backend_data.clone(), bd);
            let ip =
                overwrite(&self.public_ip_overwrite).unwrap_or_else(|| attrs.public_ip.to_string());
            out.insert(self.public_ip.clone(), ip);
        }
        let v6_data = v6bd != "null";
        let v6 = match bt.as_str() {
            "vxlan" => v6_data,
            "wireguard" => v6_data && attrs.public_ipv6.is_some(),
            "host-gw" | "extension" => attrs.public_ipv6.is_some(),
            _ => false,
        };
        if v6 {
            out.insert(self.backend_v6_data.clone(), v6bd);
            let ip = overwrite(&self.public_ipv6_overwrite)
                .or_else(|| attrs.public_ipv6.map(|a| a.to_string()));
            if let Some(ip) = ip {
                out.insert(self.public_ipv6.clone(), ip);
            }
        }
        out.insert(self.kube_subnet_manager.clone(), "true".into());
        out
    }

    /// What of [`AnnotationNames::publish`] differs from `current`: the
    /// body of the one patch to send (empty: nothing to send).
    pub fn patch(
        &self,
        attrs: &LeaseAttrs,
        current: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        self.publish(attrs, current)
            .into_iter()
            .filter(|(k, v)| current.get(k) != Some(v))
            .collect()
    }

    /// The lease a Node holds, when it is managed by flannel
    /// (`kube-subnet-manager: "true"`); the families read are those the
    /// network enables, as flanneld does.
    pub fn lease_of(&self, node: &NodeView, v4: bool, v6: bool) -> Result<Option<Lease>, String> {
        if node.get(&self.kube_subnet_manager) != Some("true") {
            return Ok(None);
        }
        let field = |name: &str, msg: &str| format!("Node {}: annotation {name}: {msg}", node.name);
        let (cidr4, cidr6) = pod_cidrs(node)?;
        let mut key = LeaseKey { v4: None, v6: None };
        let mut attrs = LeaseAttrs {
            public_ip: Ipv4Addr::UNSPECIFIED,
            public_ipv6: None,
            backend_type: node
                .get(&self.backend_type)
                .filter(|t| !t.is_empty())
                .map(String::from),
            backend_data: None,
            backend_v6_data: None,
        };
        if v4 {
            key.v4 = Some(
                cidr4.ok_or_else(|| format!("Node {}: spec.podCIDRs: no IPv4 range", node.name))?,
            );
            let text = node.get(&self.public_ip).unwrap_or("");
            attrs.public_ip = text
                .parse()
                .map_err(|_| field(&self.public_ip, &format!("{text:?} is not an IPv4 address")))?;
            attrs.backend_data = raw_json(node.get(&self.backend_data))
                .map_err(|e| field(&self.backend_data, &e))?;
        }
        if v6 {
            key.v6 = Some(
                cidr6.ok_or_else(|| format!("Node {}: spec.podCIDRs: no IPv6 range", node.name))?,
            );
            let text = node.get(&self.public_ipv6).unwrap_or("");
            attrs.public_ipv6 = Some(text.parse::<Ipv6Addr>().map_err(|_| {
                field(
                    &self.public_ipv6,
                    &format!("{text:?} is not an IPv6 address"),
                )
            })?);
            attrs.backend_v6_data = raw_json(node.get(&self.backend_v6_data))
                .map_err(|e| field(&self.backend_v6_data, &e))?;
        }
        Ok(Some(Lease { key, attrs }))
    }

    /// The VTEP MACs in this node's backend data (flanneld's stored MACs).
    pub fn stored_macs(&self, node: &NodeView) -> (Option<MacAddr>, Option<MacAddr>) {
        let mac = |name: &str| {
            node.get(name)
                .and_then(|t| serde_json::from_str::<VxlanLeaseData>(t).ok())
                .map(|d| d.vtep_mac)
        };
        (mac(&self.backend_data), mac(&self.backend_v6_data))
    }

    /// `node-public-ip` / `node-public-ipv6`: addresses an operator stored
    /// for this node, used instead of `-public-ip` / `-public-ipv6`.
    pub fn stored_public_ips(&self, node: &NodeView) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        (
            node.get(&self.node_public_ip).and_then(|t| t.parse().ok()),
            node.get(&self.node_public_ipv6)
                .and_then(|t| t.parse().ok()),
        )
    }
}

/// Backend data as stored: absent or empty is none, else it must be JSON.
fn raw_json(text: Option<&str>) -> Result<Option<Box<RawValue>>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => RawValue::from_string(t.to_string())
            .map(Some)
            .map_err(|e| format!("not JSON: {e}")),
    }
}

/// A Node's pod ranges: `spec.podCIDRs` (at most one per family), else
/// `spec.podCIDR`; `(None, None)` when none is assigned yet.
pub fn pod_cidrs(node: &NodeView) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), String> {
    let single: Vec<&str> = node
        .pod_cidr
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect();
    let list: Vec<&str> = if node.pod_cidrs.is_empty() {
        single
    } else {
        node.pod_cidrs.iter().map(String::as_str).collect()
    };
    if list.len() > 2 {
        return Err(format!(
            "Node {}: spec.podCIDRs: {} ranges; at most one IPv4 and one IPv6",
            node.name,
            list.len()
        ));
    }
    let (mut v4, mut v6) = (None, None);
    for c in list {
        match c.parse::<IpNet>() {
            Ok(IpNet::V4(n)) if v4.is_none() => v4 = Some(n.trunc()),
            Ok(IpNet::V6(n)) if v6.is_none() => v6 = Some(n.trunc()),
            Ok(_) => {
                return Err(format!(
                    "Node {}: spec.podCIDRs: two ranges of one family",
                    node.name
                ))
            }
            Err(_) => {
                return Err(format!(
                    "Node {}: spec.podCIDRs: {c:?} is not an address range",
                    node.name
                ))
            }
        }
    }
    Ok((v4, v6))
}

#[cfg(test)]
mod tests;

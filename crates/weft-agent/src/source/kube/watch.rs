//! What the agent does with every Node ([`weft_kube::follow`]: a list,
//! then a watch from its resourceVersion). Each Node is turned into a lease as it
//! arrives and the Node itself dropped; between watch events nothing per
//! Node is kept here but the names of unreadable ones (a listing holds
//! its leases until it is complete). This host's own Node is also checked
//! against what it publishes.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use tokio::sync::{mpsc, Notify};
use weft_core::lease::{Lease, LeaseKey};

use super::{follow_nodes, KubeSource};
use crate::source::claims::Claims;
use crate::source::{Change, Update};
use crate::Never;
use weft_core::kube_node::annotations::{pod_cidrs, AnnotationNames, NodeView};
use weft_core::kube_node::proto::Node;
use weft_kube::follow::Event;

impl KubeSource {
    /// Sends every managed Node's lease, then each change, until a fatal
    /// condition (this host's Node deleted, a refused patch).
    pub async fn follow(
        mut self: Box<Self>,
        own: LeaseKey,
        updates: mpsc::Sender<Update>,
        ready: Arc<Notify>,
    ) -> Result<Never> {
        let mut events = match self.events.take() {
            Some(events) => events,
            None => follow_nodes(self.nodes.clone().into_client()),
        };
        let mut building: Option<Vec<(String, Lease)>> = None;
        let mut claims = Claims::new(&self.name, own);
        let mut marked = !self.set_network_unavailable;
        let mut failing = false;
        let mut own_listed = false;
        // The first listing is also sent in parts as it arrives, so the
        // kernel is programmed while the rest is on its way (the complete
        // listing follows, as after any re-listing).
        let mut listed_once = false;
        let mut early: Vec<Change> = Vec::new();
        let mut listing_since = std::time::Instant::now();
        loop {
            let ev = tokio::select! {
                biased;
                ev = events.recv() => ev,
                // nothing more has arrived yet: program what came while
                // the API server sends the rest
                _ = std::future::ready(()), if !early.is_empty() => {
                    send(&updates, Update::Changes(std::mem::take(&mut early))).await?;
                    continue;
                }
                _ = ready.notified(), if !marked => {
                    self.mark_network_available().await;
                    marked = true;
                    continue;
                }
            };
            let ev = match ev {
                None => bail!("the Node watch ended"),
                Some(Err(e)) => {
                    if !failing {
                        tracing::warn!("{e}; retrying with backoff (routes stay in place)");
                        failing = true;
                    }
                    continue;
                }
                Some(Ok(ev)) => ev,
            };
            tracing::debug!(event = event_name(&ev), "Node watch");
            if failing {
                tracing::info!("Kubernetes API answering again");
                failing = false;
            }
            let update = match ev {
                Event::Init => {
                    listing_since = std::time::Instant::now();
                    // a listing that failed part-way starts again from here
                    own_listed = false;
                    self.warned.clear();
                    building = Some(Vec::new());
                    None
                }
                Event::InitApply(n) => {
                    own_listed |= n.name() == self.name;
                    self.saw(&n).await?;
                    if let (Some(b), Some(l)) = (building.as_mut(), self.lease(&n)) {
                        if !listed_once {
                            let (changes, why) = claims.put(n.name(), l.clone());
                            early.extend(changes);
                            self.tell(why);
                        }
                        b.push((n.name().to_string(), l));
                    }
                    None
                }
                Event::InitDone => {
                    // deleted while the watch was down: absent from the listing
                    if !own_listed {
                        bail!("{}", self.deleted());
                    }
                    own_listed = false;
                    listed_once = true;
                    if !early.is_empty() {
                        send(&updates, Update::Changes(std::mem::take(&mut early))).await?;
                    }
                    tracing::info!(
                        nodes = building.as_ref().map_or(0, Vec::len),
                        ms = listing_since.elapsed().as_secs_f64() * 1e3,
                        "listed the Nodes"
                    );
                    building.take().map(|listing| {
                        let (leases, refused) = claims.reset(listing);
                        refused.into_iter().for_each(|why| self.tell(Some(why)));
                        Update::All(leases)
                    })
                }
                Event::Apply(n) => {
                    self.saw(&n).await?;
                    self.lease(&n).and_then(|l| {
                        let (changes, why) = claims.put(n.name(), l);
                        self.tell(why);
                        (!changes.is_empty()).then_some(Update::Changes(changes))
                    })
                }
                Event::Delete(n) => {
                    if n.name() == self.name {
                        bail!("{}", self.deleted());
                    }
                    self.warned.remove(n.name());
                    let prefix = format!("Node {}:", n.name());
                    self.told.retain(|t| !t.starts_with(&prefix));
                    let changes = removed(&n, &own)
                        .map(|key| claims.remove(n.name(), &key))
                        .unwrap_or_default();
                    (!changes.is_empty()).then_some(Update::Changes(changes))
                }
            };
            if let Some(u) = update {
                send(&updates, u).await?;
            }
        }
    }

    /// Warns once of a Node left out because its pod range is taken.
    fn tell(&mut self, why: Option<String>) {
        if let Some(why) = why {
            if self.told.insert(why.clone()) {
                tracing::warn!("{why}");
                crate::metrics::get()
                    .leases_refused_total
                    .get_or_create(&crate::metrics::Reason {
                        reason: "pod_range_taken",
                    })
                    .inc();
            }
        }
    }

    fn deleted(&self) -> String {
        format!(
            "this host's Node {} was deleted; exiting so that the agent restarts with the Node's new pod range",
            self.name
        )
    }

    /// This host's Node changed: re-publish when it no longer says what
    /// this node publishes.
    async fn saw(&mut self, n: &Node) -> Result<()> {
        if n.name() != self.name {
            return Ok(());
        }
        let known = self.node.metadata.resource_version.as_deref().unwrap_or("");
        if older(n.resource_version(), known) {
            // a listing from the watch cache can predate this node's own
            // patch: its copy of the Node is not a drift to correct
            return Ok(());
        }
        self.node = n.clone().into();
        self.announce().await
    }

    /// The lease of a Node, when it holds one; a Node whose annotations
    /// cannot be read, or whose pod range lies outside the network, is
    /// logged once and left out (a change to it leaves its routes as they
    /// were; a re-listing without it removes them).
    fn lease(&mut self, n: &Node) -> Option<Lease> {
        match node_lease(&self.names, self.networks, &n.view()) {
            Ok(l) => {
                self.warned.remove(n.name());
                l
            }
            Err(e) => {
                if self.warned.insert(n.name().to_string()) {
                    tracing::warn!("ignoring {e}");
                }
                None
            }
        }
    }
}

/// Whether resourceVersion `a` is older than `b`. They are opaque to
/// clients, but every API server on etcd gives etcd revisions (decimal
/// numbers); anything else is never called older.
fn older(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

/// The lease a Node holds, if any, read as the agent reads it: its
/// annotations, and its pod ranges inside the network (IPv4, IPv6).
pub(super) fn node_lease(
    names: &AnnotationNames,
    (net4, net6): (Option<IpNet>, Option<IpNet>),
    n: &NodeView,
) -> std::result::Result<Option<Lease>, String> {
    match names.lease_of(n, net4.is_some(), net6.is_some())? {
        Some(l) => inside(&l, net4, net6)
            .map(|_| Some(l))
            .map_err(|e| format!("Node {}: spec.podCIDRs: {e}", n.name)),
        None => Ok(None),
    }
}

/// A peer's pod ranges must lie in the network: routes elsewhere are not
/// the agent's to keep (a full pass would neither see nor remove them).
fn inside(l: &Lease, net4: Option<IpNet>, net6: Option<IpNet>) -> std::result::Result<(), String> {
    let ranges = [
        (l.key.v4.map(IpNet::V4), net4),
        (l.key.v6.map(IpNet::V6), net6),
    ];
    for (range, net) in ranges {
        if let (Some(r), Some(n)) = (range, net) {
            if !n.contains(&r) {
                return Err(format!("pod range {r}: outside the network {n}"));
            }
        }
    }
    Ok(())
}

async fn send(updates: &mpsc::Sender<Update>, u: Update) -> Result<()> {
    updates
        .send(u)
        .await
        .map_err(|_| anyhow!("the data path stopped taking lease updates"))
}

/// The lease key a deleted Node held (its pod ranges).
fn removed(n: &Node, own: &LeaseKey) -> Option<LeaseKey> {
    let (v4, v6) = pod_cidrs(&n.view()).ok()?;
    let key = LeaseKey {
        v4: v4.filter(|_| own.v4.is_some()),
        v6: v6.filter(|_| own.v6.is_some()),
    };
    key.primary().map(|_| key)
}

fn event_name(ev: &Event<Node>) -> String {
    match ev {
        Event::Init => "init".into(),
        Event::InitApply(n) => format!("listed {}", n.name()),
        Event::InitDone => "listed all".into(),
        Event::Apply(n) => format!("changed {}", n.name()),
        Event::Delete(n) => format!("deleted {}", n.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::lease::LeaseAttrs;

    #[test]
    fn only_decimal_versions_are_compared() {
        assert!(older("5237", "5262"));
        assert!(!older("5262", "5262"));
        assert!(!older("99", "5"));
        assert!(!older("abc", "5262"));
        assert!(!older("5", ""));
    }

    #[test]
    fn a_peer_range_outside_the_network_is_refused() {
        let lease = |key: &str| Lease {
            key: key.parse().expect("key"),
            attrs: LeaseAttrs::host_gw("198.18.0.12".parse().expect("ip")),
        };
        let net4 = Some("172.30.0.0/16".parse().expect("net"));
        assert_eq!(inside(&lease("172.30.9.0-24"), net4, None), Ok(()));
        let e = inside(&lease("10.244.9.0-24"), net4, None).expect_err("outside");
        assert!(
            e.contains("10.244.9.0/24") && e.contains("172.30.0.0/16"),
            "{e}"
        );
    }
}

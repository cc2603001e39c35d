//! Remote leases into WireGuard peers: each lease's planned peers are
//! set on this host's devices; a peer whose key a lease no longer names
//! (the remote host made a new key, or its lease went away) is removed.

use std::collections::{HashMap, HashSet};

use weft_core::lease::LeaseKey;
use weft_core::plan::wireguard::{WgDeviceId, WgPeer, WgPeerPlanner};
use weft_core::{WgKey, WgSecret};

use super::Device;

pub struct WgSink {
    pub planner: WgPeerPlanner,
    devices: Vec<(WgDeviceId, Device)>,
    psk: Option<WgSecret>,
    keepalive: u16,
    installed: HashMap<LeaseKey, Vec<(WgDeviceId, WgKey)>>,
    /// Leases seen since [`WgSink::begin_reset`].
    resetting: Option<HashSet<LeaseKey>>,
}

impl WgSink {
    pub fn new(
        planner: WgPeerPlanner,
        devices: Vec<(WgDeviceId, Device)>,
        psk: Option<WgSecret>,
        keepalive: u16,
    ) -> Self {
        WgSink {
            planner,
            devices,
            psk,
            keepalive,
            installed: HashMap::new(),
            resetting: None,
        }
    }

    fn device(&self, id: WgDeviceId) -> Option<&Device> {
        self.devices.iter().find(|(d, _)| *d == id).map(|(_, w)| w)
    }

    /// Remote leases whose peers are set.
    pub fn lease_count(&self) -> usize {
        self.installed.len()
    }

    /// Sets a lease's peers, removing those of its keys no longer named.
    pub fn apply(&mut self, lease: LeaseKey, peers: Vec<WgPeer>) {
        if let Some(seen) = &mut self.resetting {
            seen.insert(lease);
        }
        let mut now = Vec::new();
        for p in peers {
            let Some(dev) = self.device(p.device) else {
                continue;
            };
            let known = self
                .installed
                .get(&lease)
                .is_some_and(|v| v.contains(&(p.device, p.key)));
            if !known {
                tracing::info!(device = p.device.name(), subnets = ?p.allowed_ips, endpoint = %p.endpoint, peer = %p.key, "WireGuard peer added");
            }
            dev.set_peer(&p, self.psk.as_ref(), self.keepalive);
            now.push((p.device, p.key));
        }
        let before = self
            .installed
            .insert(lease, now.clone())
            .unwrap_or_default();
        for stale in before.into_iter().filter(|s| !now.contains(s)) {
            self.drop_peer(stale, "its lease names another key now");
        }
    }

    /// A lease went away: its peers go.
    pub fn remove(&mut self, lease: &LeaseKey) {
        for p in self.installed.remove(lease).unwrap_or_default() {
            self.drop_peer(p, "its lease is gone");
        }
    }

    /// Removes a peer unless another lease still names it.
    fn drop_peer(&self, (id, key): (WgDeviceId, WgKey), why: &str) {
        if self.installed.values().any(|v| v.contains(&(id, key))) {
            return;
        }
        if let Some(dev) = self.device(id) {
            if dev.remove_peer(&key) {
                tracing::info!(device = id.name(), peer = %key, "WireGuard peer removed: {why}");
            }
        }
    }

    /// A full re-list starts: leases not applied again before
    /// [`WgSink::end_reset`] are removed then (sessions of the others stay).
    pub fn begin_reset(&mut self) {
        self.resetting = Some(HashSet::new());
    }

    pub fn end_reset(&mut self) {
        let Some(seen) = self.resetting.take() else {
            return;
        };
        let gone: Vec<LeaseKey> = self
            .installed
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }
}

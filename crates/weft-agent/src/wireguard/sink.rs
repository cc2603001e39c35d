//! Remote leases into WireGuard peers: each lease's planned peers are
//! set on this host's devices; a peer whose key a lease no longer names
//! (the remote host made a new key, or its lease went away) is removed.
//!
//! A key identifies one peer, so a lease naming this host's own public key
//! or one another lease already names (a copied key file: a cloned
//! `/run/flannel/wgkey`) is not configured: the first lease keeps the key,
//! the other waits and is configured when that lease goes.

use std::collections::HashMap;
use std::net::IpAddr;

use weft_core::lease::LeaseKey;
use weft_core::plan::relisting::Relisting;
use weft_core::plan::wireguard::{WgDeviceId, WgPeer, WgPeerPlanner};
use weft_core::{WgKey, WgSecret};

use super::Device;

/// What one lease configured.
struct Installed {
    peers: Vec<(WgDeviceId, WgKey)>,
    /// The host behind it (its first peer's endpoint), for messages.
    host: Option<IpAddr>,
}

pub struct WgSink {
    pub planner: WgPeerPlanner,
    devices: Vec<(WgDeviceId, Device)>,
    psk: Option<WgSecret>,
    keepalive: u16,
    own_key: WgKey,
    installed: HashMap<LeaseKey, Installed>,
    /// Leases not configured because their key is taken, with their peers.
    waiting: HashMap<LeaseKey, Vec<WgPeer>>,
    /// Leases named since [`WgSink::begin_reset`].
    relisting: Relisting,
}

impl WgSink {
    pub fn new(
        planner: WgPeerPlanner,
        devices: Vec<(WgDeviceId, Device)>,
        psk: Option<WgSecret>,
        keepalive: u16,
        own_key: WgKey,
    ) -> Self {
        WgSink {
            planner,
            devices,
            psk,
            keepalive,
            own_key,
            installed: HashMap::new(),
            waiting: HashMap::new(),
            relisting: Relisting::default(),
        }
    }

    fn device(&self, id: WgDeviceId) -> Option<&Device> {
        self.devices.iter().find(|(d, _)| *d == id).map(|(_, w)| w)
    }

    /// Remote leases whose peers are set.
    pub fn lease_count(&self) -> usize {
        self.installed.len()
    }

    /// Why `lease`'s `peers` cannot be configured: a key that is this
    /// host's or another configured lease's.
    fn shared_key(&self, lease: &LeaseKey, peers: &[WgPeer]) -> Option<String> {
        let host = |p: &WgPeer| p.endpoint.ip();
        for p in peers {
            if p.key == self.own_key {
                return Some(format!(
                    "lease {lease} ({}) publishes this host's own WireGuard public key {} (a copied key file, such as a cloned /run/flannel/wgkey?); not configured as a peer",
                    host(p),
                    p.key
                ));
            }
            let other = self.installed.iter().find(|(k, v)| {
                *k != lease
                    && v.peers
                        .iter()
                        .any(|(d, key)| *d == p.device && *key == p.key)
            });
            if let Some((other, v)) = other {
                let other_host = v.host.map_or_else(|| "?".into(), |h| h.to_string());
                return Some(format!(
                    "leases {other} ({other_host}) and {lease} ({}) publish the same WireGuard public key {} (a copied key file, such as a cloned /run/flannel/wgkey?); {lease} is not configured as a peer until {other} goes",
                    host(p),
                    p.key
                ));
            }
        }
        None
    }

    /// Sets a lease's peers, removing those of its keys no longer named;
    /// refuses (with why) a lease whose key is taken.
    pub fn apply(&mut self, lease: LeaseKey, peers: Vec<WgPeer>) -> Result<(), String> {
        self.relisting.note(lease);
        if let Some(why) = self.shared_key(&lease, &peers) {
            self.remove_installed(&lease);
            self.waiting.insert(lease, peers);
            return Err(why);
        }
        self.waiting.remove(&lease);
        let mut now = Vec::new();
        let host = peers.first().map(|p| p.endpoint.ip());
        for p in peers {
            let Some(dev) = self.device(p.device) else {
                continue;
            };
            let known = self
                .installed
                .get(&lease)
                .is_some_and(|v| v.peers.contains(&(p.device, p.key)));
            if !known {
                tracing::info!(device = p.device.name(), subnets = ?p.allowed_ips, endpoint = %p.endpoint, peer = %p.key, "WireGuard peer added");
            }
            dev.set_peer(&p, self.psk.as_ref(), self.keepalive);
            now.push((p.device, p.key));
        }
        let before = self
            .installed
            .insert(
                lease,
                Installed {
                    peers: now.clone(),
                    host,
                },
            )
            .map(|i| i.peers)
            .unwrap_or_default();
        for stale in before.into_iter().filter(|s| !now.contains(s)) {
            self.drop_peer(stale, "its lease names another key now");
        }
        Ok(())
    }

    /// A lease went away: its peers go, and a lease waiting for its key
    /// is configured.
    pub fn remove(&mut self, lease: &LeaseKey) {
        self.waiting.remove(lease);
        if !self.remove_installed(lease) {
            return;
        }
        let waiting: Vec<(LeaseKey, Vec<WgPeer>)> =
            self.waiting.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (k, peers) in waiting {
            if self.apply(k, peers).is_ok() {
                tracing::info!(
                    "lease {k}: configured as a WireGuard peer now that lease {lease} is gone"
                );
            }
        }
    }

    /// Removes what `lease` configured; whether it had configured anything.
    fn remove_installed(&mut self, lease: &LeaseKey) -> bool {
        let Some(gone) = self.installed.remove(lease) else {
            return false;
        };
        for p in gone.peers {
            self.drop_peer(p, "its lease is gone");
        }
        true
    }

    /// Removes a peer unless another lease still names it.
    fn drop_peer(&self, (id, key): (WgDeviceId, WgKey), why: &str) {
        if self
            .installed
            .values()
            .any(|v| v.peers.contains(&(id, key)))
        {
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
        self.relisting.begin();
    }

    pub fn end_reset(&mut self) {
        let stale = self
            .relisting
            .end(self.installed.keys().chain(self.waiting.keys()));
        // the waiting ones first: a removal re-applies those still waiting
        self.waiting.retain(|k, _| !stale.contains(k));
        for k in stale
            .iter()
            .filter(|k| self.installed.contains_key(k))
            .copied()
            .collect::<Vec<_>>()
        {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wireguard::device::WgDevice;
    use crate::wireguard::socket::Udp;
    use weft_core::config::WgMode;

    fn sink(own: WgKey) -> (WgSink, Arc<WgDevice>) {
        let dev = Arc::new(WgDevice::new(
            "wg-sink-test",
            WgSecret::private_from_random([5; 32]),
            Udp::bind(0).expect("udp"),
        ));
        let planner = WgPeerPlanner {
            mode: WgMode::Separate,
            listen_port: 51820,
            listen_port_v6: 51821,
            v4: true,
            v6: false,
            local_v4: None,
            local_v6: None,
        };
        let devices = vec![(WgDeviceId::Main, Device::User(dev.clone()))];
        (WgSink::new(planner, devices, None, 0, own), dev)
    }

    fn peer(key: u8, host: &str, subnet: &str) -> WgPeer {
        WgPeer {
            device: WgDeviceId::Main,
            key: WgKey([key; 32]),
            endpoint: format!("{host}:51820").parse().expect("endpoint"),
            allowed_ips: vec![subnet.parse().expect("subnet")],
        }
    }

    fn lease(s: &str) -> LeaseKey {
        s.parse().expect("key")
    }

    #[test]
    fn a_key_two_leases_publish_is_configured_for_the_first_only() {
        let (mut s, dev) = sink(WgKey([1; 32]));
        let (first, second) = (lease("172.30.2.0-24"), lease("172.30.3.0-24"));
        assert_eq!(
            s.apply(first, vec![peer(9, "198.18.0.12", "172.30.2.0/24")]),
            Ok(())
        );
        let why = s
            .apply(second, vec![peer(9, "198.18.0.13", "172.30.3.0/24")])
            .expect_err("a copied key");
        assert_eq!(
            why,
            format!(
                "leases 172.30.2.0-24 (198.18.0.12) and 172.30.3.0-24 (198.18.0.13) publish the same WireGuard public key {} (a copied key file, such as a cloned /run/flannel/wgkey?); 172.30.3.0-24 is not configured as a peer until 172.30.2.0-24 goes",
                WgKey([9; 32])
            )
        );
        // the first lease's peer is untouched: its endpoint and subnet only
        let got = crate::wireguard::uapi::get(&dev);
        assert!(got.contains("endpoint=198.18.0.12:51820"), "{got}");
        assert!(!got.contains("172.30.3.0/24"), "{got}");
        assert_eq!(s.lease_count(), 1);
        // the first goes: the second is configured
        s.remove(&first);
        let got = crate::wireguard::uapi::get(&dev);
        assert!(got.contains("endpoint=198.18.0.13:51820"), "{got}");
        assert!(got.contains("allowed_ip=172.30.3.0/24"), "{got}");
        assert!(!got.contains("172.30.2.0/24"), "{got}");
    }

    #[test]
    fn a_lease_with_this_hosts_own_key_is_no_peer() {
        let own = WgKey([1; 32]);
        let (mut s, dev) = sink(own);
        let why = s
            .apply(
                lease("172.30.4.0-24"),
                vec![peer(1, "198.18.0.14", "172.30.4.0/24")],
            )
            .expect_err("own key");
        assert!(
            why.starts_with(
                "lease 172.30.4.0-24 (198.18.0.14) publishes this host's own WireGuard public key"
            ),
            "{why}"
        );
        assert_eq!(dev.peer_count(), 0);
        assert_eq!(s.lease_count(), 0);
    }

    #[test]
    fn a_lease_that_takes_a_copied_key_gives_up_its_own_peer() {
        let (mut s, dev) = sink(WgKey([1; 32]));
        let (a, b) = (lease("172.30.2.0-24"), lease("172.30.3.0-24"));
        assert_eq!(
            s.apply(a, vec![peer(9, "198.18.0.12", "172.30.2.0/24")]),
            Ok(())
        );
        assert_eq!(
            s.apply(b, vec![peer(8, "198.18.0.13", "172.30.3.0/24")]),
            Ok(())
        );
        assert_eq!(dev.peer_count(), 2);
        // b's host now publishes a's key: b's old peer goes, a's stays
        assert!(s
            .apply(b, vec![peer(9, "198.18.0.13", "172.30.3.0/24")])
            .is_err());
        assert_eq!(dev.peer_count(), 1);
        let got = crate::wireguard::uapi::get(&dev);
        assert!(got.contains("endpoint=198.18.0.12:51820"), "{got}");
    }
}

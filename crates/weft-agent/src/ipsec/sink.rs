//! Where remote leases go with the ipsec backend: the core's
//! [`IpsecPeers`] says which tunnels to load and unload; this sink writes
//! their policies into the kernel at once and queues charon's part. A
//! full pass ([`IpsecSink::sync_kernel`]) also deletes policies of
//! tunnels no lease asks for (left by an earlier run) and re-adds missing
//! ones.

use weft_core::lease::{Lease, LeaseKey};
use weft_core::plan::ipsec::{Change, IpsecPeers, Policy};
use weft_kernel::{KernelError, Xfrm};

use super::vici::{Job, Vici};

pub struct IpsecSink {
    peers: IpsecPeers,
    xfrm: Xfrm,
    vici: Vici,
    /// A kernel change failed since the last full pass.
    failed: bool,
}

impl IpsecSink {
    pub fn new(peers: IpsecPeers, xfrm: Xfrm, vici: Vici) -> IpsecSink {
        // flanneld loads its own key first
        vici.send(Job::Key(peers.planner().local.public_ip));
        IpsecSink {
            peers,
            xfrm,
            vici,
            failed: false,
        }
    }

    /// A remote lease appeared or changed; why it is unusable, if so.
    pub fn upsert(&mut self, lease: &Lease) -> Result<(), String> {
        let changes = self.peers.upsert(lease).map_err(|e| e.to_string())?;
        self.apply(changes);
        Ok(())
    }

    /// A remote lease went away.
    pub fn remove(&mut self, key: &LeaseKey) {
        let change = self.peers.remove(key);
        self.apply(change.into_iter().collect());
    }

    pub fn begin_reset(&mut self) {
        self.peers.begin_reset();
    }

    pub fn end_reset(&mut self) {
        let changes = self.peers.end_reset();
        self.apply(changes);
    }

    /// Remote hosts with a tunnel.
    pub fn lease_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether a kernel change failed since the last call.
    pub fn take_failed(&mut self) -> bool {
        std::mem::take(&mut self.failed)
    }

    fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Load(peer) => {
                    for p in &peer.policies {
                        self.put(p);
                    }
                    self.vici.send(Job::Key(peer.remote.public_ip));
                    self.vici.send(Job::Load(peer));
                }
                Change::Unload(peer) => {
                    self.vici.send(Job::Unload(peer.connection.clone()));
                    for p in &peer.policies {
                        self.delete(p);
                    }
                }
            }
        }
    }

    /// Makes the kernel's policies of weft's form equal to the plan.
    pub fn sync_kernel(&mut self) -> Result<usize, KernelError> {
        let drift = self.peers.drift(self.xfrm.policies()?);
        for p in &drift.stale {
            tracing::info!(policy = %p, "removing a stale IPsec policy");
            self.delete(p);
        }
        for p in &drift.missing {
            self.put(p);
        }
        Ok(drift.stale.len() + drift.missing.len())
    }

    fn put(&mut self, p: &Policy) {
        if let Err(e) = self.xfrm.put(p) {
            self.report(e);
        }
    }

    fn delete(&mut self, p: &Policy) {
        if let Err(e) = self.xfrm.delete(p) {
            self.report(e);
        }
    }

    fn report(&mut self, e: KernelError) {
        crate::metrics::get().netlink_errors.inc();
        tracing::warn!("{e}; a full pass will retry");
        self.failed = true;
    }
}

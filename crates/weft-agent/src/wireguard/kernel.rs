//! Kernel WireGuard devices: made over rtnetlink, configured over the
//! `wireguard` generic netlink family (as flanneld's wgctrl does). The
//! kernel moves the packets; weft sets the key, port and peers.

use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use weft_core::plan::wireguard::WgPeer;
use weft_core::{WgKey, WgSecret};
use weft_kernel::{KernelPeer, Netlink, WireguardGenl};

pub struct KernelWg {
    pub name: &'static str,
    pub index: u32,
    genl: Mutex<WireguardGenl>,
}

impl KernelWg {
    /// Makes (or adopts) device `name` with `mtu`, this host's key and
    /// `port`, and no peers.
    pub fn create(
        nl: &mut Netlink,
        name: &'static str,
        mtu: u32,
        secret: &WgSecret,
        port: u16,
    ) -> Result<KernelWg> {
        let link = weft_kernel::ensure_wireguard_link(nl, name)?;
        weft_kernel::set_link_up(nl, link.index, Some(mtu))?;
        let mut genl = WireguardGenl::open()
            .context("opening the kernel's WireGuard netlink family")?
            .ok_or_else(|| anyhow!("the kernel has no WireGuard netlink family"))?;
        genl.configure(link.index, &secret.0, port)
            .with_context(|| format!("setting the key and port {port} of {name}"))?;
        Ok(KernelWg {
            name,
            index: link.index,
            genl: Mutex::new(genl),
        })
    }

    fn genl(&self) -> std::sync::MutexGuard<'_, WireguardGenl> {
        self.genl.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_peer(&self, p: &WgPeer, psk: Option<&WgSecret>, keepalive: u16) {
        let peer = KernelPeer {
            public_key: p.key.0,
            endpoint: Some(p.endpoint),
            allowed_ips: p.allowed_ips.clone(),
            preshared_key: psk.map(|k| k.0),
            keepalive,
        };
        if let Err(e) = self.genl().set_peer(self.index, &peer) {
            tracing::warn!(device = self.name, peer = %p.key, "the kernel refused the WireGuard peer: {e}");
        }
    }

    pub fn remove_peer(&self, key: &WgKey) -> bool {
        match self.genl().remove_peer(self.index, &key.0) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = self.name, peer = %key, "removing the WireGuard peer: {e}");
                false
            }
        }
    }
}

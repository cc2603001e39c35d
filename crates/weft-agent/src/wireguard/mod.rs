//! flannel's wireguard backend: pod traffic between hosts encrypted by
//! WireGuard, wire-compatible with flanneld's (same key file, lease data,
//! device names, addresses and routes), so any WireGuard implementation
//! configured from the leases is a peer.
//!
//! Where the kernel has WireGuard, its devices carry the packets and
//! [`kernel`] configures them over generic netlink. Elsewhere the data
//! path is userspace: a TUN device per WireGuard device, [`io`] moving
//! packets in batches through boringtun's protocol state ([`device`]), and
//! the standard configuration socket ([`uapi`]) so `wg` reads and changes
//! it. [`sink`] turns leases into peers; [`key_file`] keeps the host's key.

pub mod device;
pub mod io;
pub mod kernel;
pub mod key_file;
pub mod peers;
pub mod sink;
pub mod socket;
pub mod uapi;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_core::config::{WgMode, WireguardConfig, WG_OVERHEAD};
use weft_core::lease::{LeaseAttrs, LeaseKey, WireguardLeaseData};
use weft_core::plan::wireguard::{devices, WgDeviceId, WgPeerPlanner};
use weft_kernel::Netlink;

use crate::network::Network;
use crate::options::{WgImplementation, WgOptions};
use crate::underlay::Underlay;
use device::WgDevice;
use sink::WgSink;
use socket::Udp;

/// One WireGuard device, whichever implementation carries it.
#[derive(Clone)]
pub enum Device {
    User(Arc<WgDevice>),
    Kernel(Arc<kernel::KernelWg>),
}

impl Device {
    pub fn set_peer(
        &self,
        p: &weft_core::plan::wireguard::WgPeer,
        psk: Option<&weft_core::WgSecret>,
        keepalive: u16,
    ) {
        match self {
            Device::User(d) => d.update_peer(
                p.key,
                device::PeerUpdate {
                    endpoint: Some(p.endpoint),
                    replace_allowed_ips: true,
                    allowed_ips: p.allowed_ips.clone(),
                    psk: Some(psk.cloned()),
                    keepalive: Some(keepalive),
                },
            ),
            Device::Kernel(k) => k.set_peer(p, psk, keepalive),
        }
    }

    pub fn remove_peer(&self, key: &weft_core::WgKey) -> bool {
        match self {
            Device::User(d) => d.remove_peer(key),
            Device::Kernel(k) => k.remove_peer(key),
        }
    }
}

/// A device made before the lease is known.
enum Prepared {
    User(tun_rs::SyncDevice, Arc<WgDevice>),
    Kernel(Arc<kernel::KernelWg>),
}

/// The devices before the lease is known.
pub struct WgLocal {
    devices: Vec<(WgDeviceId, Prepared)>,
    mtu: u32,
    uapi_dir: PathBuf,
    /// This host's public key (a lease naming it is not a peer).
    public: weft_core::WgKey,
}

/// Which implementation `opts` and this kernel give.
fn choose(nl: &mut Netlink, opts: &WgOptions) -> Result<WgImplementation> {
    let mut kernel = || weft_kernel::kernel_has_wireguard(nl, "weft-wgprobe");
    match opts.implementation {
        WgImplementation::Userspace => Ok(WgImplementation::Userspace),
        WgImplementation::Auto if kernel() => Ok(WgImplementation::Kernel),
        WgImplementation::Auto => {
            tracing::info!(
                "the kernel cannot make WireGuard devices: using weft's userspace WireGuard"
            );
            Ok(WgImplementation::Userspace)
        }
        WgImplementation::Kernel if kernel() => Ok(WgImplementation::Kernel),
        WgImplementation::Kernel => {
            bail!("--wireguard-impl=kernel: this kernel cannot make WireGuard devices (no wireguard module); use --wireguard-impl=userspace (or auto)")
        }
    }
}

/// Makes the devices (TUN, socket, key) and the lease's attributes.
pub fn prepare(
    nl: &mut Netlink,
    cfg: &WireguardConfig,
    network: &Network,
    underlay: &Underlay,
    opts: &WgOptions,
) -> Result<(WgLocal, LeaseAttrs)> {
    let implementation = choose(nl, opts)?;
    let (secret, origin) = key_file::load_or_create(&opts.key_file)?;
    let base = cfg.mtu.unwrap_or(underlay.mtu);
    let mtu = base
        .checked_sub(WG_OVERHEAD)
        .filter(|m| *m >= 576)
        .ok_or_else(|| {
            anyhow!(
                "the MTU {base} of {} leaves less than 576 bytes after WireGuard's {WG_OVERHEAD}",
                underlay.name
            )
        })?;
    let (v4, v6) = (network.pools.v4.is_some(), network.pools.v6.is_some());
    let public = weft_core::WgKey(
        *boringtun::x25519::PublicKey::from(&boringtun::x25519::StaticSecret::from(secret.0))
            .as_bytes(),
    );
    let mut local = WgLocal {
        devices: Vec::new(),
        mtu,
        uapi_dir: opts.uapi_dir.clone(),
        public,
    };
    for id in devices(cfg.mode, v4, v6) {
        let port = match id {
            WgDeviceId::V6 => cfg.listen_port_v6,
            WgDeviceId::Main => cfg.listen_port,
        };
        let prepared = if implementation == WgImplementation::Kernel {
            let k = kernel::KernelWg::create(nl, id.name(), mtu, &secret, port)
                .with_context(|| format!("setting up the kernel WireGuard device {}", id.name()))?;
            Prepared::Kernel(Arc::new(k))
        } else {
            let udp = Udp::bind(port)
                .with_context(|| format!("binding UDP port {port} for {}", id.name()))?;
            let tun = crate::udp::open_tun(id.name(), mtu)
                .with_context(|| format!("creating the TUN device {}", id.name()))?;
            Prepared::User(tun, Arc::new(WgDevice::new(id.name(), secret.clone(), udp)))
        };
        local.devices.push((id, prepared));
    }
    if local.devices.is_empty() {
        bail!("the network has no address family for WireGuard");
    }
    tracing::info!(
        implementation = ?implementation,
        key_file = %opts.key_file.display(),
        key = if origin == key_file::Origin::Made { "made" } else { "read" },
        public_key = %public,
        mode = cfg.mode.name(),
        mtu,
        "WireGuard devices ready"
    );
    let data = |port| WireguardLeaseData {
        public_key: public.to_base64(),
        port,
    };
    // one device listens on ListenPort in the single-device modes: say so
    let v6_port = if cfg.mode == WgMode::Separate {
        cfg.listen_port_v6
    } else {
        cfg.listen_port
    };
    let attrs = LeaseAttrs::wireguard(
        underlay.public_ip,
        if v6 { underlay.public_ipv6 } else { None },
        v4.then(|| data(cfg.listen_port)),
        v6.then(|| data(v6_port)),
    );
    Ok((local, attrs))
}

impl WgLocal {
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// With the lease known: addresses and routes the devices (the
    /// subnet's first address as /32 or /128, the network through the
    /// device), starts them, and returns the sink for remote leases.
    pub fn start(
        self,
        nl: &mut Netlink,
        cfg: &WireguardConfig,
        network: &Network,
        key: LeaseKey,
        underlay: &Underlay,
    ) -> Result<WgSink> {
        let mut started = Vec::new();
        for (id, prepared) in self.devices {
            let link = weft_kernel::link_by_name(nl, id.name())?
                .ok_or_else(|| anyhow!("{} vanished after creation", id.name()))?;
            let carries_v4 = id == WgDeviceId::Main;
            let carries_v6 = id == WgDeviceId::V6 || cfg.mode != WgMode::Separate;
            weft_kernel::set_link_up(nl, link.index, Some(self.mtu))?;
            if let (true, Some(s), Some(pool)) = (carries_v4, key.v4, &network.pools.v4) {
                weft_kernel::ensure_address(
                    nl,
                    link.index,
                    IpNet::V4(Ipv4Net::new(s.network(), 32)?),
                )
                .with_context(|| format!("addressing {}", id.name()))?;
                weft_kernel::replace_device_route(nl, link.index, pool.network())?;
            }
            if let (true, Some(s), Some(pool)) = (carries_v6, key.v6, &network.pools.v6) {
                weft_kernel::ensure_address(
                    nl,
                    link.index,
                    IpNet::V6(Ipv6Net::new(s.network(), 128)?),
                )
                .with_context(|| format!("addressing {}", id.name()))?;
                weft_kernel::replace_device_route(nl, link.index, pool.network())?;
            }
            match prepared {
                Prepared::User(tun, wg) => {
                    let sock = uapi::serve(&self.uapi_dir, wg.clone())?;
                    io::start(tun, wg.clone()).context("starting the WireGuard data path")?;
                    tracing::info!(device = id.name(), port = wg.udp.port(), socket = %sock.display(), "WireGuard device up (userspace)");
                    started.push((id, Device::User(wg)));
                }
                Prepared::Kernel(k) => {
                    tracing::info!(device = id.name(), "WireGuard device up (kernel)");
                    started.push((id, Device::Kernel(k)));
                }
            }
        }
        let planner = WgPeerPlanner::new(
            cfg,
            network.pools.v4.is_some(),
            network.pools.v6.is_some(),
            Some(underlay.public_ip),
            underlay.public_ipv6,
        );
        Ok(WgSink::new(
            planner,
            started,
            cfg.psk.clone(),
            cfg.keepalive,
            self.public,
        ))
    }
}

/// One of this host's WireGuard devices, as `weft status` and `weft
/// doctor` report it (never with keys).
#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub device: &'static str,
    /// `userspace` (weft's TUN data path), `kernel` or `absent`.
    pub implementation: &'static str,
    pub state: std::result::Result<uapi::DeviceState, String>,
}

/// Looks at the devices the backend would have: which implementation
/// each is and, for userspace ones, their peers over the socket.
pub fn inspect(
    nl: &mut Netlink,
    mode: WgMode,
    v4: bool,
    v6: bool,
    socket_dir: &std::path::Path,
) -> Vec<DeviceReport> {
    devices(mode, v4, v6)
        .into_iter()
        .map(|id| {
            let name = id.name();
            let (implementation, state) = match weft_kernel::link_by_name(nl, name) {
                Err(e) => ("absent", Err(e.to_string())),
                Ok(None) => (
                    "absent",
                    Err(format!("there is no device {name}: is the agent running?")),
                ),
                Ok(Some(l)) if l.kind.as_deref() == Some("wireguard") => {
                    ("kernel", kernel_state(name))
                }
                Ok(Some(_)) => (
                    "userspace",
                    uapi::query(&socket_dir.join(format!("{name}.sock")))
                        .map_err(|e| format!("{e:#}")),
                ),
            };
            DeviceReport {
                device: name,
                implementation,
                state,
            }
        })
        .collect()
}

/// A kernel device's port, peers and handshakes, over generic netlink.
fn kernel_state(name: &str) -> std::result::Result<uapi::DeviceState, String> {
    let mut genl = weft_kernel::WireguardGenl::open()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the kernel has no WireGuard netlink family".to_string())?;
    let d = genl
        .device(name)
        .map_err(|e| format!("reading {name}: {e}"))?;
    Ok(uapi::DeviceState {
        listen_port: d.listen_port,
        peers: d.peers.len(),
        handshakes: d.peers.iter().filter(|p| p.last_handshake_sec != 0).count(),
    })
}

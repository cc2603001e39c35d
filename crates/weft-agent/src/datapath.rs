//! The backend's local half of the data path: devices made before the
//! lease is known (their MACs and MTU go into the lease), addressed and
//! started once it is, and the planners that turn the other hosts' leases
//! into kernel entries ([`kernel_plan`], shared with `weft status`).

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_core::config::{BackendConfig, VxlanConfig};
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::plan::hostgw::{HostGwPlanner, Underlay as PlanUnderlay};
use weft_core::plan::ipip::IpipPlanner;
use weft_core::plan::vxlan::VxlanPlanner;
use weft_core::plan::Planner;
use weft_core::subnet::SubnetPool;
use weft_core::MacAddr;
use weft_kernel::{LinkState, Netlink, Ownership};

use crate::network::Network;
use crate::options::WgOptions;
use crate::reconcile::Sink;
use crate::underlay::Underlay;
use crate::wireguard::WgLocal;
use crate::{extension, ipip, ipsec, udp, vxlan, wireguard};
use weft_core::subnet::Pools;

/// The backend's devices before the lease is known.
pub struct LocalDataPath {
    /// What this host publishes in its lease.
    pub attrs: LeaseAttrs,
    /// The pods' MTU (the subnet file's FLANNEL_MTU).
    pub mtu: u32,
    dev4: Option<LinkState>,
    dev6: Option<LinkState>,
    tun: Option<tun_rs::SyncDevice>,
    wg: Option<WgLocal>,
}

/// The attributes a vxlan host would publish before its devices exist:
/// what the sources match a previous lease of this host by.
pub fn probe_attrs(network: &Network, underlay: &Underlay) -> LeaseAttrs {
    let mut probe = match &network.backend {
        BackendConfig::Vxlan(vx) => vxlan::lease_attrs(vx, underlay, None, None),
        _ => LeaseAttrs::host_gw(underlay.public_ip),
    };
    probe.public_ipv6 = underlay.public_ipv6;
    probe
}

/// Creates (or adopts) the backend's devices; a vxlan device is created
/// with `macs` (IPv4, IPv6), the MACs this host published before.
pub fn prepare(
    nl: &mut Netlink,
    network: &Network,
    underlay: &Underlay,
    macs: (Option<MacAddr>, Option<MacAddr>),
    wg_opts: &WgOptions,
) -> Result<LocalDataPath> {
    let pools = &network.pools;
    let mut local = LocalDataPath {
        attrs: LeaseAttrs::host_gw(underlay.public_ip),
        mtu: underlay.mtu,
        dev4: None,
        dev6: None,
        tun: None,
        wg: None,
    };
    match &network.backend {
        BackendConfig::Vxlan(vx) => {
            if pools.v4.is_some() {
                local.dev4 = Some(setup_vxlan(nl, vx, underlay, macs.0, false)?);
            }
            if pools.v6.is_some() {
                local.dev6 = Some(setup_vxlan(nl, vx, underlay, macs.1, true)?);
            }
            let mac = |d: &Option<LinkState>| d.as_ref().and_then(|d| d.mac);
            // pods must fit through both devices: the IPv6 one has 20 bytes less
            local.mtu = [&local.dev4, &local.dev6]
                .into_iter()
                .flatten()
                .map(|d| d.mtu)
                .min()
                .unwrap_or(underlay.mtu);
            local.attrs = vxlan::lease_attrs(vx, underlay, mac(&local.dev4), mac(&local.dev6));
        }
        BackendConfig::HostGw => {
            if pools.v6.is_some() {
                local.attrs.public_ipv6 = underlay.public_ipv6;
            }
        }
        BackendConfig::Udp(_) => {
            local.mtu = underlay.mtu.saturating_sub(udp::UDP_V4_OVERHEAD);
            let dev = udp::open_device(local.mtu)
                .with_context(|| format!("creating the TUN device {}", udp::DEVICE))?;
            local.tun = Some(dev);
            local.attrs = LeaseAttrs::udp(underlay.public_ip);
        }
        BackendConfig::Wireguard(cfg) => {
            let (wg, attrs) = wireguard::prepare(nl, cfg, network, underlay, wg_opts)?;
            local.mtu = wg.mtu();
            local.attrs = attrs;
            local.wg = Some(wg);
        }
        BackendConfig::Extension(cfg) => {
            // flanneld publishes the interface's own addresses here, not
            // -public-ip: the user's commands route to them
            let output = extension::pre_startup(cfg)?;
            let ipv6 = pools.v6.as_ref().and(underlay.local_ipv6).map(|n| n.addr());
            local.attrs = LeaseAttrs::extension(underlay.local_ip, ipv6, output.as_deref());
        }
        BackendConfig::Alloc => local.attrs = LeaseAttrs::alloc(underlay.public_ip),
        BackendConfig::Ipsec(cfg) => {
            local.mtu = weft_core::plan::ipsec::pod_mtu(underlay.mtu, cfg.udp_encap);
            local.attrs = LeaseAttrs::ipsec(underlay.public_ip);
        }
        BackendConfig::Ipip(_) => {
            let dev = ipip::ensure_device(nl, underlay)
                .with_context(|| format!("setting up {}", ipip::DEVICE))?;
            tracing::info!(device = %dev.name, mtu = dev.mtu, "ipip device ready");
            local.mtu = dev.mtu;
            local.attrs = LeaseAttrs::ipip(underlay.public_ip);
            local.dev4 = Some(dev);
        }
    }
    Ok(local)
}

impl LocalDataPath {
    /// With the lease known: addresses the devices, starts the udp
    /// forwarder, and returns where remote leases go and what of the
    /// kernel is weft's.
    pub fn start(
        self,
        nl: &mut Netlink,
        network: &Network,
        key: LeaseKey,
        underlay: &Underlay,
        nexthops: bool,
    ) -> Result<(Sink, Ownership)> {
        if let (Some(d), Some(s)) = (&self.dev4, key.v4) {
            weft_kernel::ensure_address(nl, d.index, IpNet::V4(Ipv4Net::new(s.network(), 32)?))
                .context("addressing the tunnel device")?;
        }
        if let (Some(d), Some(s)) = (&self.dev6, key.v6) {
            weft_kernel::ensure_address(nl, d.index, IpNet::V6(Ipv6Net::new(s.network(), 128)?))
                .context("addressing the IPv6 vxlan device")?;
        }
        let devices: Vec<u32> = [&self.dev4, &self.dev6]
            .into_iter()
            .flatten()
            .map(|d| d.index)
            .collect();
        let (planners, ownership) = kernel_plan(
            &network.backend,
            &network.pools,
            key,
            underlay,
            &devices,
            nexthops,
        );
        let mut sink = Sink {
            planners,
            udp: None,
            wireguard: None,
            extension: None,
            ipsec: None,
        };
        if let BackendConfig::Ipsec(cfg) = &network.backend {
            sink.ipsec = Some(ipsec::start(cfg, &network.pools, key.v4, underlay)?);
        }
        if let BackendConfig::Extension(cfg) = &network.backend {
            extension::post_startup(cfg, self.post_startup_vars(network, key))?;
            sink.extension = Some(extension::ExtensionSink::start(cfg)?);
        }
        if let (BackendConfig::Wireguard(cfg), Some(wg)) = (&network.backend, self.wg) {
            sink.wireguard = Some(wg.start(nl, cfg, network, key, underlay)?);
        }
        if let BackendConfig::Udp(u) = &network.backend {
            let (Some(pool), Some(subnet), Some(dev)) = (&network.pools.v4, key.v4, self.tun)
            else {
                bail!("the udp backend needs an IPv4 network");
            };
            sink.udp = Some(start_udp(
                nl, dev, underlay, u.port, pool, subnet, self.mtu,
            )?);
        }
        Ok((sink, ownership))
    }
}

impl LocalDataPath {
    /// What PostStartupCommand is told, printed as flanneld prints it.
    fn post_startup_vars(&self, network: &Network, key: LeaseKey) -> extension::PostStartup {
        let v4 = |n: Option<Ipv4Net>| n.map_or_else(|| "0.0.0.0/0".into(), |n| n.to_string());
        extension::PostStartup {
            network: v4(network.pools.v4.as_ref().map(|p| match p.network() {
                IpNet::V4(n) => n,
                IpNet::V6(_) => Ipv4Net::default(),
            })),
            subnet: v4(key.v4),
            ipv6_subnet: key.v6.map_or_else(|| "::/0".into(), |n| n.to_string()),
            public_ip: self.attrs.public_ip.to_string(),
            public_ipv6: self
                .attrs
                .public_ipv6
                .map_or_else(|| "<nil>".into(), |a| a.to_string()),
        }
    }
}

/// A vxlan device (IPv4 or IPv6 data path), created with the MAC of this
/// host's previous lease when there is one (so peers' FDB entries stay valid).
fn setup_vxlan(
    nl: &mut Netlink,
    vx: &VxlanConfig,
    underlay: &Underlay,
    previous_mac: Option<MacAddr>,
    v6: bool,
) -> Result<LinkState> {
    let dev = vxlan::ensure_device(nl, vx, underlay, previous_mac, v6)
        .context("setting up the vxlan device")?;
    tracing::info!(device = %dev.name, mac = ?dev.mac, mtu = dev.mtu, "vxlan device ready");
    Ok(dev)
}

/// The planners that turn remote leases into kernel entries, and what of
/// the kernel is weft's. Routes go out of the vxlan devices (`devices`:
/// IPv4 first, then IPv6, as present) and, for host-gw and DirectRouting,
/// out of the underlay: there only destinations inside the cluster
/// networks (and not this host's own subnets) are weft's. Shared with
/// `weft status`, which compares the kernel with the same plan.
pub fn kernel_plan(
    backend: &BackendConfig,
    pools: &Pools,
    key: LeaseKey,
    underlay: &Underlay,
    devices: &[u32],
    nexthops: bool,
) -> (Vec<Planner>, Ownership) {
    let mut ownership = Ownership {
        route_devices: devices.to_vec(),
        l2_devices: devices.to_vec(),
        networks: [&pools.v4, &pools.v6]
            .into_iter()
            .flatten()
            .map(|p| p.network())
            .collect(),
        exclude: [key.v4.map(IpNet::V4), key.v6.map(IpNet::V6)]
            .into_iter()
            .flatten()
            .collect(),
    };
    let local = |v6: bool| PlanUnderlay {
        ifindex: underlay.index,
        network: match (v6, underlay.local_ipv6) {
            (true, Some(n)) => IpNet::V6(n.trunc()),
            _ => IpNet::V4(underlay.local_net),
        },
    };
    let mut planners = Vec::new();
    match backend {
        BackendConfig::Vxlan(vx) => {
            let families = [pools.v4.is_some(), pools.v6.is_some()];
            let v6s = [false, true]
                .into_iter()
                .filter(|v6| families[usize::from(*v6)]);
            for (ifindex, v6) in devices.iter().copied().zip(v6s) {
                let direct = vx.direct_routing.then(|| local(v6));
                planners.push(Planner::Vxlan(VxlanPlanner {
                    ifindex,
                    nexthops,
                    direct,
                    v6,
                }));
            }
            if vx.direct_routing {
                ownership.route_devices.push(underlay.index);
            }
        }
        BackendConfig::HostGw => {
            ownership.route_devices.push(underlay.index);
            for v6 in [false, true].into_iter().filter(|v6| {
                if *v6 {
                    pools.v6.is_some()
                } else {
                    pools.v4.is_some()
                }
            }) {
                planners.push(Planner::HostGw(HostGwPlanner {
                    underlay: local(v6),
                    nexthops,
                    v6,
                }));
            }
        }
        BackendConfig::Ipip(cfg) => {
            if let Some(ifindex) = devices.first().copied() {
                planners.push(Planner::Ipip(IpipPlanner {
                    ifindex,
                    nexthops,
                    direct: cfg.direct_routing.then(|| local(false)),
                }));
            }
            if cfg.direct_routing {
                ownership.route_devices.push(underlay.index);
            }
        }
        BackendConfig::Udp(_)
        | BackendConfig::Wireguard(_)
        | BackendConfig::Extension(_)
        | BackendConfig::Alloc
        | BackendConfig::Ipsec(_) => {}
    }
    (planners, ownership)
}

/// The udp backend: `flannel0` gets `<subnet>.0/<network length>` (so the
/// kernel routes the whole network into it), then the forwarding threads
/// start on a socket bound to the underlay address.
fn start_udp(
    nl: &mut Netlink,
    dev: tun_rs::SyncDevice,
    underlay: &Underlay,
    port: u16,
    pool: &SubnetPool,
    subnet: Ipv4Net,
    mtu: u32,
) -> Result<Arc<udp::UdpPeers>> {
    let link = weft_kernel::link_by_name(nl, udp::DEVICE)?
        .ok_or_else(|| anyhow!("{} vanished after creation", udp::DEVICE))?;
    let addr = Ipv4Net::new(subnet.network(), pool.network().prefix_len())?;
    weft_kernel::ensure_address(nl, link.index, IpNet::V4(addr)).context("addressing flannel0")?;
    weft_kernel::set_link_up(nl, link.index, Some(mtu))?;
    let sock = std::net::UdpSocket::bind((underlay.local_ip, port))
        .with_context(|| format!("binding udp {}:{port}", underlay.local_ip))?;
    let peers = Arc::new(udp::UdpPeers::new(subnet.prefix_len(), port));
    udp::start(dev, sock, peers.clone()).context("starting the udp data path")?;
    tracing::info!(device = udp::DEVICE, %addr, mtu, port, "udp backend ready");
    Ok(peers)
}

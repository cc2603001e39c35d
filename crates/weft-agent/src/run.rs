//! The agent's life: start-up in flannel's order, then the event loop.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::time::{sleep, sleep_until, Instant};
use weft_core::config::{BackendConfig, NetConfig, VxlanConfig};
use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_core::plan::hostgw::{HostGwPlanner, Underlay};
use weft_core::plan::vxlan::VxlanPlanner;
use weft_core::plan::Op;
use weft_core::plan::Planner;
use weft_core::subnet::{first_host, SubnetPool};
use weft_core::subnet_file::SubnetEnv;
use weft_etcd::{
    connect, AcquiredLease, EtcdOptions, LeaseEvent, LeaseWatch, Registry, WatchError,
};
use weft_firewall::{Backend, Iptables, MasqRules, Mode as FirewallMode};
use weft_kernel::{Netlink, Ownership};

use crate::acquire::{acquire, own_previous, AcquireError, Pools};
use crate::flags::AgentArgs;
use crate::reconcile::{Reconciler, Sink};
use crate::underlay::{self, Selector};
use crate::{subnet_file, udp, vxlan};

/// How the agent ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentExit {
    /// SIGTERM or SIGINT: data path left in place.
    Signalled,
}

const RENEW_RETRY: Duration = Duration::from_secs(60);
const FAILED_PASS_RETRY: Duration = Duration::from_secs(5);
const HOST_GW_RESYNC: Duration = Duration::from_secs(10);

/// Runs until a signal (Ok) or a fatal condition (Err, exit non-zero).
pub async fn run(args: AgentArgs) -> Result<AgentExit> {
    let shutdown = shutdown_signal()?;
    tokio::select! {
        r = agent(args) => r.map(|never| match never {}),
        _ = shutdown => {
            tracing::info!("signal received: exiting, data path left in place");
            Ok(AgentExit::Signalled)
        }
    }
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn selector(args: &AgentArgs) -> Result<Selector> {
    let public_ip = match &args.public_ip {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| anyhow!("-public-ip {s:?} is not an IPv4 address"))?,
        ),
    };
    let can_reach = match &args.iface_can_reach {
        None => None,
        Some(s) => Some(
            s.parse::<IpAddr>()
                .map_err(|_| anyhow!("-iface-can-reach {s:?} is not an IP address"))?,
        ),
    };
    let public_ipv6 = match &args.public_ipv6 {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| anyhow!("-public-ipv6 {s:?} is not an IPv6 address"))?,
        ),
    };
    Ok(Selector {
        iface: args.iface.clone(),
        iface_regex: args.iface_regex.clone(),
        can_reach,
        public_ip,
        public_ipv6,
    })
}

fn etcd_options(args: &AgentArgs) -> EtcdOptions {
    EtcdOptions {
        endpoints: args.endpoints(),
        username: args.etcd_username.clone(),
        password: args.etcd_password.clone(),
        cafile: args.etcd_cafile.clone(),
        certfile: args.etcd_certfile.clone(),
        keyfile: args.etcd_keyfile.clone(),
    }
}

enum Never {}

async fn agent(args: AgentArgs) -> Result<Never> {
    if args.kube_subnet_mgr {
        bail!("-kube-subnet-mgr is not supported by weft: use the etcd subnet manager (-etcd-endpoints, -etcd-prefix)");
    }
    if args.endpoints().is_empty() {
        bail!(
            "-etcd-endpoints is empty (is FLANNEL_ETCD_ENDPOINTS set in /etc/sysconfig/flanneld?)"
        );
    }
    let sel = selector(&args)?;
    let mut nl = Netlink::open().context("opening netlink")?;
    let underlay = underlay::discover(&mut nl, &sel)
        .context("choosing the interface for inter-host traffic")?;
    tracing::info!(iface = %underlay.name, local_ip = %underlay.local_ip, public_ip = %underlay.public_ip, mtu = underlay.mtu, "using interface");
    if args.healthz_port != 0 {
        let ip: IpAddr = args
            .healthz_ip
            .parse()
            .map_err(|_| anyhow!("-healthz-ip {:?} is not an IP address", args.healthz_ip))?;
        let addr = SocketAddr::new(ip, args.healthz_port);
        let listener = weft_telemetry::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for /healthz"))?;
        let m = crate::metrics::get();
        tokio::spawn(weft_telemetry::serve(
            listener,
            Arc::new(weft_telemetry::Endpoints {
                name: "flanneld is running",
                ready: m.ready.clone(),
                registry: m.registry.clone(),
            }),
        ));
    }

    let mut reg = connect_registry(&args).await?;
    let (pools, backend, enable_nftables) = wait_for_config(&mut reg).await;
    // the firewall and, for iptables, its backend: settled before any lease
    // is taken, so a backend whose programs are missing changes nothing
    let firewall = if enable_nftables || args.firewall == "nftables" {
        FirewallMode::Nftables
    } else {
        FirewallMode::Iptables
    };
    let iptables = match firewall {
        FirewallMode::Iptables => {
            let choice = args.iptables_backend;
            let ipt = tokio::task::spawn_blocking(move || weft_firewall::backend::detect(choice))
                .await
                .context("detecting the iptables backend")??;
            tracing::info!("iptables backend: {ipt}");
            ipt
        }
        // unused: the rules go to nft
        FirewallMode::Nftables => Iptables::plain(Backend::Nft),
    };
    let listing = list_leases(&reg).await;
    let (has_v4, has_v6) = (pools.v4.is_some(), pools.v6.is_some());
    if has_v6 && (underlay.local_ipv6.is_none() || underlay.public_ipv6.is_none()) {
        bail!(
            "EnableIPv6 is on but {} has no global IPv6 address (add one, or pass -public-ipv6)",
            underlay.name
        );
    }
    let nexthops = weft_kernel::supports_nexthops(&mut nl);
    if !nexthops {
        tracing::info!("kernel without nexthop objects: using plain gateway routes");
    }

    // The backend's local data path (its MACs and MTU go into the lease).
    let mut tun = None;
    let (mut dev4, mut dev6) = (None, None);
    let (attrs, mtu) = match &backend {
        BackendConfig::Vxlan(vx) => {
            if has_v4 {
                dev4 = Some(setup_vxlan(
                    &mut nl, vx, &underlay, &listing, &pools, false,
                )?);
            }
            if has_v6 {
                dev6 = Some(setup_vxlan(&mut nl, vx, &underlay, &listing, &pools, true)?);
            }
            let mac = |d: &Option<weft_kernel::LinkState>| d.as_ref().and_then(|d| d.mac);
            // pods must fit through both devices: the IPv6 one has 20 bytes less
            let mtu = [&dev4, &dev6]
                .into_iter()
                .flatten()
                .map(|d| d.mtu)
                .min()
                .unwrap_or(underlay.mtu);
            (
                vxlan::lease_attrs(vx, &underlay, mac(&dev4), mac(&dev6)),
                mtu,
            )
        }
        BackendConfig::HostGw => {
            let mut attrs = LeaseAttrs::host_gw(underlay.public_ip);
            if has_v6 {
                attrs.public_ipv6 = underlay.public_ipv6;
            }
            (attrs, underlay.mtu)
        }
        BackendConfig::Udp(_) => {
            let mtu = underlay.mtu.saturating_sub(udp::UDP_V4_OVERHEAD);
            let dev = udp::open_device(mtu)
                .with_context(|| format!("creating the TUN device {}", udp::DEVICE))?;
            tun = Some(dev);
            (LeaseAttrs::udp(underlay.public_ip), mtu)
        }
    };

    let subnet_path = Path::new(&args.subnet_file);
    let previous = subnet_file::previous_subnets(subnet_path);
    let mut listing = Some(listing);
    let lease = loop {
        let current = match listing.take() {
            Some(l) => l,
            None => list_leases(&reg).await,
        };
        match acquire(&mut reg, &pools, &attrs, previous, current).await {
            Ok(lease) => break lease,
            // etcd trouble is never fatal here: flanneld keeps trying too
            Err(AcquireError::Etcd(e)) => {
                tracing::warn!("acquiring a subnet lease: {e}; retrying in 1 s");
                sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("acquiring a subnet lease"),
        }
    };
    let key = lease.key;
    if let (Some(d), Some(s)) = (&dev4, key.v4) {
        weft_kernel::ensure_address(&mut nl, d.index, IpNet::V4(Ipv4Net::new(s.network(), 32)?))
            .context("addressing the vxlan device")?;
    }
    if let (Some(d), Some(s)) = (&dev6, key.v6) {
        weft_kernel::ensure_address(&mut nl, d.index, IpNet::V6(Ipv6Net::new(s.network(), 128)?))
            .context("addressing the IPv6 vxlan device")?;
    }
    write_subnet_file(subnet_path, &pools, key, mtu, args.ip_masq)?;
    start_firewall(&args, &pools, key, firewall, iptables).await;

    let devices: Vec<u32> = [&dev4, &dev6]
        .into_iter()
        .flatten()
        .map(|d| d.index)
        .collect();
    let (planners, ownership) = kernel_plan(&backend, &pools, key, &underlay, &devices, nexthops);
    let mut sink = Sink {
        planners,
        udp: None,
    };
    match &backend {
        BackendConfig::Vxlan(_) | BackendConfig::HostGw => {}
        BackendConfig::Udp(u) => {
            let (Some(pool), Some(subnet), Some(dev)) = (&pools.v4, key.v4, tun) else {
                bail!("the udp backend needs an IPv4 network");
            };
            sink.udp = Some(start_udp(
                &mut nl, dev, &underlay, u.port, pool, subnet, mtu,
            )?);
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(subnet = %key, file = %args.subnet_file, backend = backend.type_name(), "lease acquired, subnet file written");
    // host-gw routes sit among the host's own: re-check them as flanneld does (10 s)
    let mut resync = Duration::from_secs(args.resync_interval.max(1));
    if matches!(backend, BackendConfig::HostGw) {
        resync = resync.min(HOST_GW_RESYNC);
    }
    let mut rec = Reconciler::new(nl, sink, ownership, lease.key);
    let revision = relist_and_sync(&mut reg, &mut rec).await?;
    crate::metrics::get()
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    event_loop(&args, &mut reg, &mut rec, lease, revision, resync).await
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
    underlay: &underlay::Underlay,
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
    let local = |v6: bool| Underlay {
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
        BackendConfig::Udp(_) => {}
    }
    (planners, ownership)
}

/// The udp backend: `flannel0` gets `<subnet>.0/<network length>` (so the
/// kernel routes the whole network into it), then the forwarding threads
/// start on a socket bound to the underlay address.
fn start_udp(
    nl: &mut Netlink,
    dev: tun_rs::SyncDevice,
    underlay: &underlay::Underlay,
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

/// Masquerade and forward rules per address family: applied once now,
/// then re-asserted every `-iptables-resync` seconds in the background.
async fn start_firewall(
    args: &AgentArgs,
    pools: &Pools,
    key: LeaseKey,
    mode: FirewallMode,
    ipt: Iptables,
) {
    let families = [
        pools.v4.as_ref().zip(key.v4.map(IpNet::V4)),
        pools.v6.as_ref().zip(key.v6.map(IpNet::V6)),
    ];
    let rules: Vec<MasqRules> = families
        .into_iter()
        .flatten()
        .map(|(pool, subnet)| MasqRules {
            network: pool.network(),
            subnet,
            masquerade: args.ip_masq,
            forward: args.iptables_forward_rules,
        })
        .collect();
    let every = Duration::from_secs(args.iptables_resync.max(1) as u64);
    let ipt = Arc::new(ipt);
    for r in &rules {
        ensure_rules(mode, &ipt, *r).await;
    }
    tokio::spawn(async move {
        loop {
            sleep(every).await;
            for r in &rules {
                ensure_rules(mode, &ipt, *r).await;
            }
        }
    });
}

async fn ensure_rules(mode: FirewallMode, ipt: &Arc<Iptables>, rules: MasqRules) {
    let ipt = ipt.clone();
    match tokio::task::spawn_blocking(move || weft_firewall::apply::ensure(mode, &ipt, &rules))
        .await
    {
        Ok(Ok(true)) => {
            crate::metrics::get().rules_synced.inc();
            tracing::info!(
                ?mode,
                masquerade = rules.masquerade,
                forward = rules.forward,
                "firewall rules (re)applied"
            )
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::error!("firewall rules: {e}"),
        // the task panicked (the lean build aborts on panic instead)
        Err(e) => tracing::error!("firewall rules: {e}"),
    }
}

/// A vxlan device (IPv4 or IPv6 data path), created with the MAC of this
/// host's previous lease when there is one (so peers' FDB entries stay valid).
fn setup_vxlan(
    nl: &mut Netlink,
    vx: &VxlanConfig,
    underlay: &underlay::Underlay,
    listing: &weft_etcd::LeaseListing,
    pools: &Pools,
    v6: bool,
) -> Result<weft_kernel::LinkState> {
    let probe = vxlan::lease_attrs(vx, underlay, None, None);
    let mut probe = probe;
    probe.public_ipv6 = underlay.public_ipv6;
    let previous_mac = own_previous(listing, pools, &probe)
        .and_then(|r| r.attrs.vxlan_data("", v6).ok())
        .map(|d| d.vtep_mac);
    let dev = vxlan::ensure_device(nl, vx, underlay, previous_mac, v6)
        .context("setting up the vxlan device")?;
    tracing::info!(device = %dev.name, mac = ?dev.mac, mtu = dev.mtu, "vxlan device ready");
    Ok(dev)
}

fn write_subnet_file(
    path: &Path,
    pools: &Pools,
    key: LeaseKey,
    mtu: u32,
    ipmasq: bool,
) -> Result<()> {
    let mut env = SubnetEnv {
        mtu: Some(mtu),
        ipmasq: Some(ipmasq),
        ..Default::default()
    };
    if let (Some(pool), Some(subnet)) = (&pools.v4, key.v4) {
        if let (IpNet::V4(network), IpAddr::V4(host)) =
            (pool.network(), first_host(&IpNet::V4(subnet)))
        {
            env.network = Some(network);
            env.subnet = Some(Ipv4Net::new(host, subnet.prefix_len())?);
        }
    }
    if let (Some(pool), Some(subnet)) = (&pools.v6, key.v6) {
        if let (IpNet::V6(network), IpAddr::V6(host)) =
            (pool.network(), first_host(&IpNet::V6(subnet)))
        {
            env.ipv6_network = Some(network);
            env.ipv6_subnet = Some(Ipv6Net::new(host, subnet.prefix_len())?);
        }
    }
    subnet_file::write_atomic(path, &env.render())
        .with_context(|| format!("writing {}", path.display()))
}

/// The registry on the etcd of the flags (fails on bad TLS files or
/// endpoints only: nothing is sent yet).
async fn connect_registry(args: &AgentArgs) -> Result<Registry> {
    let etcd = connect(&etcd_options(args)).await?;
    Ok(Registry::new(etcd, &args.etcd_prefix))
}

/// Every lease, retried until etcd answers.
async fn list_leases(reg: &Registry) -> weft_etcd::LeaseListing {
    retry("listing leases", || {
        let mut r = reg.clone();
        async move { r.list().await }
    })
    .await
}

/// Reads `<prefix>/config` until it exists and is valid for weft.
async fn wait_for_config(reg: &mut Registry) -> (Pools, BackendConfig, bool) {
    let mut last_problem = String::new();
    loop {
        let problem = match reg.config().await {
            Ok(Some(json)) => match NetConfig::parse(&json) {
                Ok(c) => {
                    let nft = c.enable_nftables;
                    match usable(c) {
                        Ok((pool, backend)) => return (pool, backend, nft),
                        Err(e) => e,
                    }
                }
                Err(e) => e.to_string(),
            },
            Ok(None) => format!("{} does not exist yet", reg.config_key()),
            Err(e) => e.to_string(),
        };
        if problem != last_problem {
            tracing::error!("network config: {problem}; retrying every second");
            last_problem = problem;
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// The pools and backend of a config, or why weft cannot use it.
pub fn usable(c: NetConfig) -> std::result::Result<(Pools, BackendConfig), String> {
    if c.ipv6.is_some() && matches!(c.backend, BackendConfig::Udp(_)) {
        return Err("field EnableIPv6: the udp backend carries IPv4 only".into());
    }
    Ok((
        Pools {
            v4: c.ipv4,
            v6: c.ipv6,
        },
        c.backend,
    ))
}

/// Retries an etcd operation with exponential backoff (0.1 s to 5 s).
async fn retry<T, E, F, Fut>(what: &str, mut f: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match f().await {
            Ok(v) => {
                if logged {
                    tracing::info!("{what}: succeeded");
                }
                return v;
            }
            Err(e) => {
                tracing::warn!("{what}: {e}; retrying in {delay:?}");
                logged = true;
            }
        }
        sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Lists all leases, makes them the desired state and runs a full pass.
/// Returns the listing's revision.
async fn relist_and_sync(reg: &mut Registry, rec: &mut Reconciler) -> Result<i64> {
    let listing = list_leases(reg).await;
    for e in &listing.invalid {
        tracing::warn!("{e}");
    }
    let (count, revision) = (listing.leases.len(), listing.revision);
    rec.reset(&listing.leases);
    drop(listing);
    let report = rec.full_pass().context("programming the data path")?;
    tracing::info!(
        peers = report.peers,
        changes = report.ops,
        failed = report.failed,
        ms = report.elapsed.as_secs_f64() * 1e3,
        "data path in sync with {count} leases"
    );
    weft_kernel::release_free_heap();
    Ok(revision)
}

async fn open_watch(reg: &Registry, from: i64) -> LeaseWatch {
    let prefix = reg.subnets_prefix();
    retry("watching leases", || {
        LeaseWatch::start(reg.etcd(), &prefix, from)
    })
    .await
}

fn renew_delay(ttl_secs: i64, margin_min: u32) -> Duration {
    let ttl = ttl_secs.max(2) as u64;
    let margin = margin_min as u64 * 60;
    Duration::from_secs(if ttl > margin { ttl - margin } else { ttl / 2 })
}

async fn event_loop(
    args: &AgentArgs,
    reg: &mut Registry,
    rec: &mut Reconciler,
    lease: AcquiredLease,
    mut revision: i64,
    resync_every: Duration,
) -> Result<Never> {
    let own = lease.key;
    let mut watch = open_watch(reg, revision + 1).await;
    let mut next_renew = Instant::now() + renew_delay(lease.ttl, args.subnet_lease_renew_margin);
    let mut next_full = Instant::now() + resync_every;
    loop {
        tokio::select! {
            r = watch.next() => match r {
                Ok(events) => {
                    revision = revision.max(watch.revision);
                    let ops = apply_events(rec, &own, events)?;
                    if !ops.is_empty() {
                        let rep = rec.incremental_pass(ops).context("updating the data path")?;
                        tracing::debug!(changes = rep.ops, us = rep.elapsed.as_micros() as u64, "lease events applied");
                        if rep.ops >= weft_kernel::LARGE_PASS_OPS {
                            weft_kernel::release_free_heap();
                        }
                    }
                }
                Err(WatchError::Compacted(rev)) => {
                    crate::metrics::get().etcd_reconnects.inc();
                    tracing::warn!("watch fell behind compaction (revision {rev}); re-listing");
                    revision = relist_and_sync(reg, rec).await?;
                    watch = open_watch(reg, revision + 1).await;
                }
                Err(e) => {
                    revision = revision.max(watch.revision);
                    crate::metrics::get().etcd_reconnects.inc();
                    tracing::warn!("{e}; resuming the watch from revision {}", revision + 1);
                    sleep(Duration::from_millis(200)).await;
                    watch = open_watch(reg, revision + 1).await;
                }
            },
            _ = sleep_until(next_renew) => {
                match reg.renew(lease.etcd_lease).await {
                    Ok(ttl) => {
                        tracing::info!(subnet = %own, ttl, "lease renewed");
                        next_renew = Instant::now() + renew_delay(ttl, args.subnet_lease_renew_margin);
                    }
                    Err(e) => {
                        tracing::warn!("renewing the lease: {e}; retrying in a minute");
                        next_renew = Instant::now() + RENEW_RETRY;
                    }
                }
            }
            _ = sleep_until(next_full) => {
                let rep = rec.full_pass().context("re-checking the data path")?;
                if rep.ops > 0 {
                    tracing::info!(repaired = rep.ops, "data path had drifted from the leases; repaired");
                }
                weft_kernel::release_free_heap();
                let wait = if rec.needs_full { FAILED_PASS_RETRY } else { resync_every };
                rec.needs_full = false;
                next_full = Instant::now() + wait;
            }
        }
        if rec.needs_full {
            next_full = next_full.min(Instant::now() + FAILED_PASS_RETRY);
        }
    }
}

/// The kernel operations for one batch of lease events, in order.
fn apply_events(rec: &mut Reconciler, own: &LeaseKey, events: Vec<LeaseEvent>) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for ev in events {
        match ev {
            LeaseEvent::Put(r) => ops.extend(rec.upsert(&r)),
            LeaseEvent::Delete(k) if &k == own => bail!(
                "this host's lease {k} was deleted from etcd; exiting so that the agent restarts and takes a new lease"
            ),
            LeaseEvent::Delete(k) => ops.extend(rec.remove(&k)),
            LeaseEvent::Invalid(e) => tracing::warn!("{e}"),
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_margin_minutes_before_expiry() {
        // flannel's defaults: 24 h lease, renewed 60 min before it expires
        assert_eq!(renew_delay(86_400, 60), Duration::from_secs(23 * 3600));
        assert_eq!(renew_delay(86_400, 1439), Duration::from_secs(60));
        // a lease shorter than the margin is renewed half-way
        assert_eq!(renew_delay(600, 60), Duration::from_secs(300));
        assert_eq!(renew_delay(0, 60), Duration::from_secs(1));
    }

    #[test]
    fn unsupported_configs_name_the_field() {
        let parse = |j: &str| usable(NetConfig::parse(j).expect("valid flannel config"));
        for ok in [
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan"}}"#,
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"host-gw"}}"#,
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#,
            r#"{"Network":"10.0.0.0/16"}"#,
            r#"{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}"#,
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"host-gw"}}"#,
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        let e = parse(r#"{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#)
            .expect_err("udp with IPv6");
        assert!(e.contains("EnableIPv6"), "{e}");
    }
}

//! The agent's life: the lease source, the underlay interface, the
//! network config, the backend's devices, this host's lease, the subnet
//! file and firewall, then following the other hosts' leases until a
//! signal or a fatal error.
//!
//! Where leases come from is [`crate::source`]; what happens on a lease
//! event is [`crate::follow`]; the backend's local devices are
//! [`crate::datapath`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::{mpsc, Notify};
use weft_core::config::BackendConfig;
use weft_kernel::Netlink;

use crate::options::AgentOptions;
use crate::reconcile::Reconciler;
use crate::source::Source;
use crate::underlay::{self, Selector};
use crate::{datapath, firewall, follow, subnet_file, Never};

/// How the agent ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentExit {
    /// SIGTERM or SIGINT: data path left in place.
    Signalled,
}

const HOST_GW_RESYNC: Duration = Duration::from_secs(10);
/// Lease updates waiting for the data path.
const UPDATE_QUEUE: usize = 64;

/// Runs until a signal (Ok) or a fatal condition (Err, exit non-zero).
pub async fn run(options: AgentOptions) -> Result<AgentExit> {
    let shutdown = shutdown_signal()?;
    tokio::select! {
        r = agent(options) => r.map(|never| match never {}),
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

/// The flags' interface selection, where public addresses `stored` for
/// this host (the Kubernetes Node's `node-public-ip(v6)`) replace
/// `-public-ip(v6)`.
fn with_stored(
    mut selector: Selector,
    stored: (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>),
) -> Selector {
    selector.public_ip = stored.0.or(selector.public_ip);
    selector.public_ipv6 = stored.1.or(selector.public_ipv6);
    selector
}

/// `/healthz` and `/metrics` on `addr`.
async fn serve_health(addr: SocketAddr) -> Result<()> {
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
    Ok(())
}

async fn agent(o: AgentOptions) -> Result<Never> {
    let mut source = Source::open(&o.source).await?;
    let sel = with_stored(o.underlay, source.stored_public_ips());
    let mut nl = Netlink::open().context("opening netlink")?;
    let underlay = underlay::discover(&mut nl, &sel)
        .context("choosing the interface for inter-host traffic")?;
    tracing::info!(iface = %underlay.name, local_ip = %underlay.local_ip, public_ip = %underlay.public_ip, mtu = underlay.mtu, "using interface");
    if let Some(addr) = o.health {
        serve_health(addr).await?;
    }

    let network = source.network().await?;
    let (firewall_mode, iptables) = firewall::choose(&o.firewall, &network).await?;
    if network.pools.v6.is_some()
        && (underlay.local_ipv6.is_none() || underlay.public_ipv6.is_none())
    {
        bail!(
            "EnableIPv6 is on but {} has no global IPv6 address (add one, or pass -public-ipv6)",
            underlay.name
        );
    }
    let nexthops = weft_kernel::supports_nexthops(&mut nl);
    if !nexthops {
        tracing::info!("kernel without nexthop objects: using plain gateway routes");
    }

    // the backend's devices first: their MACs and MTU go into the lease
    let probe = datapath::probe_attrs(&network, &underlay);
    let macs = source.previous_macs(&network, &probe).await;
    let local = datapath::prepare(&mut nl, &network, &underlay, macs, &o.wireguard)?;
    let key = source.acquire(&network, &local.attrs).await?;
    let mtu = local.mtu;
    let (sink, ownership) = local.start(&mut nl, &network, key, &underlay, nexthops)?;
    subnet_file::write(
        &o.subnet_file.path,
        &network.pools,
        key,
        mtu,
        o.subnet_file.ip_masq,
    )?;
    firewall::start(&o.firewall, &network.pools, key, firewall_mode, iptables).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(subnet = %key, file = %o.subnet_file.path.display(), backend = network.backend.type_name(), "lease acquired, subnet file written");

    // host-gw routes sit among the host's own: re-check them as flanneld does (10 s)
    let mut resync = o.resync;
    if matches!(network.backend, BackendConfig::HostGw) {
        resync = resync.min(HOST_GW_RESYNC);
    }
    let rules = source.admission_rules(&network, &key);
    let mut rec = Reconciler::new(nl, sink, ownership, key, rules);
    let (tx, rx) = mpsc::channel(UPDATE_QUEUE);
    let ready = Arc::new(Notify::new());
    let leases = source.follow(key, tx, ready.clone());
    follow::follow(&mut rec, rx, leases, ready, resync).await
}

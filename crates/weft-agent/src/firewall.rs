//! The agent's firewall rules: masquerading (`-ip-masq`) and FORWARD
//! accepts (`-iptables-forward-rules`) for each address family of the
//! lease, applied once and then re-asserted every `-iptables-resync`
//! seconds, with iptables (on the backend the host uses) or nftables.

use std::sync::Arc;

use anyhow::{Context, Result};
use ipnet::IpNet;
use tokio::time::sleep;
use weft_core::lease::LeaseKey;
use weft_firewall::{Backend, Iptables, MasqRules, Mode as FirewallMode};

use crate::network::Network;
use crate::options::FirewallOptions;
use weft_core::subnet::Pools;

/// Which firewall and, for iptables, which of its backends: settled
/// before any lease is taken, so a backend whose programs are missing
/// changes nothing.
pub async fn choose(
    options: &FirewallOptions,
    network: &Network,
) -> Result<(FirewallMode, Iptables)> {
    if network.enable_nftables || options.nftables {
        // the iptables handle is unused: the rules go to nft
        return Ok((FirewallMode::Nftables, Iptables::plain(Backend::Nft)));
    }
    let choice = options.iptables_backend;
    if choice == weft_firewall::BackendChoice::Auto && !weft_firewall::backend::iptables_installed()
    {
        tracing::warn!(
            "no iptables programs on this host: masquerade and forward rules go to nftables"
        );
        return Ok((FirewallMode::Nftables, Iptables::plain(Backend::Nft)));
    }
    let ipt = tokio::task::spawn_blocking(move || weft_firewall::backend::detect(choice))
        .await
        .context("detecting the iptables backend")??;
    tracing::info!("iptables backend: {ipt}");
    Ok((FirewallMode::Iptables, ipt))
}

/// Masquerade and forward rules per address family: applied once now,
/// then re-asserted every `-iptables-resync` seconds in the background.
pub async fn start(
    options: &FirewallOptions,
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
            masquerade: options.masquerade,
            fully_random: options.fully_random,
            forward: options.forward,
        })
        .collect();
    let every = options.resync;
    if options.blackhole_route {
        let own: Vec<IpNet> = [key.v4.map(IpNet::V4), key.v6.map(IpNet::V6)]
            .into_iter()
            .flatten()
            .collect();
        tokio::spawn(keep_blackhole_routes(own, every));
    }
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

/// flannel v0.28's `-ip-blackhole-route`: every `every` (the first time
/// after one period, as flanneld), a blackhole route for each own subnet
/// unless the kernel routes it already.
async fn keep_blackhole_routes(own: Vec<IpNet>, every: std::time::Duration) {
    loop {
        sleep(every).await;
        let own = own.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<Vec<IpNet>, String> {
            let mut nl = weft_kernel::Netlink::open().map_err(|e| e.to_string())?;
            let mut added = Vec::new();
            for dst in own {
                if weft_kernel::ensure_blackhole_route(&mut nl, dst).map_err(|e| e.to_string())? {
                    added.push(dst);
                }
            }
            Ok(added)
        })
        .await;
        match done {
            Ok(Ok(added)) if !added.is_empty() => {
                tracing::info!("blackhole route for {added:?} added (-ip-blackhole-route)")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("blackhole route: {e}"),
            Err(e) => tracing::error!("blackhole route: {e}"),
        }
    }
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

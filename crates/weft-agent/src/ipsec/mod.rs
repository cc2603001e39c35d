//! The ipsec backend, as flanneld v0.28 runs it: no device and no routes;
//! per remote host, kernel policies that put the traffic between the two
//! subnets through ESP in tunnel mode between the hosts' public IPs, and
//! an IKEv2 connection in strongSwan's charon (pre-shared key) that
//! negotiates the keys. The pods' MTU is the underlay's less 77 bytes
//! (85 with UDPEncap).
//!
//! - [`charon`]: finding and starting charon.
//! - [`vici`]: what charon is told, from one worker thread.
//! - [`sink`]: remote leases to policies and charon requests.

mod charon;
pub mod sink;
mod vici;

pub use charon::{find as find_charon, VICI_SOCKET};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use weft_core::config::IpsecConfig;
use weft_core::plan::ipsec::{IpsecPeers, IpsecPlanner};
use weft_core::subnet::Pools;

use crate::underlay::Underlay;
use sink::IpsecSink;

/// Starts charon and the sink for this host's lease `subnet`.
pub fn start(
    cfg: &IpsecConfig,
    pools: &Pools,
    subnet: Option<Ipv4Net>,
    underlay: &Underlay,
) -> Result<IpsecSink> {
    let planner = IpsecPlanner::for_host(pools, subnet, underlay.public_ip)
        .context("the ipsec backend needs an IPv4 network")?;
    let xfrm =
        weft_kernel::Xfrm::open().context("opening the kernel's IPsec (xfrm) netlink socket")?;
    let vici = vici::Vici::start(cfg.clone(), underlay.public_ip)?;
    tracing::info!(udp_encap = cfg.udp_encap, esp_proposal = %cfg.esp_proposal, "ipsec backend ready");
    Ok(IpsecSink::new(IpsecPeers::new(planner), xfrm, vici))
}

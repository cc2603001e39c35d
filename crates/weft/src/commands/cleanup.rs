//! `weft cleanup`: removes what weft (or flanneld) set up on this host —
//! the `flannel.*` vxlan devices (their neighbours and FDB entries go with
//! them) and `flannel0`, routes and nexthop objects into the cluster
//! network, and the masquerade/forward rules in iptables and nftables.
//! Routes outside the cluster network and the kernel's own routes are
//! never touched. Safe to run twice.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use ipnet::IpNet;
use weft_core::plan::{DataPlane, Op};
use weft_core::subnet_file::SubnetEnv;
use weft_kernel::{Netlink, Ownership};

#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    /// The agent's subnet file (tells the cluster network)
    #[arg(long = "subnet-file", default_value = "/run/flannel/subnet.env")]
    subnet_file: PathBuf,
    /// The cluster network(s), when the subnet file is gone (repeatable)
    #[arg(long)]
    network: Vec<IpNet>,
    /// Also delete the subnet file
    #[arg(long)]
    remove_subnet_file: bool,
}

fn is_ours(name: &str, kind: Option<&str>) -> bool {
    (name.starts_with("flannel.") || name.starts_with("flannel-v6.")) && kind == Some("vxlan")
        || name == "flannel0" && kind == Some("tun")
}

pub fn run(a: CleanupArgs) -> Result<()> {
    let env = std::fs::read_to_string(&a.subnet_file)
        .ok()
        .and_then(|t| SubnetEnv::parse(&t).ok());
    let mut networks = a.network.clone();
    if networks.is_empty() {
        if let Some(e) = &env {
            networks.extend(e.network.map(IpNet::V4));
            networks.extend(e.ipv6_network.map(IpNet::V6));
        }
    }
    if networks.is_empty() {
        return Err(anyhow!(
            "cannot tell the cluster network: {} is missing; pass --network",
            a.subnet_file.display()
        ));
    }
    let mut nl = Netlink::open().context("opening netlink")?;
    let mut removed = 0usize;

    // routes and nexthop objects into the cluster network, on any device
    let devices: Vec<u32> = weft_kernel::list_interfaces(&mut nl)?
        .iter()
        .map(|i| i.index)
        .collect();
    let own = Ownership {
        route_devices: devices,
        l2_devices: Vec::new(),
        networks: networks.clone(),
        exclude: Vec::new(),
    };
    let current = weft_kernel::read_dataplane(&mut nl, &own)?;
    let ops: Vec<Op> = weft_core::plan::dataplane::diff(&current, &DataPlane::default());
    let report = weft_kernel::apply(&mut nl, &ops)?;
    for (op, e) in &report.failed {
        eprintln!("weft: could not remove {op:?}: {e}");
    }
    if report.applied > 0 {
        let nets: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
        println!(
            "removed {} routes and {} nexthop objects into {}",
            current.routes.len(),
            current.nexthops.len(),
            nets.join(", ")
        );
        removed += report.applied;
    }

    // devices (their neighbours and FDB entries go with them)
    for link in weft_kernel::list_links(&mut nl)? {
        if is_ours(&link.name, link.kind.as_deref()) {
            weft_kernel::delete_link(&mut nl, link.index)?;
            println!("removed device {}", link.name);
            removed += 1;
        }
    }

    for what in weft_firewall::apply::remove_all()? {
        println!("removed {what}");
        removed += 1;
    }
    if a.remove_subnet_file && a.subnet_file.exists() {
        std::fs::remove_file(&a.subnet_file)
            .with_context(|| format!("removing {}", a.subnet_file.display()))?;
        println!("removed {}", a.subnet_file.display());
        removed += 1;
    }
    if removed == 0 {
        println!("nothing to clean up");
    }
    Ok(())
}

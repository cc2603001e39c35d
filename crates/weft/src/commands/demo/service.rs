//! The article's `example-service` in the demo: exposed through
//! `weft service`, served by `weft proxy` on every host, and asked over
//! real TCP until every endpoint has answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use weft_lab::{Host, Lab};

/// The article's cluster IP and NodePort.
pub const CLUSTER_IP: &str = "10.254.180.209";
pub const NODE_PORT: u16 = 32663;

/// Starts the proxy on every host and exposes the Service with
/// `endpoints` (address, node name).
pub fn expose(lab: &mut Lab, hosts: &[Host], endpoints: &[(String, String)]) -> Result<()> {
    for h in hosts {
        lab.start_proxy(h, &[])?;
    }
    let node_port = NODE_PORT.to_string();
    let expose = [
        "service",
        "expose",
        "example-service",
        "--port",
        "80",
        "--type",
        "NodePort",
        "--node-port",
        &node_port,
        "--cluster-ip",
        CLUSTER_IP,
    ];
    println!("[demo] weft {}", expose.join(" "));
    print!("         {}", lab.weft_client(&expose)?);
    for (ip, node) in endpoints {
        let args = [
            "service",
            "endpoints",
            "add",
            "example-service",
            ip.as_str(),
            "--node",
            node.as_str(),
        ];
        println!("[demo] weft {}", args.join(" "));
        print!("         {}", lab.weft_client(&args)?);
    }
    Ok(())
}

/// Asks the Service at its cluster IP and at the first host's NodePort
/// until all `endpoints` answered (then ten more times), printing who
/// answered how often. `ask` returns the answering endpoint's name.
pub fn check(
    lab: &Lab,
    hosts: &[Host],
    client: &str,
    endpoints: usize,
    mut ask: impl FnMut(SocketAddr) -> Option<String>,
) -> Result<()> {
    let vip = SocketAddr::new(CLUSTER_IP.parse()?, 80);
    let node_port = SocketAddr::new(hosts[0].ip.into(), NODE_PORT);
    for (what, to) in [("cluster IP", vip), ("NodePort", node_port)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = BTreeMap::new();
        while Instant::now() < deadline && seen.len() < endpoints {
            if let Some(name) = ask(to) {
                *seen.entry(name).or_insert(0) += 1;
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for _ in 0..10 {
            if let Some(name) = ask(to) {
                *seen.entry(name).or_insert(0) += 1;
            }
        }
        if seen.len() < endpoints {
            for h in hosts {
                eprintln!("--- proxy log of {} ---\n{}", h.name, lab.proxy_log(h));
            }
            bail!("{what} {to} answered from {seen:?}, not from all {endpoints} endpoints");
        }
        let answers: Vec<String> = seen.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        println!(
            "[demo] tcp {client} -> {what} {to}: answered by {}",
            answers.join(", ")
        );
    }
    Ok(())
}

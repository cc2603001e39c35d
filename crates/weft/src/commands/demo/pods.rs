//! The demo's workloads as bare pods: a namespace per pod on each host's
//! `cni0`, pinging each other, the pods of all hosts but the last serving
//! the Service to the last one.

use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use weft_lab::{tcp_ask, Host, Lab};

use super::service;

/// Runs the pod tour; returns the pod servers (killed by the caller, or
/// left running with a kept demo).
pub fn tour(lab: &mut Lab, hosts: &[Host]) -> Result<Vec<Child>> {
    let mut pods = Vec::new();
    for h in hosts {
        pods.push(lab.pod(h, "nginx")?);
    }
    let mut failures = 0;
    for from in &pods {
        for to in &pods {
            if from == to {
                continue;
            }
            match lab.ping(from, to.ip, Duration::from_secs(10)) {
                Ok(t) => println!(
                    "[demo] ping {}@{} ({}) -> {}@{} ({}): ok after {:.0} ms",
                    from.name,
                    from.host,
                    from.ip,
                    to.name,
                    to.host,
                    to.ip,
                    t.as_secs_f64() * 1e3
                ),
                Err(e) => {
                    failures += 1;
                    println!("[demo] ping FAILED: {e}");
                }
            }
        }
    }
    if failures > 0 {
        for h in hosts {
            eprintln!("--- agent log of {} ---\n{}", h.name, lab.agent_log(h));
        }
        bail!("{failures} pod pairs could not reach each other");
    }
    let pairs = pods.len() * (pods.len() - 1);
    println!(
        "[demo] OK: {pairs} pod pairs across {} hosts reach each other over vxlan",
        hosts.len()
    );

    // The article's Service: the pods of all hosts but the last are its
    // endpoints, the last one the client.
    let servers_of = &pods[..pods.len() - 1];
    let mut servers = Vec::new();
    for p in servers_of {
        let child = std::process::Command::new(&lab.weft)
            .args([
                "demo",
                "serve",
                "--ns",
                &p.ns,
                "--name",
                &format!("{}@{}", p.name, p.host),
                "--port",
                "80",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting a pod server")?;
        servers.push(child);
    }
    let endpoints: Vec<(String, String)> = servers_of
        .iter()
        .map(|p| (p.ip.to_string(), p.host.clone()))
        .collect();
    service::expose(lab, hosts, &endpoints)?;
    let client = pods.last().context("no pods")?;
    service::check(
        lab,
        hosts,
        &format!("{}@{}", client.name, client.host),
        endpoints.len(),
        |to| tcp_ask(&client.ns, to, Duration::from_secs(1)).ok(),
    )?;
    Ok(servers)
}

//! The demo's workloads the way the article runs them: on every host a
//! docker daemon started from the agent's subnet file through
//! `weft docker-opts` (as weft's docker drop-in does: `--bip`, `--mtu`,
//! `--ip-masq=false` because the agent masquerades), one busybox container
//! per host, pings and HTTP across hosts through docker's FORWARD DROP
//! policy, and the article's Service served from the containers.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_lab::{sh, Container, Dockerd, Host, Lab};

use super::service;

const KEY: &str = "DOCKER_NETWORK_OPTIONS";

pub fn tour(lab: &mut Lab, hosts: &[Host]) -> Result<()> {
    let weft = lab.weft.to_string_lossy().into_owned();
    let mut nodes: Vec<(Dockerd, Container)> = Vec::new();
    for h in hosts {
        let opts = lab.dir().join(&h.name).join("docker.env");
        let subnet_file = lab.subnet_file(h).display().to_string();
        let opts_s = opts.display().to_string();
        sh(
            &weft,
            &["docker-opts", "-f", &subnet_file, "-k", KEY, "-d", &opts_s],
        )?;
        let text = std::fs::read_to_string(&opts).with_context(|| format!("reading {opts_s}"))?;
        let line = text
            .lines()
            .find(|l| l.starts_with(KEY))
            .unwrap_or_default();
        println!("[demo] {}: weft docker-opts -k {KEY} -> {line}", h.name);
        let d = Dockerd::start(lab, h, &opts, KEY)?;
        let ns = h.ns.as_str();
        let saved = sh(
            "ip",
            &["netns", "exec", ns, "iptables-save", "-t", "filter"],
        )?;
        let policy = if String::from_utf8_lossy(&saved.stdout).contains(":FORWARD DROP") {
            "DROP"
        } else {
            "ACCEPT"
        };
        let c = d.run(&format!("web-{}", h.name), &[])?;
        println!(
            "[demo] {}: dockerd ${KEY} (FORWARD policy {policy}); docker run {} -> {}",
            h.name, c.name, c.ip
        );
        nodes.push((d, c));
    }

    let mut failures = 0;
    for (d, from) in &nodes {
        for (_, to) in &nodes {
            if from == to {
                continue;
            }
            let ip = to.ip.to_string();
            let started = Instant::now();
            let mut ok = false;
            while !ok && started.elapsed() < Duration::from_secs(10) {
                ok = d.exec(from, &["ping", "-c", "1", "-W", "1", &ip]).is_ok();
            }
            if ok {
                println!(
                    "[demo] docker exec {} ping {} ({ip}): ok after {:.0} ms",
                    from.name,
                    to.name,
                    started.elapsed().as_secs_f64() * 1e3
                );
            } else {
                failures += 1;
                println!("[demo] ping FAILED: {} -> {} ({ip})", from.name, to.name);
            }
        }
    }
    if failures > 0 {
        for h in hosts {
            eprintln!("--- agent log of {} ---\n{}", h.name, lab.agent_log(h));
        }
        bail!("{failures} container pairs could not reach each other");
    }
    println!(
        "[demo] OK: {} container pairs across {} hosts reach each other over vxlan",
        nodes.len() * (nodes.len() - 1),
        hosts.len()
    );
    for (i, (d, from)) in nodes.iter().enumerate() {
        let to = &nodes[(i + 1) % nodes.len()].1;
        let url = format!("http://{}/cgi-bin/who", to.ip);
        let (name, saw) = d.who(from, &url)?;
        println!(
            "[demo] docker exec {} wget {url}: {name} saw {saw} (the client's own address: no masquerade inside the overlay)",
            from.name
        );
    }

    // The article's Service: the containers of all hosts but the last are
    // its endpoints, the last one the client.
    let endpoints: Vec<(String, String)> = nodes[..nodes.len() - 1]
        .iter()
        .map(|(d, c)| (c.ip.to_string(), d.host.name.clone()))
        .collect();
    service::expose(lab, hosts, &endpoints)?;
    let (d, client) = nodes.last().context("no containers")?;
    service::check(lab, hosts, &client.name, endpoints.len(), |to| {
        d.who(client, &format!("http://{to}/cgi-bin/who"))
            .ok()
            .map(|(name, _)| name)
    })?;
    Ok(())
}

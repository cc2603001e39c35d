//! `weft demo`: the article's cluster in network namespaces. Real etcd,
//! three hosts running the agent with the article's config and prefix,
//! a pod per host, and pings across hosts; then everything is torn down.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_lab::Lab;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of hosts
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=20))]
    hosts: u8,
}

const CONFIG: &str =
    r#"{ "Network": "172.30.0.0/16", "SubnetLen": 24, "Backend": { "Type": "vxlan" } }"#;

pub fn run(a: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let weft = std::env::current_exe().context("locating the weft binary")?;
    let mut lab = Lab::new("wdemo", &weft)?;
    println!(
        "[demo] lab {} (network namespaces only; the host is untouched)",
        lab.prefix
    );
    lab.set_etcd_prefix("/kube-centos/network");
    let url = lab.start_etcd()?;
    println!("[demo] etcd running at {url}");
    lab.put_config(CONFIG)?;
    println!("[demo] etcdctl put /kube-centos/network/config '{CONFIG}'");

    let mut hosts = Vec::new();
    for i in 0..a.hosts {
        let h = lab.host(&format!("node{}", i + 1), 11 + i)?;
        lab.start_agent(&h, &[])?;
        hosts.push(h);
    }
    for h in &hosts {
        let env = lab.wait_subnet_env(h, Duration::from_secs(30))?;
        println!(
            "[demo] {} ({}) leased FLANNEL_SUBNET={} FLANNEL_MTU={}",
            h.name,
            h.ip,
            env.subnet.map(|s| s.to_string()).unwrap_or_default(),
            env.mtu.unwrap_or(0)
        );
    }
    println!("[demo] etcdctl get --prefix /kube-centos/network/subnets:");
    let dump = lab.etcdctl(&["get", "--prefix", "/kube-centos/network/subnets/"])?;
    for pair in dump.lines().collect::<Vec<_>>().chunks(2) {
        println!("         {}  {}", pair[0], pair.get(1).unwrap_or(&""));
    }

    let mut pods = Vec::new();
    for h in &hosts {
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
        for h in &hosts {
            eprintln!("--- agent log of {} ---\n{}", h.name, lab.agent_log(h));
        }
        bail!("{failures} pod pairs could not reach each other");
    }
    let pairs = pods.len() * (pods.len() - 1);
    println!("[demo] OK: {pairs} pod pairs across {} hosts reach each other over vxlan ({:.1} s); tearing down", hosts.len(), started.elapsed().as_secs_f64());
    Ok(())
}

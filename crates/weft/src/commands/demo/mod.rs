//! `weft demo`: the article's cluster in network namespaces. Real etcd,
//! three hosts running the agent with the article's config and prefix,
//! workloads on every host reaching each other (bare pod namespaces, or
//! with `--docker` real docker daemons started from `weft docker-opts` and
//! their containers), the article's `example-service` served by
//! `weft proxy` (cluster IP and NodePort over real TCP), `weft status`;
//! then everything is torn down — or, with `--keep`, left running until
//! `weft demo down`.

mod docker;
#[cfg(feature = "kubernetes-demo")]
mod kubernetes;
mod pods;
mod service;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_lab::{sh, Host, KeptLab, Lab};

#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Number of hosts
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=20))]
    hosts: u8,
    /// Leave the cluster running (remove it with `weft demo down`)
    #[arg(long, conflicts_with = "docker")]
    keep: bool,
    /// Run the article's Docker setup: a docker daemon per host started
    /// from `weft docker-opts`, containers instead of bare pod namespaces
    /// (needs Debian's docker.io and busybox-static)
    #[arg(long)]
    docker: bool,
    /// The article's Kubernetes part on a real cluster networked by weft:
    /// kube-apiserver, controller-manager, scheduler, and per host
    /// containerd and the kubelet with weft's CNI plugin, agent and proxy,
    /// CoreDNS; nginx pods behind a NodePort Service
    /// (`./scripts/demo.sh --kubernetes` builds what it needs)
    #[arg(long, conflicts_with_all = ["docker", "keep"])]
    kubernetes: bool,
}

#[derive(clap::Subcommand)]
enum DemoCommand {
    /// Remove a cluster left by `weft demo --keep`
    Down,
    /// (internal) answer TCP/UDP on a port inside a pod with the pod's name
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        ns: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        port: u16,
    },
}

/// Where `--keep` records what `weft demo down` removes
/// (`WEFT_DEMO_STATE` overrides it).
fn kept_path() -> String {
    std::env::var("WEFT_DEMO_STATE").unwrap_or_else(|_| "/run/weft-demo.json".into())
}

const CONFIG: &str =
    r#"{ "Network": "172.30.0.0/16", "SubnetLen": 24, "Backend": { "Type": "vxlan" } }"#;
const PREFIX: &str = "/kube-centos/network";

pub fn run(a: DemoArgs) -> Result<()> {
    match a.command {
        Some(DemoCommand::Down) => return down(),
        Some(DemoCommand::Serve { ns, name, port }) => return serve(ns, name, port),
        None => {}
    }
    if a.kubernetes {
        return kubernetes_tour(a.hosts);
    }
    let kept_file = kept_path();
    if a.keep && std::path::Path::new(&kept_file).exists() {
        bail!("a kept demo is running ({kept_file}): remove it first with `weft demo down`");
    }
    let started = Instant::now();
    let weft = std::env::current_exe().context("locating the weft binary")?;
    let mut lab = Lab::new("wdemo", &weft)?;
    println!(
        "[demo] lab {} (network namespaces only; the host is untouched)",
        lab.prefix
    );
    lab.set_etcd_prefix(PREFIX);
    let url = lab.start_etcd()?;
    println!("[demo] etcd running at {url}");
    lab.put_config(CONFIG)?;
    println!("[demo] etcdctl put {PREFIX}/config '{CONFIG}'");

    let mut hosts = Vec::new();
    for i in 0..a.hosts {
        let h = lab.host(&format!("node{}", i + 1), 11 + i)?;
        if a.docker {
            // a freshly booted CentOS 7 host: forwarding off until docker
            // turns it on (and sets the FORWARD policy to DROP)
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &h.ns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=0",
                ],
            )?;
        }
        // with -ip-masq, `weft docker-opts` tells docker --ip-masq=false
        let flags: &[&str] = if a.docker { &["-ip-masq"] } else { &[] };
        lab.start_agent(&h, flags)?;
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
    println!("[demo] etcdctl get --prefix {PREFIX}/subnets:");
    let dump = lab.etcdctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])?;
    for pair in dump.lines().collect::<Vec<_>>().chunks(2) {
        println!("         {}  {}", pair[0], pair.get(1).unwrap_or(&""));
    }
    for h in &hosts {
        // Nodes route service addresses somewhere (a default route in real
        // life); the proxy's DNAT happens before that route is used.
        sh(
            "ip",
            &["-n", &h.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
        )?;
    }

    if a.docker {
        docker::tour(&mut lab, &hosts)?;
    } else {
        let servers = pods::tour(&mut lab, &hosts)?;
        print_status(&lab, &hosts[0])?;
        finished(started);
        if a.keep {
            let pids: Vec<u32> = servers.iter().map(|c| c.id()).collect();
            let kept = lab.keep(&pids);
            std::fs::write(&kept_file, serde_json::to_string_pretty(&kept)?)
                .with_context(|| format!("writing {kept_file}"))?;
            println!("[demo] kept running (namespaces {}-*); enter a host with `ip netns exec {}-node1 bash`;", kept.prefix, kept.prefix);
            println!("[demo] remove it with `weft demo down`");
            std::mem::forget(servers);
            return Ok(());
        }
        for mut s in servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        println!("[demo] tearing down");
        return Ok(());
    }
    print_status(&lab, &hosts[0])?;
    finished(started);
    println!("[demo] tearing down");
    Ok(())
}

#[cfg(feature = "kubernetes-demo")]
fn kubernetes_tour(hosts: u8) -> Result<()> {
    kubernetes::tour(hosts)
}

#[cfg(not(feature = "kubernetes-demo"))]
fn kubernetes_tour(_hosts: u8) -> Result<()> {
    bail!("--kubernetes: this weft was built without the Kubernetes demo; run ./scripts/demo.sh --kubernetes")
}

fn finished(started: Instant) {
    println!(
        "[demo] OK: the overlay, the Service and the status check work ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// `weft status` on `host`, indented under a heading.
fn print_status(lab: &Lab, host: &Host) -> Result<()> {
    let weft = lab.weft.to_string_lossy().into_owned();
    let status = sh(
        "ip",
        &[
            "netns",
            "exec",
            &host.ns,
            &weft,
            "status",
            "--iface",
            "eth0",
            "--ping",
            "--etcd-prefix",
            PREFIX,
            &format!("--etcd-endpoints={}", lab.etcd_url()?),
            &format!("--subnet-file={}", lab.subnet_file(host).display()),
        ],
    )?;
    println!("[demo] weft status (on {}):", host.name);
    for line in String::from_utf8_lossy(&status.stdout).lines() {
        println!("         {line}");
    }
    Ok(())
}

fn down() -> Result<()> {
    let file = kept_path();
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("no kept demo ({file} is missing)"))?;
    let kept: KeptLab = serde_json::from_str(&text).with_context(|| format!("reading {file}"))?;
    kept.tear_down();
    std::fs::remove_file(&file).with_context(|| format!("removing {file}"))?;
    println!(
        "[demo] removed {} namespaces and {} processes of {}",
        kept.namespaces.len(),
        kept.pids.len(),
        kept.prefix
    );
    Ok(())
}

fn serve(ns: String, name: String, port: u16) -> Result<()> {
    let pod = weft_lab::Pod {
        name,
        ns,
        ip: std::net::Ipv4Addr::UNSPECIFIED,
        ip6: None,
        host: String::new(),
    };
    let _server = weft_lab::serve_name(&pod, port)?;
    loop {
        std::thread::park();
    }
}

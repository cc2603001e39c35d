//! `weft demo`: the article's cluster in network namespaces. Real etcd,
//! three hosts running the agent with the article's config and prefix, a
//! pod per host pinging the others, the article's `example-service` served
//! by `weft proxy` (cluster IP and NodePort over real TCP), `weft status`;
//! then everything is torn down — or, with `--keep`, left running until
//! `weft demo down`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_lab::{sh, tcp_ask, KeptLab, Lab};

#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Number of hosts
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=20))]
    hosts: u8,
    /// Leave the cluster running (remove it with `weft demo down`)
    #[arg(long)]
    keep: bool,
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

pub fn run(a: DemoArgs) -> Result<()> {
    match a.command {
        Some(DemoCommand::Down) => return down(),
        Some(DemoCommand::Serve { ns, name, port }) => return serve(ns, name, port),
        None => {}
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
    println!(
        "[demo] OK: {pairs} pod pairs across {} hosts reach each other over vxlan",
        hosts.len()
    );

    // The article's Service, served by weft proxy on every host: the pods
    // of all hosts but the last are its endpoints, the last one the client.
    for h in &hosts {
        // Nodes route service addresses somewhere (a default route in real
        // life); the proxy's DNAT happens before that route is used.
        sh(
            "ip",
            &["-n", &h.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
        )?;
        lab.start_proxy(h, &[])?;
    }
    let mut servers = Vec::new();
    for p in pods.iter().take(pods.len() - 1) {
        let child = std::process::Command::new(&weft)
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
    let expose = [
        "service",
        "expose",
        "example-service",
        "--port",
        "80",
        "--type",
        "NodePort",
        "--node-port",
        "32663",
        "--cluster-ip",
        "10.254.180.209",
    ];
    println!("[demo] weft {}", expose.join(" "));
    print!("         {}", lab.weft_client(&expose)?);
    for p in pods.iter().take(pods.len() - 1) {
        let ip = p.ip.to_string();
        let args = [
            "service",
            "endpoints",
            "add",
            "example-service",
            ip.as_str(),
            "--node",
            p.host.as_str(),
        ];
        println!("[demo] weft {}", args.join(" "));
        print!("         {}", lab.weft_client(&args)?);
    }
    let client = pods.last().context("no pods")?;
    let vip: std::net::SocketAddr = "10.254.180.209:80".parse()?;
    let node_port = std::net::SocketAddr::new(hosts[0].ip.into(), 32663);
    for (what, to) in [("cluster IP", vip), ("NodePort", node_port)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = std::collections::BTreeMap::new();
        let endpoints = pods.len() - 1;
        while Instant::now() < deadline && seen.len() < endpoints {
            if let Ok(name) = tcp_ask(&client.ns, to, Duration::from_secs(1)) {
                *seen.entry(name).or_insert(0) += 1;
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for _ in 0..10 {
            if let Ok(name) = tcp_ask(&client.ns, to, Duration::from_secs(1)) {
                *seen.entry(name).or_insert(0) += 1;
            }
        }
        if seen.len() < endpoints {
            for h in &hosts {
                eprintln!("--- proxy log of {} ---\n{}", h.name, lab.proxy_log(h));
            }
            bail!("{what} {to} answered from {seen:?}, not from all {endpoints} endpoints");
        }
        let answers: Vec<String> = seen.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        println!(
            "[demo] tcp {}@{} -> {what} {to}: answered by {}",
            client.name,
            client.host,
            answers.join(", ")
        );
    }

    let status = sh(
        "ip",
        &[
            "netns",
            "exec",
            &hosts[0].ns,
            &weft.to_string_lossy(),
            "status",
            "--iface",
            "eth0",
            "--ping",
            "--etcd-prefix",
            "/kube-centos/network",
            &format!("--etcd-endpoints={}", lab.etcd_url()?),
            &format!("--subnet-file={}", lab.subnet_file(&hosts[0]).display()),
        ],
    )?;
    println!("[demo] weft status (on {}):", hosts[0].name);
    for line in String::from_utf8_lossy(&status.stdout).lines() {
        println!("         {line}");
    }
    println!(
        "[demo] OK: the overlay, the Service and the status check work ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

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

//! `weft status`: the cluster's lease table (subnet, public IP, backend,
//! VTEP MAC, which one is this host; from etcd with the time left on each
//! lease, or, with `--kube-subnet-mgr`, from the Nodes' annotations with
//! each lease's Node), the local data path compared with what those
//! leases require (the agent's own planner, so "missing" and "stale" mean
//! what the agent would fix), and optionally whether each peer answers a
//! ping over the overlay.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use weft_agent::network::Network;
use weft_agent::reconcile::{Reconciler, Sink};
use weft_agent::underlay::{self, Selector};
use weft_core::admission::Rules;
use weft_core::config::{BackendConfig, NetConfig};
use weft_core::lease::{Lease, LeaseKey};
use weft_core::plan::ipsec::{Drift, IpsecPeers, IpsecPlanner, Policy};
use weft_core::plan::Op;
use weft_core::subnet_file::SubnetEnv;
use weft_etcd::Registry;

use super::kube_args::KubeArgs;
use weft_proxy::cli::etcd_args::EtcdArgs;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    kube: KubeArgs,
    /// The agent's subnet file (tells which lease is this host's)
    #[arg(long = "subnet-file", default_value = "/run/flannel/subnet.env")]
    subnet_file: PathBuf,
    /// Interface for inter-host traffic, as given to the agent (-iface)
    #[arg(long)]
    iface: Vec<String>,
    /// Also ping every peer's overlay address (1 s timeout each)
    #[arg(long)]
    ping: bool,
    /// table or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
    /// wireguard backend: the agent's --wireguard-socket-dir
    #[arg(long = "wireguard-socket-dir", env = "FLANNELD_WIREGUARD_SOCKET_DIR", default_value = weft_agent::options::DEFAULT_WG_SOCKET_DIR)]
    wireguard_socket_dir: PathBuf,
}

/// One lease and where it lives: its etcd lease's seconds left (-1: none
/// or unknown) or its Node.
struct Row {
    lease: Lease,
    expires_in: Option<i64>,
    node: Option<String>,
}

/// The cluster as the agent sees it.
struct Cluster {
    network: Network,
    rows: Vec<Row>,
    /// Nodes whose lease the agent leaves out, with why.
    left_out: Vec<String>,
}

async fn from_etcd(etcd_args: &EtcdArgs) -> Result<Cluster> {
    let etcd = weft_etcd::connect(&etcd_args.options()).await?;
    let mut reg = Registry::new(etcd.clone(), &etcd_args.prefix);
    let config = reg
        .config()
        .await?
        .ok_or_else(|| anyhow!("no network config at {}", reg.config_key()))?;
    let net = NetConfig::parse(&config).map_err(|e| anyhow!("network config: {e}"))?;
    let network = Network::from_config(net).map_err(|e| anyhow!("network config: {e}"))?;
    let listing = reg.list().await?;
    let mut rows = Vec::with_capacity(listing.leases.len());
    for r in listing.leases {
        let ttl = match r.etcd_lease {
            0 => -1,
            id => etcd
                .call(&format!("reading lease {id:x}"), |mut c| async move {
                    c.lease_time_to_live(id, None).await
                })
                .await
                .map(|t| t.ttl())
                .unwrap_or(-1),
        };
        rows.push(Row {
            lease: r.into_lease(),
            expires_in: Some(ttl),
            node: None,
        });
    }
    Ok(Cluster {
        network,
        rows,
        left_out: Vec::new(),
    })
}

async fn from_kube(kube_args: &KubeArgs) -> Result<Cluster> {
    let network = kube_args.network()?;
    let client = kube_args.client().await?;
    let listed = weft_agent::source::kube::list_leases(
        client,
        &kube_args.flags.kube_annotation_prefix,
        &network,
    )
    .await?;
    let rows = listed
        .leases
        .into_iter()
        .map(|(node, lease)| Row {
            lease,
            expires_in: None,
            node: Some(node),
        })
        .collect();
    Ok(Cluster {
        network,
        rows,
        left_out: listed.left_out,
    })
}

fn describe(op: &Op) -> String {
    match op {
        Op::ReplaceRoute(r) | Op::DeleteRoute(r) => format!("route {}", r.dst),
        Op::ReplaceNexthop(n) | Op::DeleteNexthop(n) => format!("nexthop {}", n.id),
        Op::ReplaceNeigh(n) | Op::DeleteNeigh(n) => format!("neighbour {} {}", n.ip, n.mac),
        Op::ReplaceFdb(f) | Op::DeleteFdb(f) => format!("fdb {} dst {}", f.mac, f.dst),
    }
}

fn ping(addr: IpAddr) -> bool {
    std::process::Command::new("ping")
        .args(["-c1", "-W1", "-q", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 0 => "-".into(),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// `--ping` runs the system's `ping`: said at once when there is none.
fn check_ping_program() -> Result<()> {
    match std::process::Command::new("ping")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "--ping runs the ping program (Debian: iputils-ping), which is not on PATH"
            )
        }
        _ => Ok(()),
    }
}

pub fn run(a: StatusArgs) -> Result<()> {
    if a.ping {
        check_ping_program()?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let cluster = rt.block_on(async {
        if a.kube.flags.kube_subnet_mgr {
            from_kube(&a.kube).await
        } else {
            from_etcd(&a.etcd).await
        }
    })?;
    let (pools, backend) = (&cluster.network.pools, &cluster.network.backend);
    let records = &cluster.rows;
    let env = std::fs::read_to_string(&a.subnet_file)
        .ok()
        .and_then(|t| SubnetEnv::parse(&t).ok());
    // this host's lease: the one holding exactly the subnet file's subnets
    // (another key may claim one of them; the agent leaves that one out)
    let own = records.iter().map(|r| &r.lease).find(|r| {
        env.as_ref().is_some_and(|e| {
            e.subnet.map(|s| s.trunc()) == r.key.v4 && e.ipv6_subnet.map(|s| s.trunc()) == r.key.v6
        })
    });

    // What the agent leaves out, by the same checks.
    let rules = match (a.kube.flags.kube_subnet_mgr, own) {
        (true, Some(o)) => Rules::from_pools_and_own(pools.v4.as_ref(), pools.v6.as_ref(), &o.key),
        _ => Rules::from_pools(pools.v4.as_ref(), pools.v6.as_ref()),
    };
    let listing: Vec<(Option<String>, Lease)> = records
        .iter()
        .map(|r| (r.node.clone(), r.lease.clone()))
        .collect();
    let refused_lines = weft_agent::source::left_out(rules, own.map(|o| o.key), &listing);
    drop(listing);
    // a lease is marked when a line names it
    let is_left_out = |r: &Lease, node: Option<&str>| {
        refused_lines.iter().any(|l| match node {
            Some(n) => l.starts_with(&format!("Node {n}:")),
            None => l.starts_with(&format!("lease {}:", r.key)),
        })
    };
    let mut left_out = cluster.left_out.clone();
    left_out.extend(refused_lines.iter().cloned());

    // The local data path against what the leases require.
    let dataplane = match own {
        Some(own) => dataplane(&a.iface, &cluster.network, own, rules, records)?,
        None => serde_json::Value::Null,
    };

    let leases: Vec<serde_json::Value> = records
        .iter()
        .map(|row| {
            let this = own.is_some_and(|o| o.key == row.lease.key);
            lease_json(
                row,
                this,
                a.ping,
                is_left_out(&row.lease, row.node.as_deref()),
            )
        })
        .collect();

    // where this host's iptables rules go (the agent's and the proxy's choice)
    let iptables = weft_firewall::backend::detect(weft_firewall::BackendChoice::Auto)
        .map_or_else(|e| format!("unknown: {e}"), |i| i.to_string());
    let wireguard = wireguard_report(backend, pools, &a.wireguard_socket_dir);
    if a.output == "json" {
        let out = json!({
            "wireguard": wireguard,
            "network": pools.v4.as_ref().map(|p| p.network().to_string()),
            "ipv6_network": pools.v6.as_ref().map(|p| p.network().to_string()),
            "backend": backend.type_name(),
            "iptables_backend": iptables,
            "source": if a.kube.flags.kube_subnet_mgr { "kubernetes" } else { "etcd" },
            "leases": leases,
            "left_out": left_out,
            "dataplane": dataplane,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let remote = records.len().saturating_sub(1 + refused_lines.len());
    let report = Report {
        leases: &leases,
        left_out: &left_out,
        dataplane: &dataplane,
        remote,
        wireguard: &wireguard,
    };
    print_text(&a, &cluster, &report);
    println!("iptables backend: {iptables}");
    Ok(())
}

/// The data path `own`'s agent should hold against what the kernel holds:
/// `{in_sync, missing, stale}`.
fn dataplane(
    iface: &[String],
    network: &Network,
    own: &Lease,
    rules: Rules,
    records: &[Row],
) -> Result<serde_json::Value> {
    let (pools, backend) = (&network.pools, &network.backend);
    let mut nl = weft_kernel::Netlink::open().context("opening netlink")?;
    let sel = Selector {
        iface: iface.to_vec(),
        ..Selector::default()
    };
    let under = underlay::discover(&mut nl, &sel).context("finding the underlay interface")?;
    let names: Vec<(String, bool)> = match &backend {
        BackendConfig::Vxlan(vx) => vec![
            (format!("flannel.{}", vx.vni), pools.v4.is_some()),
            (format!("flannel-v6.{}", vx.vni), pools.v6.is_some()),
        ],
        BackendConfig::Ipip(_) => vec![(weft_agent::ipip::DEVICE.to_string(), true)],
        _ => Vec::new(),
    };
    let mut devices = Vec::new();
    for (name, wanted) in names {
        if !wanted {
            continue;
        }
        match weft_kernel::link_by_name(&mut nl, &name)? {
            Some(l) => devices.push(l.index),
            None => return Err(anyhow!("{name} does not exist: is the agent running?")),
        }
    }
    let nexthops = weft_kernel::supports_nexthops(&mut nl);
    let (planners, ownership) =
        weft_agent::datapath::kernel_plan(backend, pools, own.key, &under, &devices, nexthops);
    let sink = Sink {
        planners,
        udp: None,
        wireguard: None,
        extension: None,
        ipsec: None,
    };
    let mut rec = Reconciler::new(nl, sink, ownership, own.key, rules);
    let leases: Vec<Lease> = records.iter().map(|r| r.lease.clone()).collect();
    rec.reset(&leases);
    let ops = rec.drift()?;
    let adds = |o: &&Op| {
        matches!(
            o,
            Op::ReplaceRoute(_) | Op::ReplaceNexthop(_) | Op::ReplaceNeigh(_) | Op::ReplaceFdb(_)
        )
    };
    let mut missing: Vec<String> = ops.iter().filter(adds).map(describe).collect();
    let mut stale: Vec<String> = ops.iter().filter(|o| !adds(o)).map(describe).collect();
    let planner = IpsecPlanner::for_host(pools, own.key.v4, under.public_ip);
    if let (BackendConfig::Ipsec(_), Some(planner)) = (backend, planner) {
        let refused: HashSet<LeaseKey> = rec.refused().map(|(k, _)| *k).collect();
        let admitted = leases.iter().filter(|l| !refused.contains(&l.key));
        let drift = ipsec_drift(planner, admitted)?;
        let show = |p: &Policy| format!("ipsec policy {p}");
        missing.extend(drift.missing.iter().map(show));
        stale.extend(drift.stale.iter().map(show));
    }
    let in_sync = missing.is_empty() && stale.is_empty();
    Ok(json!({"in_sync": in_sync, "missing": missing, "stale": stale}))
}

/// The ipsec backend's kernel policies against the plan of `leases`.
fn ipsec_drift<'a>(
    planner: IpsecPlanner,
    leases: impl Iterator<Item = &'a Lease>,
) -> Result<Drift> {
    let mut peers = IpsecPeers::new(planner);
    for l in leases.filter(|l| l.key.v4 != Some(planner.local.subnet)) {
        // unusable leases are the agent's to report
        let _ = peers.upsert(l);
    }
    let mut xfrm = weft_kernel::Xfrm::open().context("opening the XFRM netlink socket")?;
    Ok(peers.drift(xfrm.policies()?))
}

/// One lease as `weft status -o json` lists it.
fn lease_json(row: &Row, this: bool, ping_it: bool, left_out: bool) -> serde_json::Value {
    let r = &row.lease;
    let mac = r
        .attrs
        .vxlan_data("", false)
        .ok()
        .map(|d| d.vtep_mac.to_string());
    let reachable = (ping_it && !this)
        .then(|| r.key.v4.map(|s| ping(IpAddr::V4(s.network()))))
        .flatten();
    json!({
        "subnet": r.key.v4.map(|s| s.to_string()),
        "ipv6_subnet": r.key.v6.map(|s| s.to_string()),
        "public_ip": r.attrs.public_ip.to_string(),
        "backend": r.attrs.backend(),
        "vtep_mac": mac,
        "expires_in_seconds": row.expires_in,
        "node": row.node,
        "this_host": this,
        "left_out": left_out,
        "reachable": reachable,
    })
}

/// What `weft status` found, for the human-readable report.
struct Report<'a> {
    leases: &'a [serde_json::Value],
    left_out: &'a [String],
    dataplane: &'a serde_json::Value,
    /// Remote leases the agent programs.
    remote: usize,
    wireguard: &'a serde_json::Value,
}

/// The human-readable report (all but the iptables backend).
fn print_text(a: &StatusArgs, cluster: &Cluster, r: &Report<'_>) {
    let (pools, backend) = (&cluster.network.pools, &cluster.network.backend);
    let records = &cluster.rows;
    let Report {
        leases,
        left_out,
        dataplane,
        remote,
        wireguard,
    } = *r;
    println!(
        "network {} backend {}, {} leases",
        pools
            .v4
            .as_ref()
            .map(|p| p.network().to_string())
            .unwrap_or_else(|| "-".into()),
        backend.type_name(),
        records.len()
    );
    let mut rows = vec![[
        "SUBNET".to_string(),
        "PUBLIC IP".into(),
        "BACKEND".into(),
        "VTEP MAC".into(),
        if a.kube.flags.kube_subnet_mgr {
            "NODE".into()
        } else {
            "EXPIRES".into()
        },
        "REACHABLE".into(),
        "".into(),
    ]];
    for l in leases {
        let s = |k: &str| l[k].as_str().unwrap_or("-").to_string();
        rows.push([
            l["subnet"]
                .as_str()
                .or(l["ipv6_subnet"].as_str())
                .unwrap_or("-")
                .to_string(),
            s("public_ip"),
            s("backend"),
            s("vtep_mac"),
            match l["node"].as_str() {
                Some(node) => node.to_string(),
                None => human(l["expires_in_seconds"].as_i64().unwrap_or(-1)),
            },
            match l["reachable"].as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
            if l["this_host"].as_bool() == Some(true) {
                "<- this host".into()
            } else if l["left_out"] == true {
                "LEFT OUT".into()
            } else {
                String::new()
            },
        ]);
    }
    print!("{}", super::table(&rows));
    for why in left_out {
        println!("left out: {why}");
    }
    match dataplane {
        serde_json::Value::Null => println!(
            "data path: not checked ({} has no lease of this cluster)",
            a.subnet_file.display()
        ),
        d if d["in_sync"] == true => {
            println!("data path: in sync with the {remote} remote leases")
        }
        d => {
            for m in d["missing"].as_array().into_iter().flatten() {
                println!("data path: MISSING {}", m.as_str().unwrap_or(""));
            }
            for m in d["stale"].as_array().into_iter().flatten() {
                println!("data path: STALE {}", m.as_str().unwrap_or(""));
            }
        }
    }
    for d in wireguard.as_array().into_iter().flatten() {
        let name = d["device"].as_str().unwrap_or("");
        let what = d["implementation"].as_str().unwrap_or("");
        match d["error"].as_str() {
            Some(e) => println!("wireguard {name}: {what}: {e}"),
            None => println!(
                "wireguard {name}: {what}, port {}, {} peers, {} with a handshake (`wg show {name}` for more)",
                d["listen_port"], d["peers"], d["handshakes"]
            ),
        }
    }
}

/// The wireguard backend's devices (Null for other backends).
fn wireguard_report(
    backend: &BackendConfig,
    pools: &weft_core::subnet::Pools,
    socket_dir: &std::path::Path,
) -> serde_json::Value {
    let BackendConfig::Wireguard(cfg) = backend else {
        return serde_json::Value::Null;
    };
    let Ok(mut nl) = weft_kernel::Netlink::open() else {
        return serde_json::Value::Null;
    };
    let reports = weft_agent::wireguard::inspect(
        &mut nl,
        cfg.mode,
        pools.v4.is_some(),
        pools.v6.is_some(),
        socket_dir,
    );
    serde_json::Value::Array(
        reports
            .into_iter()
            .map(|r| match r.state {
                Ok(s) => json!({"device": r.device, "implementation": r.implementation,
                    "listen_port": s.listen_port, "peers": s.peers, "handshakes": s.handshakes}),
                Err(e) => {
                    json!({"device": r.device, "implementation": r.implementation, "error": e})
                }
            })
            .collect(),
    )
}

//! `weft-cluster`: the lab's real Kubernetes cluster networked by weft,
//! kept running for a person or a script (the conformance run) until
//! SIGINT or SIGTERM, then torn down by PID.
//!
//!   weft-cluster --weft target/release/weft [--nodes 3] [--proxy-mode iptables]
//!                [--backend vxlan] [--network weft|upstream] [--weft-image FILE]
//!                [--ready-file FILE]
//!
//! `--weft-image` (the archive scripts/image.sh writes) runs weft as
//! dist/kubernetes's DaemonSets from that image instead of as node
//! processes. `--network upstream` networks the same cluster with flanneld, flannel's
//! CNI plugin and kube-proxy instead (the conformance run's control).
//!
//! Once every node is Ready it prints, and writes to `--ready-file`, the
//! admin kubeconfig, the control plane's network namespace (where
//! kubectl and e2e.test reach the API server) and the nodes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use weft_lab::kube_cluster::{ClusterOptions, KubeCluster, Network};

const USAGE: &str = "usage: weft-cluster --weft FILE [--nodes 3] [--proxy-mode iptables|nftables]
                    [--backend vxlan] [--network weft|upstream] [--weft-image FILE]
                    [--ready-file FILE]
Starts a real Kubernetes cluster in network namespaces, networked by weft
(or, with --network upstream, by flanneld and kube-proxy), and keeps it
until SIGINT or SIGTERM. --weft-image runs weft as dist/kubernetes's
DaemonSets from that archive (scripts/image.sh).";

struct Args {
    weft: PathBuf,
    opts: ClusterOptions,
    ready_file: Option<PathBuf>,
}

fn parse() -> Result<Args> {
    let mut weft = None;
    let mut opts = ClusterOptions {
        nodes: 3,
        ..ClusterOptions::default()
    };
    let mut ready_file = None;
    let mut weft_image = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--weft" => weft = Some(PathBuf::from(value()?)),
            "--nodes" => opts.nodes = value()?.parse().context("--nodes: not a number of nodes")?,
            "--proxy-mode" => opts.proxy_mode = value()?,
            "--backend" => opts.backend = value()?,
            "--network" => opts.network = Network::parse(&value()?).context("--network")?,
            "--weft-image" => weft_image = Some(PathBuf::from(value()?)),
            "--ready-file" => ready_file = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    let weft = weft.context("--weft names the weft binary the nodes run")?;
    if let Some(image) = weft_image {
        if opts.network != Network::Weft {
            bail!("--weft-image: only with --network weft");
        }
        if !image.is_file() {
            bail!(
                "--weft-image: {} is not a file (scripts/image.sh writes it)",
                image.display()
            );
        }
        // the nodes' ctr runs elsewhere: an absolute path
        let image = std::path::absolute(&image).context("--weft-image")?;
        opts.network = Network::WeftDaemonSets(image);
    }
    if !(1..=9).contains(&opts.nodes) {
        bail!("--nodes: 1 to 9 nodes");
    }
    Ok(Args {
        weft,
        opts,
        ready_file,
    })
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-cluster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = parse()?;
    let mut c = KubeCluster::start("wc", &args.weft, &args.opts)?;
    // the signals that end the cluster are waited for, not delivered
    // (blocked only now: the cluster's programs must not inherit the mask)
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .context("blocking SIGINT and SIGTERM")?;
    // a signal while the cluster comes up makes the wait give up (and the
    // cluster is torn down by its drop)
    let abort = c.abort_flag();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            abort.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = tx.send(sig);
        }
    });
    c.wait_ready(Duration::from_secs(180))?;
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.name(), n.host.ip))
        .collect();
    let text = format!(
        "KUBECONFIG={}\nCONTROL_PLANE_NETNS={}\nKUBECTL={}\nNODES=\"{}\"\nLAB_DIR={}\n",
        c.api.admin_kubeconfig()?.display(),
        c.api.host.ns,
        c.api.bin.join("kubectl").display(),
        nodes.join(" "),
        c.lab.dir().display(),
    );
    print!("{text}");
    if let Some(f) = &args.ready_file {
        std::fs::write(f, &text).with_context(|| format!("writing {}", f.display()))?;
    }
    let sig = rx.recv().context("waiting for SIGINT or SIGTERM")?;
    eprintln!("weft-cluster: {sig:?}, stopping the cluster");
    drop(c);
    Ok(())
}

//! `weft-bench --scenario datapath`: pod-to-pod TCP throughput (iperf3)
//! over each backend, next to hand-built kernel equivalents in the same
//! run (a vxlan set up by hand exactly as flannel's, and plain routes)
//! and, for the udp backend, next to upstream flanneld's udp backend on
//! the same kind of lab in the same interleaved rounds.

use std::time::Duration;

use anyhow::{Context, Result};
use weft_core::subnet_file::SubnetEnv;
use weft_lab::{sh, Host, Lab, Pod};

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// One two-host set-up, built before any measuring starts.
struct Setup {
    lab: Lab,
    a: Pod,
    b: Pod,
    gbps: Vec<f64>,
}

impl Setup {
    fn new(mut lab: Lab, hosts: &[Host]) -> Result<Setup> {
        let a = lab.pod(&hosts[0], "a")?;
        let b = lab.pod(&hosts[1], "b")?;
        lab.ping(&a, b.ip, Duration::from_secs(10))?;
        Ok(Setup {
            lab,
            a,
            b,
            gbps: Vec::new(),
        })
    }
}

/// The agent a set-up runs on both of its hosts.
enum Agent<'a> {
    Weft,
    /// Upstream flanneld, this binary, with flanneld's flags.
    Flanneld(&'a std::path::Path),
}

/// Two hosts running `agent` with `config` and extra agent `flags`.
fn with_agent(weft: &std::path::Path, agent: Agent, config: &str, flags: &[&str]) -> Result<Setup> {
    let mut lab = Lab::new("wdp", weft)?;
    lab.start_etcd()?;
    lab.put_config(config)?;
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i))
        .collect::<Result<_>>()?;
    for h in &hosts {
        match agent {
            Agent::Weft => lab.start_agent(h, flags)?,
            Agent::Flanneld(bin) => {
                let args = lab.flanneld_args(h, flags)?;
                lab.start_agent_with(h, &bin.to_string_lossy(), &args, &[])?;
            }
        }
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(20))?;
    }
    Setup::new(lab, &hosts)
}

/// Two hosts wired by hand with `ip`: `vxlan` as flannel's data path, else plain routes.
fn hand_built(weft: &std::path::Path, vxlan: bool) -> Result<Setup> {
    let mut lab = Lab::new("wdp", weft)?;
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i))
        .collect::<Result<_>>()?;
    let mtu = if vxlan { 1450 } else { 1500 };
    let subnet = |i: usize| format!("100.64.{}.0/24", i + 1);
    let mac = |i: usize| format!("02:00:00:00:00:{:02x}", i + 1);
    for (i, h) in hosts.iter().enumerate() {
        let env = SubnetEnv::parse(&format!(
            "FLANNEL_NETWORK=100.64.0.0/16\nFLANNEL_SUBNET=100.64.{}.1/24\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=false\n",
            i + 1
        ))?;
        lab.write_subnet_env(h, &env)?;
        let o = 1 - i;
        let peer = &hosts[o];
        if vxlan {
            let ns = h.ns.as_str();
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "link",
                    "add",
                    "vx0",
                    "address",
                    &mac(i),
                    "mtu",
                    "1450",
                    "type",
                    "vxlan",
                    "id",
                    "1",
                    "local",
                    &h.ip.to_string(),
                    "dstport",
                    "8472",
                    "nolearning",
                ],
            )?;
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("100.64.{}.0/32", i + 1),
                    "dev",
                    "vx0",
                ],
            )?;
            sh("ip", &["-n", ns, "link", "set", "vx0", "up"])?;
            let gw = format!("100.64.{}.0", o + 1);
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "neigh",
                    "add",
                    &gw,
                    "lladdr",
                    &mac(o),
                    "dev",
                    "vx0",
                    "nud",
                    "permanent",
                ],
            )?;
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "bridge",
                    "fdb",
                    "add",
                    &mac(o),
                    "dev",
                    "vx0",
                    "dst",
                    &peer.ip.to_string(),
                    "self",
                    "permanent",
                ],
            )?;
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "add",
                    &subnet(o),
                    "via",
                    &gw,
                    "dev",
                    "vx0",
                    "onlink",
                ],
            )?;
        } else {
            sh(
                "ip",
                &[
                    "-n",
                    &h.ns,
                    "route",
                    "add",
                    &subnet(o),
                    "via",
                    &peer.ip.to_string(),
                ],
            )?;
        }
    }
    Setup::new(lab, &hosts)
}

const VXLAN: &str = r#"{"Network":"100.64.0.0/16","Backend":{"Type":"vxlan"}}"#;
const HOST_GW: &str = r#"{"Network":"100.64.0.0/16","Backend":{"Type":"host-gw"}}"#;
const UDP: &str = r#"{"Network":"100.64.0.0/16","Backend":{"Type":"udp"}}"#;
const NO_FORWARD_RULES: &[&str] = &["--iptables-forward-rules=false"];

/// Every set-up is built first; then each round measures each set-up once,
/// so drift in the machine's speed spreads evenly over weft and baselines.
pub fn run(weft: &std::path::Path, secs: u32) -> Result<serde_json::Value> {
    println!(
        "data path: pod-to-pod TCP (iperf3 -t {secs}, {RUNS} interleaved rounds), Gbit/s min/median/max"
    );
    let mut setups = vec![
        hand_built(weft, true).context("hand-built vxlan")?,
        hand_built(weft, false).context("hand-built routes")?,
    ];
    // (name, config, agent flags, index of the baseline set-up)
    let rows: [(&str, &str, &[&str], usize); 5] = [
        ("vxlan", VXLAN, &[], 0),
        ("vxlan, no forward rules", VXLAN, NO_FORWARD_RULES, 0),
        ("host-gw", HOST_GW, &[], 1),
        ("host-gw, no forward rules", HOST_GW, NO_FORWARD_RULES, 1),
        ("udp", UDP, &[], 0),
    ];
    for (name, config, flags, _) in rows {
        setups.push(
            with_agent(weft, Agent::Weft, config, flags)
                .with_context(|| format!("{name} backend"))?,
        );
    }
    // upstream's udp backend, measured in the same rounds as weft's
    let flanneld = weft_lab::upstream_flanneld()?;
    let flanneld_version = weft_lab::program_version(&flanneld, "--version");
    setups.push(
        with_agent(weft, Agent::Flanneld(&flanneld), UDP, &[])
            .context("upstream flanneld's udp backend")?,
    );
    for _ in 0..RUNS {
        for s in setups.iter_mut() {
            let g = s.lab.iperf(&s.b, &s.a, secs)?;
            s.gbps.push(g);
        }
    }
    let figures: Vec<(f64, f64, f64)> = setups.iter().map(|s| median(s.gbps.clone())).collect();
    let base_names = ["hand-built vxlan", "plain routes"];
    println!(
        "{:>25} | {:>20} | {:>20} | {:>7} | baseline",
        "backend", "weft", "baseline", "ratio"
    );
    let mut out = Vec::new();
    for (i, (name, _, _, base)) in rows.iter().enumerate() {
        let (w, b) = (figures[2 + i], figures[*base]);
        let ratio = w.1 / b.1;
        println!(
            "{name:>25} | {:>6.2} {:>6.2} {:>6.2} | {:>6.2} {:>6.2} {:>6.2} | {:>6.0}% | {}",
            w.0,
            w.1,
            w.2,
            b.0,
            b.1,
            b.2,
            ratio * 100.0,
            base_names[*base]
        );
        out.push(
            serde_json::json!({"backend": name, "gbps": {"min": w.0, "median": w.1, "max": w.2},
            "baseline": base_names[*base], "baseline_gbps": b.1, "ratio": ratio}),
        );
    }
    println!("(forward rules: flanneld's default FLANNEL-FWD accept rules in FORWARD; their per-packet netfilter cost is the kernel's)");
    // weft's udp row and flanneld's, both from this run's rounds
    let udp = figures[2 + rows.len() - 1];
    let upstream = figures[2 + rows.len()];
    println!(
        "{:>25} | {:>6.2} {:>6.2} {:>6.2} | (upstream's udp backend, same rounds)",
        format!("udp, flanneld {flanneld_version}"),
        upstream.0,
        upstream.1,
        upstream.2,
    );
    println!(
        "udp: weft {:.2} Gbit/s vs flanneld {flanneld_version} {:.2} Gbit/s (medians, same run): {:.1}x",
        udp.1,
        upstream.1,
        udp.1 / upstream.1
    );
    out.push(
        serde_json::json!({"backend": "udp", "agent": format!("flanneld {flanneld_version}"),
        "gbps": {"min": upstream.0, "median": upstream.1, "max": upstream.2},
        "weft_udp_ratio": udp.1 / upstream.1}),
    );
    Ok(serde_json::Value::Array(out))
}

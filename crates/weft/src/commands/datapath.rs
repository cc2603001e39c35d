//! `weft bench --scenario datapath`: pod-to-pod TCP throughput (iperf3)
//! over each backend, next to hand-built kernel equivalents in the same
//! run: a vxlan set up by hand exactly as flannel's, and plain routes.

use std::time::Duration;

use anyhow::{Context, Result};
use weft_core::subnet_file::SubnetEnv;
use weft_lab::{sh, Host, Lab, Pod};

const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn measure(lab: &Lab, a: &Pod, b: &Pod, secs: u32) -> Result<(f64, f64, f64)> {
    lab.ping(a, b.ip, Duration::from_secs(10))?;
    let runs: Result<Vec<f64>> = (0..RUNS).map(|_| lab.iperf(b, a, secs)).collect();
    Ok(median(runs?))
}

/// Two hosts running weft with `config`; throughput between their pods.
fn with_weft(weft: &std::path::Path, config: &str, secs: u32) -> Result<(f64, f64, f64)> {
    let mut lab = Lab::new("wdp", weft)?;
    lab.start_etcd()?;
    lab.put_config(config)?;
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i))
        .collect::<Result<_>>()?;
    for h in &hosts {
        lab.start_agent(h, &[])?;
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(20))?;
    }
    let a = lab.pod(&hosts[0], "a")?;
    let b = lab.pod(&hosts[1], "b")?;
    measure(&lab, &a, &b, secs)
}

/// Two hosts wired by hand with `ip`: `vxlan` as flannel's data path, else plain routes.
fn hand_built(weft: &std::path::Path, vxlan: bool, secs: u32) -> Result<(f64, f64, f64)> {
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
    let a = lab.pod(&hosts[0], "a")?;
    let b = lab.pod(&hosts[1], "b")?;
    measure(&lab, &a, &b, secs)
}

/// Upstream flanneld v0.21.5's udp backend on this machine kind (Gbit/s).
const UPSTREAM_UDP_GBPS: f64 = 0.45;

pub fn run(weft: &std::path::Path, secs: u32) -> Result<serde_json::Value> {
    println!("data path: pod-to-pod TCP (iperf3 -t {secs}, {RUNS} runs), Gbit/s min/median/max");
    let kernel_vxlan = hand_built(weft, true, secs).context("hand-built vxlan")?;
    let kernel_route = hand_built(weft, false, secs).context("hand-built routes")?;
    let rows = [
        (
            "vxlan",
            r#"{"Network":"100.64.0.0/16","Backend":{"Type":"vxlan"}}"#,
            kernel_vxlan,
            "hand-built vxlan",
        ),
        (
            "host-gw",
            r#"{"Network":"100.64.0.0/16","Backend":{"Type":"host-gw"}}"#,
            kernel_route,
            "plain routes",
        ),
        (
            "udp",
            r#"{"Network":"100.64.0.0/16","Backend":{"Type":"udp"}}"#,
            kernel_vxlan,
            "hand-built vxlan",
        ),
    ];
    println!(
        "{:>8} | {:>20} | {:>20} | {:>7} | baseline",
        "backend", "weft", "baseline", "ratio"
    );
    let mut out = Vec::new();
    for (name, config, base, base_name) in rows {
        let w = with_weft(weft, config, secs).with_context(|| format!("{name} backend"))?;
        let ratio = w.1 / base.1;
        println!(
            "{name:>8} | {:>6.2} {:>6.2} {:>6.2} | {:>6.2} {:>6.2} {:>6.2} | {:>6.0}% | {base_name}",
            w.0, w.1, w.2, base.0, base.1, base.2, ratio * 100.0
        );
        out.push(
            serde_json::json!({"backend": name, "gbps": {"min": w.0, "median": w.1, "max": w.2},
            "baseline": base_name, "baseline_gbps": base.1, "ratio": ratio}),
        );
    }
    if let Some(udp) = out.last().and_then(|v| v["gbps"]["median"].as_f64()) {
        println!(
            "udp vs upstream flanneld's udp backend ({UPSTREAM_UDP_GBPS} Gbit/s): {:.1}x",
            udp / UPSTREAM_UDP_GBPS
        );
    }
    Ok(serde_json::Value::Array(out))
}

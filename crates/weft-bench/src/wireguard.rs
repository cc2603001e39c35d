//! The datapath scenario's wireguard rows: pod-to-pod TCP over weft's
//! userspace WireGuard next to wireguard-go (Debian's) configured with `wg`
//! as flanneld configures its device, in the same run, interleaved; with
//! the CPU time the two hosts' WireGuard processes spent per Gbit moved.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use weft_core::subnet_file::SubnetEnv;
use weft_lab::{wg_keypair, Host, Lab, Pod, WgPeerSpec};

const WG_NET: &str = r#"{"Network":"100.64.0.0/16","Backend":{"Type":"wireguard"}}"#;

struct Setup {
    name: &'static str,
    lab: Lab,
    hosts: Vec<Host>,
    a: Pod,
    b: Pod,
    gbps: Vec<f64>,
    /// CPU seconds of both hosts' WireGuard processes per Gbit moved.
    cpu_per_gbit: Vec<f64>,
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok(ticks / hz)
}

impl Setup {
    fn new(name: &'static str, mut lab: Lab, hosts: Vec<Host>) -> Result<Setup> {
        let a = lab.pod(&hosts[0], "a")?;
        let b = lab.pod(&hosts[1], "b")?;
        lab.ping(&a, b.ip, Duration::from_secs(15))?;
        Ok(Setup {
            name,
            lab,
            hosts,
            a,
            b,
            gbps: Vec::new(),
            cpu_per_gbit: Vec::new(),
        })
    }

    fn cpu(&mut self) -> Result<f64> {
        let mut total = 0.0;
        for h in &self.hosts {
            let pid = self.lab.agent(h)?.pid().context("process gone")?;
            total += cpu_seconds(pid)?;
        }
        Ok(total)
    }

    fn measure(&mut self, secs: u32) -> Result<()> {
        let before = self.cpu()?;
        let g = self.lab.iperf(&self.b, &self.a, secs)?;
        let used = self.cpu()? - before;
        self.gbps.push(g);
        self.cpu_per_gbit.push(used / (g * secs as f64).max(1e-9));
        Ok(())
    }
}

fn weft_hosts(weft: &Path) -> Result<Setup> {
    let mut lab = Lab::new("wwb", weft)?;
    lab.start_etcd()?;
    lab.put_config(WG_NET)?;
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i))
        .collect::<Result<_>>()?;
    for h in &hosts {
        let dir = lab.dir().join(&h.name);
        let mut args = lab.agent_args(
            h,
            &[&format!(
                "--wireguard-socket-dir={}",
                dir.join("wg").display()
            )],
        )?;
        args.push("--iptables-forward-rules=false".into());
        let env = vec![(
            "WIREGUARD_KEY_FILE".to_string(),
            dir.join("wgkey").display().to_string(),
        )];
        let weft = lab.weft.to_string_lossy().into_owned();
        lab.start_agent_with(h, &weft, &args, &env)?;
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(20))?;
    }
    Setup::new("weft (userspace)", lab, hosts)
}

fn wireguard_go_hosts(weft: &Path) -> Result<Setup> {
    let mut lab = Lab::new("wwb", weft)?;
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i))
        .collect::<Result<_>>()?;
    let keys: Vec<_> = hosts
        .iter()
        .map(|h| wg_keypair(lab.dir(), &h.name))
        .collect::<Result<_>>()?;
    for (i, h) in hosts.iter().enumerate() {
        let subnet = format!("100.64.{}.0/24", i + 1).parse()?;
        lab.start_wireguard_go(h, &keys[i].0, 51820, subnet, "100.64.0.0/16", 1420)?;
        lab.write_subnet_env(
            h,
            &SubnetEnv::parse(&format!(
                "FLANNEL_NETWORK=100.64.0.0/16\nFLANNEL_SUBNET=100.64.{}.1/24\nFLANNEL_MTU=1420\nFLANNEL_IPMASQ=false\n",
                i + 1
            ))?,
        )?;
    }
    for (i, h) in hosts.iter().enumerate() {
        let o = 1 - i;
        lab.wireguard_go_peer(
            h,
            &WgPeerSpec {
                public_key: keys[o].1.clone(),
                endpoint: format!("{}:51820", hosts[o].ip),
                allowed_ips: format!("100.64.{}.0/24", o + 1),
            },
        )?;
    }
    Setup::new("wireguard-go", lab, hosts)
}

fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Builds both set-ups, then measures them in `runs` interleaved rounds.
pub fn run(weft: &Path, secs: u32, runs: usize) -> Result<serde_json::Value> {
    let version = weft_lab::sh("sh", &["-c", "dpkg-query -W -f '${Version}' wireguard-go"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut setups = vec![
        weft_hosts(weft).context("weft's wireguard backend")?,
        wireguard_go_hosts(weft).context("wireguard-go (Debian's wireguard-go package)")?,
    ];
    for _ in 0..runs {
        for s in setups.iter_mut() {
            s.measure(secs)?;
        }
    }
    println!(
        "wireguard: pod-to-pod TCP (iperf3 -t {secs}, {runs} interleaved rounds), Gbit/s min/median/max; CPU s per Gbit (both hosts' WireGuard processes)"
    );
    let mut out = Vec::new();
    for s in &setups {
        let (lo, med, hi) = spread(s.gbps.clone());
        let (_, cpu, _) = spread(s.cpu_per_gbit.clone());
        println!(
            "{:>25} | {lo:>6.2} {med:>6.2} {hi:>6.2} | {cpu:.3} CPU s/Gbit",
            s.name
        );
        out.push(
            serde_json::json!({"backend": format!("wireguard: {}", s.name),
            "gbps": {"min": lo, "median": med, "max": hi}, "cpu_seconds_per_gbit": cpu}),
        );
    }
    let ratio = spread(setups[0].gbps.clone()).1 / spread(setups[1].gbps.clone()).1;
    println!("weft's userspace WireGuard vs wireguard-go {version}: {ratio:.2}x");
    Ok(serde_json::Value::Array(out))
}

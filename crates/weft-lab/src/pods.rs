//! Pods in the lab: a namespace per pod, its `eth0` on the host's `cni0`
//! bridge with an address from the host's subnet file; ping and iperf3
//! between them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use weft_core::subnet_file::SubnetEnv;

use crate::lab::{Host, Lab, Pod};
use crate::netns::sh;

/// `ip -n <ns> <words>`.
fn ip_in(ns: &str, words: &str) -> Result<()> {
    let mut args = vec!["-n", ns];
    args.extend(words.split_whitespace());
    sh("ip", &args).map(drop)
}

/// `ip netns exec <ns> <words>`, its output.
fn exec_in(ns: &str, words: &str) -> Result<std::process::Output> {
    let mut args = vec!["netns", "exec", ns];
    args.extend(words.split_whitespace());
    sh("ip", &args)
}

impl Lab {
    /// Adds a pod on `host`: a namespace whose `eth0` sits on the host's
    /// `cni0` bridge (created on first use with FLANNEL_SUBNET and FLANNEL_MTU).
    pub fn pod(&mut self, host: &Host, name: &str) -> Result<Pod> {
        let env = SubnetEnv::parse(&std::fs::read_to_string(self.subnet_file(host))?)?;
        if env.subnet.is_none() && env.ipv6_subnet.is_none() {
            bail!("no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET on {}", host.name);
        }
        let mtu = env.mtu.unwrap_or(1450);
        let n = self.pods_per_host.entry(host.name.clone()).or_insert(0);
        *n += 1;
        let index = *n;
        if index == 1 {
            bridge(host, &env, mtu)?;
        }
        let ns = format!("{}-{}-{name}", self.prefix, host.name);
        self.add_netns(&ns)?;
        ip_in(
            &host.ns,
            &format!("link add veth{index} mtu {mtu} type veth peer name eth0 netns {ns}"),
        )?;
        ip_in(&host.ns, &format!("link set veth{index} master cni0 up"))?;
        ip_in(&ns, &format!("link set eth0 mtu {mtu} up"))?;
        let mut ip = Ipv4Addr::UNSPECIFIED;
        if let Some(gw) = env.subnet {
            ip = Ipv4Addr::from(u32::from(gw.network()) + 1 + index as u32);
            ip_in(&ns, &format!("addr add {ip}/{} dev eth0", gw.prefix_len()))?;
            ip_in(&ns, &format!("route add default via {}", gw.addr()))?;
        }
        let mut ip6 = None;
        if let Some(gw6) = env.ipv6_subnet {
            let a = Ipv6Addr::from(u128::from(gw6.network()) + 1 + index as u128);
            ip_in(
                &ns,
                &format!("addr add {a}/{} dev eth0 nodad", gw6.prefix_len()),
            )?;
            ip_in(&ns, &format!("-6 route add default via {}", gw6.addr()))?;
            ip6 = Some(a);
        }
        Ok(Pod {
            name: name.into(),
            ns,
            ip,
            ip6,
            host: host.name.clone(),
        })
    }

    /// Pings `to` from `from` until one reply comes back or `timeout` passes.
    pub fn ping(&self, from: &Pod, to: impl Into<IpAddr>, timeout: Duration) -> Result<Duration> {
        let to: IpAddr = to.into();
        let start = Instant::now();
        loop {
            if exec_in(&from.ns, &format!("ping -c 1 -W 1 {to}")).is_ok() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} ({}) cannot reach {to} after {timeout:?}",
                    from.name,
                    from.ip
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// TCP throughput from `client` to `server` with iperf3 over `secs`
    /// seconds, in Gbit/s.
    pub fn iperf(&self, server: &Pod, client: &Pod, secs: u32) -> Result<f64> {
        let mut srv = std::process::Command::new("ip")
            .args(["netns", "exec", &server.ns, "iperf3", "-s", "-1", "-B"])
            .arg(server.ip.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting iperf3 (Debian's iperf3 package)")?;
        std::thread::sleep(Duration::from_millis(300));
        let out = exec_in(&client.ns, &format!("iperf3 -c {} -t {secs} -J", server.ip));
        let _ = srv.kill();
        let _ = srv.wait();
        let v: serde_json::Value = serde_json::from_slice(&out?.stdout).context("iperf3 JSON")?;
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e9)
            .ok_or_else(|| anyhow!("iperf3 reported no throughput"))
    }
}

/// The host's `cni0` bridge with the subnet file's gateway addresses.
fn bridge(host: &Host, env: &SubnetEnv, mtu: u32) -> Result<()> {
    ip_in(&host.ns, &format!("link add cni0 mtu {mtu} type bridge"))?;
    if let Some(gw) = env.subnet {
        ip_in(&host.ns, &format!("addr add {gw} dev cni0"))?;
    }
    if let Some(gw6) = env.ipv6_subnet {
        ip_in(&host.ns, &format!("addr add {gw6} dev cni0 nodad"))?;
    }
    ip_in(&host.ns, "link set cni0 up")
}

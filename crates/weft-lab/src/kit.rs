//! What the end-to-end tests of every crate do again and again, once: a
//! cluster of agents on the lab's etcd, a command inside a host, the
//! kernel's tables as text, a daemon's metrics.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use weft_core::subnet_file::SubnetEnv;

use crate::lab::{Host, Lab};
use crate::netns::{http_get, sh};

impl Lab {
    /// A directory of links to every program in /usr/sbin and /usr/bin
    /// but those `left_out` names: a `PATH` for a host that lacks them
    /// (one with nftables and no iptables programs, as RHEL 10 ships).
    pub fn path_without(&self, name: &str, left_out: impl Fn(&str) -> bool) -> Result<String> {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for from in ["/usr/sbin", "/usr/bin"] {
            for entry in std::fs::read_dir(from).with_context(|| format!("listing {from}"))? {
                let entry = entry?;
                let file = entry.file_name();
                let Some(program) = file.to_str() else {
                    continue;
                };
                let link = dir.join(program);
                if left_out(program) || link.exists() {
                    continue;
                }
                std::os::unix::fs::symlink(entry.path(), &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
        Ok(dir.display().to_string())
    }

    /// etcd with `config`, hosts `h1`…`hn` at underlay addresses
    /// `198.18.0.<first_octet + i>`, an agent on each (with `extra`
    /// flags), and each host's subnet file once written.
    pub fn cluster(
        &mut self,
        config: &str,
        n: u8,
        first_octet: u8,
        extra: &[&str],
    ) -> Result<Vec<(Host, SubnetEnv)>> {
        self.cluster_started_by(config, n, first_octet, |lab, h| lab.start_agent(h, extra))
    }

    /// [`Lab::cluster`] with each host's agent started by `start`.
    pub fn cluster_started_by(
        &mut self,
        config: &str,
        n: u8,
        first_octet: u8,
        mut start: impl FnMut(&mut Lab, &Host) -> Result<()>,
    ) -> Result<Vec<(Host, SubnetEnv)>> {
        self.start_etcd()?;
        self.put_config(config)?;
        let hosts: Vec<Host> = (0..n)
            .map(|i| self.host(&format!("h{}", i + 1), first_octet + i))
            .collect::<Result<_>>()?;
        for h in &hosts {
            start(self, h)?;
        }
        hosts
            .into_iter()
            .map(|h| {
                let env = self.wait_subnet_env(&h, Duration::from_secs(20))?;
                Ok((h, env))
            })
            .collect()
    }

    /// `weft <args>` run inside `host` with the lab's etcd and the host's
    /// subnet file (unless `args` give their own): exit code and
    /// stdout + stderr.
    pub fn weft_on(&self, host: &Host, args: &[&str]) -> Result<(i32, String)> {
        let url = format!("--etcd-endpoints={}", self.etcd_url()?);
        let file = format!("--subnet-file={}", self.subnet_file(host).display());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns])
            .arg(&self.weft)
            .args(args);
        if !args.iter().any(|a| a.starts_with("--etcd-endpoints")) {
            cmd.arg(url);
        }
        if !args.iter().any(|a| a.starts_with("--subnet-file")) {
            cmd.arg(file);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running weft {}", args.join(" ")))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ))
    }
}

/// `program args…`'s standard output (an error, with its stderr, when it fails).
pub fn output_of(program: &str, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&sh(program, args)?.stdout).into_owned())
}

/// `args…` run inside `host`'s namespace: its standard output.
pub fn on_host(host: &Host, args: &[&str]) -> Result<String> {
    let mut a = vec!["netns", "exec", host.ns.as_str()];
    a.extend_from_slice(args);
    output_of("ip", &a)
}

/// `bridge fdb show dev <dev>` on `host`.
pub fn fdb(host: &Host, dev: &str) -> Result<String> {
    on_host(host, &["bridge", "fdb", "show", "dev", dev])
}

/// The sum of the samples named `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample `name{labels}` or `name` exactly as written, if present.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `GET /metrics` of the daemon listening on `127.0.0.1:port` inside
/// `host`: its Prometheus text (the body).
pub fn metrics(host: &Host, port: u16) -> Result<String> {
    let answer = http_get(&host.ns, port, "/metrics")
        .with_context(|| format!("nothing answers on {}:{port}", host.name))?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map_or(answer.as_str(), |(_, body)| body)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_name_and_by_sample() {
        let text = "# HELP x_total things\nx_total{path=\"a\"} 2\nx_total{path=\"b\"} 3\nx_total_more 7\nx 1\n";
        assert_eq!(metric_sum(text, "x_total"), 5.0);
        assert_eq!(metric_sum(text, "x"), 1.0);
        assert_eq!(metric_value(text, "x_total{path=\"b\"}"), Some(3.0));
        assert_eq!(metric_value(text, "nope"), None);
    }
}

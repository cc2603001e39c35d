//! etcd in the lab: one member or a cluster, each on a host of its own,
//! optionally with TLS and authentication; the lab's etcdctl, and flannel's
//! keys (config, leases) read and written through it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::lab::{Host, Lab, TlsFiles, ETCD_OCTET, UNDERLAY_PREFIX};
use crate::netns::sh;
use crate::process::Proc;

impl Lab {
    /// Makes etcd (started after this) serve TLS and require client
    /// certificates; the lab's etcdctl and agents get the certificates.
    pub fn enable_etcd_tls(&mut self) -> Result<TlsFiles> {
        let dir = self.dir().join("tls");
        std::fs::create_dir_all(&dir)?;
        crate::tls::make_ca(&dir, "weft-lab-ca")?;
        crate::tls::sign(
            &dir,
            "server",
            "/CN=etcd",
            &format!("subjectAltName=IP:{UNDERLAY_PREFIX}.{ETCD_OCTET},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
        )?;
        crate::tls::sign(
            &dir,
            "client",
            "/CN=weft-agent",
            "extendedKeyUsage=clientAuth",
        )?;
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        self.tls = Some(files.clone());
        Ok(files)
    }

    /// Turns on etcd authentication with a `root` user for the lab's tools
    /// and `user:password` with read/write access to the etcd prefix.
    pub fn enable_etcd_auth(&mut self, user: &str, password: &str) -> Result<()> {
        self.etcdctl(&["user", "add", "root:lab-root-pw"])?;
        self.etcdctl(&["user", "add", &format!("{user}:{password}")])?;
        self.etcdctl(&["role", "add", user])?;
        self.etcdctl(&[
            "role",
            "grant-permission",
            user,
            "--prefix=true",
            "readwrite",
            &format!("{}/", self.etcd_prefix),
        ])?;
        self.etcdctl(&["user", "grant-role", user, user])?;
        self.etcdctl(&["auth", "enable"])?;
        self.etcd_root = Some("root:lab-root-pw".into());
        Ok(())
    }

    /// Starts a single-member etcd on its own host (198.18.0.2); after
    /// [`Lab::stop_etcd`] it restarts with its data.
    pub fn start_etcd(&mut self) -> Result<String> {
        self.start_etcd_cluster(1)?;
        self.etcd_url()
    }

    /// Starts (or restarts the stopped members of) an etcd cluster of `n`
    /// members on hosts `etcd1..` at 198.18.0.2 and up; waits until healthy.
    pub fn start_etcd_cluster(&mut self, n: u8) -> Result<()> {
        while self.etcd.len() < n as usize {
            let i = self.etcd.len() as u8;
            let name = if n == 1 {
                "etcd".to_string()
            } else {
                format!("etcd{}", i + 1)
            };
            let host = self.host(&name, ETCD_OCTET + i)?;
            self.etcd.push((host, None));
        }
        let initial: Vec<String> = self
            .etcd
            .iter()
            .enumerate()
            .map(|(i, (h, _))| format!("e{i}=http://{}:2380", h.ip))
            .collect();
        let initial = initial.join(",");
        for i in 0..self.etcd.len() {
            if self.etcd[i].1.is_some() {
                continue;
            }
            self.spawn_member(i, &initial)?;
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.etcdctl(&["endpoint", "health"]);
            let Err(last) = health else {
                return Ok(());
            };
            if Instant::now() > end {
                bail!("etcd did not become healthy in 30 s: {last:#}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_member(&mut self, i: usize, initial: &str) -> Result<()> {
        let host = self.etcd[i].0.clone();
        let dir = self.dir().join(&host.name);
        std::fs::create_dir_all(&dir)?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://{}:2379", host.ip);
        let peer = format!("http://{}:2380", host.ip);
        let mut args: Vec<String> = [
            "--name",
            &format!("e{i}"),
            "--data-dir",
            &dir.join("data").to_string_lossy(),
            "--listen-client-urls",
            &format!("{client},{scheme}://127.0.0.1:2379"),
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = &self.tls {
            for (flag, path) in [
                ("--cert-file", &t.server_cert),
                ("--key-file", &t.server_key),
                ("--trusted-ca-file", &t.ca),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push("--client-cert-auth".into());
        }
        let proc = Proc::spawn(
            &host.ns,
            &host.name,
            dir.join("etcd.log"),
            "etcd",
            &args,
            &[],
        )?;
        self.etcd[i].1 = Some(proc);
        Ok(())
    }

    /// Stops every etcd member (SIGKILL when `hard`), keeping their data.
    pub fn stop_etcd(&mut self, hard: bool) {
        for i in 0..self.etcd.len() {
            self.stop_etcd_member(i, hard);
        }
    }

    /// Stops one member (SIGKILL when `hard`), keeping its data.
    pub fn stop_etcd_member(&mut self, i: usize, hard: bool) {
        if let Some(mut p) = self.etcd.get_mut(i).and_then(|m| m.1.take()) {
            if hard {
                p.kill_now();
            } else {
                p.stop(Duration::from_secs(5));
            }
        }
    }

    /// The etcd endpoints agents use (comma-separated).
    pub fn etcd_url(&self) -> Result<String> {
        if self.etcd.is_empty() {
            bail!("etcd not started");
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let urls: Vec<String> = self
            .etcd
            .iter()
            .map(|(h, _)| format!("{scheme}://{}:2379", h.ip))
            .collect();
        Ok(urls.join(","))
    }

    /// Lists `url` (where nothing answers) first in the endpoints that
    /// agents, proxies and [`Lab::weft_client`] get from now on.
    pub fn add_dead_endpoint(&mut self, url: &str) {
        self.dead_endpoints.push(url.to_string());
    }

    /// The endpoints weft's programs get: [`Lab::etcd_url`] after any dead ones.
    pub fn client_endpoints(&self) -> Result<String> {
        let mut all = self.dead_endpoints.clone();
        all.push(self.etcd_url()?);
        Ok(all.join(","))
    }

    /// The host etcd member `i` runs on (agents may run there too).
    pub fn etcd_host(&self, i: usize) -> Result<Host> {
        self.etcd
            .get(i)
            .map(|(h, _)| h.clone())
            .ok_or_else(|| anyhow!("no etcd member {i}"))
    }

    /// The namespace etcd tools run in (the first member's).
    pub fn etcd_ns(&self) -> Result<String> {
        Ok(self
            .etcd
            .first()
            .ok_or_else(|| anyhow!("etcd not started"))?
            .0
            .ns
            .clone())
    }

    /// Runs `etcdctl` (v3 API) against the lab's etcd.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let ns = self.etcd_ns()?;
        let endpoints = format!("--endpoints={}", self.etcd_url()?);
        let mut full = vec![
            "netns",
            "exec",
            &ns,
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            &endpoints,
        ];
        let tls_args: Vec<String> = match &self.tls {
            Some(t) => vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client_cert.display()),
                format!("--key={}", t.client_key.display()),
            ],
            None => Vec::new(),
        };
        full.extend(tls_args.iter().map(String::as_str));
        let user = self.etcd_root.as_ref().map(|u| format!("--user={u}"));
        full.extend(user.as_deref());
        full.extend_from_slice(args);
        let out = sh("ip", &full)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn etcd_prefix(&self) -> &str {
        &self.etcd_prefix
    }

    /// Sets the etcd prefix agents get by default.
    pub fn set_etcd_prefix(&mut self, p: &str) {
        self.etcd_prefix = p.to_string();
    }

    /// The value of lease `key` (short form, e.g. `172.30.46.0-24`), trimmed.
    pub fn lease_value(&self, key: &str) -> Result<String> {
        let full = format!("{}/subnets/{key}", self.etcd_prefix);
        Ok(self
            .etcdctl(&["get", "--print-value-only", &full])?
            .trim()
            .to_string())
    }

    /// Writes `<prefix>/config`.
    pub fn put_config(&self, json: &str) -> Result<()> {
        self.etcdctl(&["put", &format!("{}/config", self.etcd_prefix), json])?;
        Ok(())
    }

    /// The lease keys under `<prefix>/subnets/` (short form, e.g. `172.30.46.0-24`).
    pub fn lease_keys(&self) -> Result<Vec<String>> {
        let prefix = format!("{}/subnets/", self.etcd_prefix);
        let out = self.etcdctl(&["get", "--prefix", "--keys-only", &prefix])?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(String::from)
            .collect())
    }
}

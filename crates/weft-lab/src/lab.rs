//! The lab: a switch, hosts, etcd, agents and pods, all in namespaces.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use weft_core::subnet_file::SubnetEnv;
use weft_kernel::Netlink;

use crate::netns::sh;
use crate::process::Proc;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The underlay network every lab uses (inside its own namespaces only).
pub const UNDERLAY_PREFIX: &str = "198.18.0";
/// The IPv6 underlay (RFC 3849 documentation prefix), inside the lab only.
pub const UNDERLAY6_PREFIX: &str = "2001:db8:198:";
pub(crate) const ETCD_OCTET: u8 = 2;

/// A host: one network namespace with `eth0` on the lab switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 underlay address (documentation prefix, lab only).
    pub ip6: Ipv6Addr,
}

/// Certificates for etcd over TLS, generated per lab with openssl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A pod: a namespace with `eth0` bridged into its host's `cni0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Set when the host's subnet file has an IPv6 subnet.
    pub ip6: Option<Ipv6Addr>,
    pub host: String,
}

pub struct Lab {
    pub prefix: String,
    pub weft: PathBuf,
    pub(crate) dir_path: PathBuf,
    pub(crate) dir: Option<tempfile::TempDir>,
    pub(crate) switch: String,
    pub(crate) namespaces: Vec<String>,
    /// etcd members: their hosts and running processes.
    pub(crate) etcd: Vec<(Host, Option<Proc>)>,
    /// Certificates when etcd runs with TLS and client-certificate auth.
    pub(crate) tls: Option<TlsFiles>,
    /// `user:password` the lab's own etcdctl uses once auth is enabled.
    pub(crate) etcd_root: Option<String>,
    pub(crate) agents: HashMap<String, Proc>,
    /// Service proxies, by host name.
    pub(crate) proxies: HashMap<String, Proc>,
    pub(crate) pods_per_host: HashMap<String, u8>,
    pub(crate) etcd_prefix: String,
    /// Endpoints listed before the real ones in what agents, proxies and
    /// client commands are given (fail-over tests).
    pub(crate) dead_endpoints: Vec<String>,
}

impl Lab {
    /// Creates a lab named `tag<pid>-<n>` with its switch. Needs root.
    pub fn new(tag: &str, weft: &Path) -> Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the lab needs root (network namespaces, veth, vxlan): run as root");
        }
        let prefix = format!(
            "{tag}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("weft-lab-{prefix}-"))
            .tempdir()
            .context("creating the lab directory")?;
        crate::interrupt::track_dir(dir.path().to_path_buf());
        let mut lab = Lab {
            switch: format!("{prefix}-sw"),
            prefix,
            weft: weft.to_path_buf(),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            namespaces: Vec::new(),
            etcd: Vec::new(),
            tls: None,
            etcd_root: None,
            agents: HashMap::new(),
            proxies: HashMap::new(),
            pods_per_host: HashMap::new(),
            etcd_prefix: "/coreos.com/network".into(),
            dead_endpoints: Vec::new(),
        };
        let sw = lab.switch.clone();
        lab.add_netns(&sw)?;
        sh("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        sh("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// A bare namespace `<prefix>-<suffix>` (loopback up), deleted with the lab.
    pub fn netns(&mut self, suffix: &str) -> Result<String> {
        let ns = format!("{}-{suffix}", self.prefix);
        self.add_netns(&ns)?;
        Ok(ns)
    }

    pub(crate) fn add_netns(&mut self, ns: &str) -> Result<()> {
        sh("ip", &["netns", "add", ns])?;
        crate::interrupt::track_netns(ns);
        self.namespaces.push(ns.to_string());
        sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        // no duplicate address detection: lab addresses are usable at once
        sh(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
        Ok(())
    }

    /// Adds host `name` at 198.18.0.`octet`/24 with IP forwarding on.
    pub fn host(&mut self, name: &str, octet: u8) -> Result<Host> {
        let ns = format!("{}-{name}", self.prefix);
        self.add_netns(&ns)?;
        let port = format!("p{octet}");
        sh(
            "ip",
            &[
                "-n",
                &self.switch,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &self.switch,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ],
        )?;
        let ip: Ipv4Addr = format!("{UNDERLAY_PREFIX}.{octet}").parse()?;
        sh(
            "ip",
            &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        let ip6: Ipv6Addr = format!("{UNDERLAY6_PREFIX}:{octet:x}").parse()?;
        sh(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        )?;
        std::fs::create_dir_all(self.dir().join(name))?;
        Ok(Host {
            name: name.into(),
            ns,
            ip,
            ip6,
        })
    }

    // ---- agents ----

    pub fn subnet_file(&self, host: &Host) -> PathBuf {
        self.dir().join(&host.name).join("subnet.env")
    }

    /// Starts `weft agent` on `host` with the lab's etcd, prefix, `-iface eth0`
    /// and a per-host subnet file, plus `extra` flags.
    pub fn start_agent(&mut self, host: &Host, extra: &[&str]) -> Result<()> {
        let args = self.agent_args(host, extra)?;
        let weft = self.weft.to_string_lossy().into_owned();
        self.start_agent_with(host, &weft, &args, &[])
    }

    /// The arguments [`Lab::start_agent`] gives `weft`.
    pub fn agent_args(&self, host: &Host, extra: &[&str]) -> Result<Vec<String>> {
        let mut args = vec![
            "agent".to_string(),
            format!("-etcd-endpoints={}", self.client_endpoints()?),
            format!("-etcd-prefix={}", self.etcd_prefix),
            "-iface=eth0".to_string(),
            format!("-subnet-file={}", self.subnet_file(host).display()),
        ];
        if let Some(t) = &self.tls {
            args.push(format!("-etcd-cafile={}", t.ca.display()));
            args.push(format!("-etcd-certfile={}", t.client_cert.display()));
            args.push(format!("-etcd-keyfile={}", t.client_key.display()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Ok(args)
    }

    /// The arguments an agent-only `flanneld` binary takes on `host`: those
    /// of [`Lab::agent_args`] without weft's `agent` subcommand.
    pub fn flanneld_args(&self, host: &Host, extra: &[&str]) -> Result<Vec<String>> {
        let mut args = self.agent_args(host, extra)?;
        args.remove(0);
        Ok(args)
    }

    /// flanneld's flags in Kubernetes mode for `host` (no argv[0], no
    /// `agent`): the API server of `kubeconfig`, the network config file
    /// `net_conf`, `-iface eth0` and the host's subnet file.
    pub fn kube_agent_args(&self, host: &Host, kubeconfig: &Path, net_conf: &Path) -> Vec<String> {
        vec![
            "-kube-subnet-mgr".into(),
            format!("-kubeconfig-file={}", kubeconfig.display()),
            format!("-net-config-path={}", net_conf.display()),
            "-iface=eth0".into(),
            format!("-subnet-file={}", self.subnet_file(host).display()),
        ]
    }

    /// Whether `host`'s main routing table has a route to `subnet`
    /// (`a.b.c.d/len`).
    pub fn routes_to(&self, host: &Host, subnet: &str) -> Result<bool> {
        let mut nl = self.netlink(host)?;
        Ok(weft_kernel::main_table_routes(&mut nl)?
            .iter()
            .any(|r| r.dst.to_string() == subnet))
    }

    /// Starts `program args…` as the agent of `host`, with extra environment.
    pub fn start_agent_with(
        &mut self,
        host: &Host,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<()> {
        let log = self.dir().join(&host.name).join("agent.log");
        let p = Proc::spawn(
            &host.ns,
            &format!("agent@{}", host.name),
            log,
            program,
            args,
            env,
        )?;
        if let Some(mut old) = self.agents.insert(host.name.clone(), p) {
            old.stop(Duration::from_secs(2));
        }
        Ok(())
    }

    /// Starts `weft proxy` on `host` (node name = host name).
    pub fn start_proxy(&mut self, host: &Host, extra: &[&str]) -> Result<()> {
        let mut args = vec![
            "proxy".to_string(),
            format!("--etcd-endpoints={}", self.client_endpoints()?),
            format!("--etcd-prefix={}", self.etcd_prefix),
            format!("--hostname-override={}", host.name),
            "--metrics-bind-address=127.0.0.1:10249".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.start_proxy_args(host, &args)
    }

    /// Starts `weft <args>` as the proxy of `host` (e.g. with a Kubernetes
    /// source instead of the lab's etcd).
    pub fn start_proxy_args(&mut self, host: &Host, args: &[String]) -> Result<()> {
        self.start_proxy_with_env(host, args, &[])
    }

    /// [`Lab::start_proxy_args`] with extra environment (e.g. a `PATH`).
    pub fn start_proxy_with_env(
        &mut self,
        host: &Host,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<()> {
        let weft = self.weft.clone();
        self.start_proxy_program(host, &weft, args, env)
    }

    /// Starts `program <args>` as the proxy of `host`: a proxy binary
    /// other than the lab's `weft` (the proxy-only `weft-proxy`).
    pub fn start_proxy_program(
        &mut self,
        host: &Host,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<()> {
        let log = self.dir().join(&host.name).join("proxy.log");
        let p = Proc::spawn(
            &host.ns,
            &format!("proxy@{}", host.name),
            log,
            &program.to_string_lossy(),
            args,
            env,
        )?;
        if let Some(mut old) = self.proxies.insert(host.name.clone(), p) {
            old.stop(Duration::from_secs(2));
        }
        Ok(())
    }

    pub fn proxy(&mut self, host: &Host) -> Result<&mut Proc> {
        self.proxies
            .get_mut(&host.name)
            .ok_or_else(|| anyhow!("no proxy on {}", host.name))
    }

    pub fn stop_proxy(&mut self, host: &Host) {
        if let Some(mut p) = self.proxies.remove(&host.name) {
            p.stop(Duration::from_secs(5));
        }
    }

    pub fn proxy_log(&self, host: &Host) -> String {
        std::fs::read_to_string(self.dir().join(&host.name).join("proxy.log")).unwrap_or_default()
    }

    /// Runs `weft <args> --etcd-endpoints=<lab etcd>` in the etcd host's
    /// namespace (a client command such as `weft service …`); its stdout.
    pub fn weft_client(&self, args: &[&str]) -> Result<String> {
        let ns = self.etcd_ns()?;
        let weft = self.weft.to_string_lossy().into_owned();
        let endpoints = format!("--etcd-endpoints={}", self.client_endpoints()?);
        let mut a = vec!["netns", "exec", ns.as_str(), weft.as_str()];
        a.extend_from_slice(args);
        a.push(&endpoints);
        let out = sh("ip", &a)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn agent(&mut self, host: &Host) -> Result<&mut Proc> {
        self.agents
            .get_mut(&host.name)
            .ok_or_else(|| anyhow!("no agent on {}", host.name))
    }

    /// Stops the agent with SIGTERM (or SIGKILL when `hard`); returns its exit code.
    pub fn stop_agent(&mut self, host: &Host, hard: bool) -> Option<i32> {
        let mut p = self.agents.remove(&host.name)?;
        if hard {
            p.kill_now();
            None
        } else {
            p.stop(Duration::from_secs(5)).and_then(|s| s.code())
        }
    }

    pub fn agent_log(&self, host: &Host) -> String {
        std::fs::read_to_string(self.dir().join(&host.name).join("agent.log")).unwrap_or_default()
    }

    /// Waits until the host's subnet file exists and parses.
    pub fn wait_subnet_env(&mut self, host: &Host, timeout: Duration) -> Result<SubnetEnv> {
        let path = self.subnet_file(host);
        let end = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(env) = SubnetEnv::parse(&text) {
                    if env.subnet.is_some() || env.ipv6_subnet.is_some() {
                        return Ok(env);
                    }
                }
            }
            if let Some(p) = self.agents.get_mut(&host.name) {
                if let Some(code) = p.exit_code() {
                    bail!(
                        "agent on {} exited with {code}:\n{}",
                        host.name,
                        p.log_tail(15)
                    );
                }
            }
            if Instant::now() > end {
                bail!(
                    "no subnet file on {} after {timeout:?}:\n{}",
                    host.name,
                    self.agent_log(host)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a subnet file for `host` by hand (for hand-built baselines).
    pub fn write_subnet_env(&self, host: &Host, env: &SubnetEnv) -> Result<()> {
        std::fs::write(self.subnet_file(host), env.render())?;
        Ok(())
    }

    /// A netlink socket inside `host`.
    pub fn netlink(&self, host: &Host) -> Result<Netlink> {
        Ok(Netlink::open_in_netns(Path::new(&format!(
            "/run/netns/{}",
            host.ns
        )))?)
    }
}

/// Retries `f` every 50 ms until it returns `Some`; panics with `what`
/// after `timeout` (for tests, which assert on eventual state).
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a kept lab left running: enough to tear it down later.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeptLab {
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub pids: Vec<u32>,
    pub dir: PathBuf,
}

impl KeptLab {
    /// Stops the processes (by PID, SIGTERM then SIGKILL), deletes the
    /// namespaces and the lab directory.
    pub fn tear_down(&self) {
        crate::process::stop_pids(&self.pids, Duration::from_secs(3));
        for ns in self.namespaces.iter().rev() {
            let _ = sh("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// Leaves everything running and returns what [`KeptLab::tear_down`]
    /// needs; `extra_pids` are processes started outside the lab.
    pub fn keep(mut self, extra_pids: &[u32]) -> KeptLab {
        let mut pids: Vec<u32> = self
            .agents
            .values()
            .chain(self.proxies.values())
            .chain(self.etcd.iter().filter_map(|(_, p)| p.as_ref()))
            .filter_map(Proc::pid)
            .collect();
        pids.extend_from_slice(extra_pids);
        for ns in &self.namespaces {
            crate::interrupt::untrack_netns(ns);
        }
        crate::interrupt::untrack_dir(&self.dir_path);
        let kept = KeptLab {
            prefix: self.prefix.clone(),
            namespaces: std::mem::take(&mut self.namespaces),
            pids,
            dir: self
                .dir
                .take()
                .map(|d| d.keep())
                .unwrap_or_else(|| self.dir_path.clone()),
        };
        // The processes must outlive the lab: forget their handles.
        for (_, p) in self.agents.drain().chain(self.proxies.drain()) {
            std::mem::forget(p);
        }
        for (_, p) in self.etcd.drain(..) {
            std::mem::forget(p);
        }
        kept
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, mut p) in self.agents.drain().chain(self.proxies.drain()) {
            p.stop(Duration::from_secs(2));
        }
        self.stop_etcd(true);
        for ns in self.namespaces.iter().rev() {
            let _ = sh("ip", &["netns", "del", ns]);
            crate::interrupt::untrack_netns(ns);
        }
        crate::interrupt::untrack_dir(&self.dir_path);
        if std::env::var_os("WEFT_KEEP_LAB_DIR").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("lab directory kept: {}", d.keep().display());
            }
        }
    }
}

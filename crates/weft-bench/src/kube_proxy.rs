//! `weft-bench --scenario proxy --against kube-proxy`: weft proxy and the
//! pinned upstream kube-proxy side by side in one run, on one real
//! kube-apiserver holding N Services × E endpoints (EndpointSlices), each
//! proxy in a host namespace of its own, in each mode asked for. Measured
//! the same way for both, from outside: process start until the kernel
//! holds a rule for every Service (polled), RSS and CPU seconds at that
//! point, and single Services added through the API, from the write of
//! their EndpointSlice until the kernel gains their rule (seen in the
//! kernel's nftables netlink events, without polling; polled on
//! iptables-legacy).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weft_firewall::xtables;
use weft_lab::{in_netns, sh, ApiServer, Host, Lab, Proc};
use weft_proxy::plan::names::service_hash;
use weft_proxy::spec::Protocol;

use crate::api_objects::{change_endpoint, cluster_ip, load};
use crate::nft_events::{Event, Kind, NftEvents};
use crate::{rss_kib, stats};

const POD_CIDR: &str = "100.64.0.0/10";

/// One proxy under test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Weft,
    KubeProxy,
}

impl Who {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Who::Weft => "weft",
            Who::KubeProxy => "kube-proxy",
        }
    }
}

/// A directory whose iptables programs are the legacy ones, first in
/// kube-proxy's PATH (what kube-proxy's image wrapper does on legacy hosts).
fn legacy_shims(dir: &Path) -> Result<PathBuf> {
    let shims = dir.join("legacy-bin");
    std::fs::create_dir_all(&shims)?;
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        let link = shims.join(tool);
        if !link.exists() {
            let target = format!("/usr/sbin/{}", tool.replacen("tables", "tables-legacy", 1));
            std::os::unix::fs::symlink(target, &link)?;
        }
    }
    Ok(shims)
}

/// How weft's proxy is started: `weft proxy`, or a proxy-only binary
/// (`--proxy-bin`, e.g. target/lean/weft-proxy) taking the same flags.
#[derive(Debug, Clone)]
pub(crate) struct ProxyCommand {
    pub(crate) program: String,
    /// Its arguments before the proxy's flags (`proxy` for `weft`).
    pub(crate) first: Vec<String>,
}

impl ProxyCommand {
    /// `bin` when given, else `weft proxy`.
    pub(crate) fn new(weft: &Path, bin: Option<&Path>) -> ProxyCommand {
        match bin {
            Some(bin) => ProxyCommand {
                program: bin.display().to_string(),
                first: Vec::new(),
            },
            None => ProxyCommand {
                program: weft.display().to_string(),
                first: vec!["proxy".into()],
            },
        }
    }
}

pub(crate) fn start(
    lab: &Lab,
    api: &ApiServer,
    who: Who,
    mode: &str,
    host: &Host,
    weft_proxy: &ProxyCommand,
) -> Result<Proc> {
    let kubeconfig = api.admin_kubeconfig()?.display().to_string();
    let log = lab.dir().join(format!("{}-{}.log", who.name(), host.name));
    let proxy_mode = if mode == "nftables" {
        "nftables"
    } else {
        "iptables"
    };
    let mut args = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--hostname-override={}", host.name),
        format!("--proxy-mode={proxy_mode}"),
        format!("--cluster-cidr={POD_CIDR}"),
        "--metrics-bind-address=127.0.0.1:10249".to_string(),
    ];
    match who {
        Who::Weft => {
            let backend = if mode == "iptables-legacy" {
                "legacy"
            } else {
                "nft"
            };
            args.splice(0..0, weft_proxy.first.iter().cloned());
            if proxy_mode == "iptables" {
                args.push(format!("--iptables-backend={backend}"));
            }
            Proc::spawn(&host.ns, "weft proxy", log, &weft_proxy.program, &args, &[])
        }
        Who::KubeProxy => {
            args.push(format!("--bind-address={}", host.ip));
            args.push("--healthz-bind-address=127.0.0.1:10256".into());
            args.push("--conntrack-max-per-core=0".into());
            let mut env = Vec::new();
            if mode == "iptables-legacy" {
                let shims = legacy_shims(lab.dir())?;
                let path = std::env::var("PATH").unwrap_or_default();
                env.push(("PATH".to_string(), format!("{}:{path}", shims.display())));
            }
            let program = api.bin.join("kube-proxy").display().to_string();
            Proc::spawn(&host.ns, "kube-proxy", log, &program, &args, &env)
        }
    }
}

/// Services with a rule in `host`'s kernel (iptables: `KUBE-SVC-` chains;
/// nftables: elements of the `service-ips` map, the same name in both).
pub(crate) fn rules_count(host: &Host, mode: &str) -> usize {
    if mode == "iptables-legacy" {
        // from the kernel: iptables-legacy-save of 10,000 services takes
        // seconds (libiptc), which would make this poll coarse
        return in_netns(&host.ns, || {
            xtables::read_table(xtables::Family::V4, "nat").map_or(0, |t| {
                t.user_chains()
                    .filter(|c| c.starts_with("KUBE-SVC-"))
                    .count()
            })
        })
        .unwrap_or(0);
    }
    if mode == "nftables" {
        // in-process, cheap enough to poll every few milliseconds: `nft
        // list map` every 50 ms had added ~100 ms to each cold start timed
        let chains = || {
            weft_kernel::map_verdict_chains(weft_kernel::NFPROTO_IPV4, "kube-proxy", "service-ips")
        };
        return in_netns(&host.ns, chains)
            .ok()
            .and_then(Result::ok)
            .map_or(0, |c| {
                c.iter().filter(|c| c.starts_with("service-")).count()
            });
    }
    let out = sh(
        "ip",
        &["netns", "exec", &host.ns, "iptables-nft-save", "-t", "nat"],
    );
    let Ok(out) = out else { return 0 };
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count()
}

/// Whether the legacy nat table holds `chain`, read from the kernel
/// without the xtables lock (the tool would hold it, blocking the proxy's
/// write, while libiptc parses the whole table: over a second at 10,000
/// services). Only when the table's size changed since `last` is it read
/// whole, so a tight poll costs the proxy under test little CPU.
fn legacy_has_chain(host: &Host, chain: &str, last: &mut Option<xtables::table::Info>) -> bool {
    in_netns(&host.ns, || {
        let family = xtables::Family::V4;
        let Ok(fd) = xtables::kernel::socket(family) else {
            return false;
        };
        let Ok(info) = xtables::kernel::info(&fd, family, "nat") else {
            return false;
        };
        if last.as_ref() == Some(&info) {
            return false;
        }
        *last = Some(info);
        xtables::read_table(family, "nat").is_ok_and(|t| t.has_chain(chain))
    })
    .unwrap_or(false)
}

/// Whether service i has its rule (both proxies name a named port's
/// chain `KUBE-SVC-` + hash of `bench/svc-i:http` + `tcp`). On legacy,
/// `last` is the nat table's info when it was last read whole (see
/// [`legacy_has_chain`]).
fn present(host: &Host, mode: &str, i: usize, last: &mut Option<xtables::table::Info>) -> bool {
    match mode {
        "nftables" => {
            let element = format!("{{ {} . tcp . 80 }}", cluster_ip(i));
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &host.ns,
                    "nft",
                    "get",
                    "element",
                    "ip",
                    "kube-proxy",
                    "service-ips",
                    &element,
                ],
            )
            .is_ok()
        }
        _ => {
            let chain = format!(
                "KUBE-SVC-{}",
                service_hash(&format!("bench/svc-{i}:http"), Protocol::Tcp)
            );
            if mode == "iptables-legacy" {
                return legacy_has_chain(host, &chain, last);
            }
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &host.ns,
                    "iptables-nft",
                    "-w",
                    "-t",
                    "nat",
                    "-S",
                    &chain,
                ],
            )
            .is_ok()
        }
    }
}

/// The kernel of `host` holding a rule for `services` Services in `mode`.
pub(crate) struct RulesSeen<'a> {
    pub(crate) host: &'a Host,
    pub(crate) mode: &'a str,
    pub(crate) services: usize,
}

impl RulesSeen<'_> {
    /// Polls (every 5 ms in nftables mode, else every 50 ms) until the
    /// rules are there; false once `timeout` has passed since `t0`; an
    /// error when `proc` (`who`) exits.
    pub(crate) fn wait(
        &self,
        who: Who,
        proc: &mut Proc,
        t0: Instant,
        timeout: Duration,
    ) -> Result<bool> {
        loop {
            if rules_count(self.host, self.mode) >= self.services {
                return Ok(true);
            }
            if let Some(code) = proc.exit_code() {
                bail!("{} exited with {code}:\n{}", who.name(), proc.log_tail(20));
            }
            if t0.elapsed() > timeout {
                return Ok(false);
            }
            std::thread::sleep(self.poll_every());
        }
    }

    /// nftables' service map is read in-process over netlink, cheaply
    /// enough for a tight poll; the iptables tools are slower to run.
    fn poll_every(&self) -> Duration {
        Duration::from_millis(if self.mode == "nftables" { 5 } else { 50 })
    }
}

/// Median, p99 and maximum (NaN when there are no samples).
pub(crate) fn med_p99_max(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let (_, med, p99, max) = stats(v);
    (med, p99, max)
}

/// utime + stime of `pid`, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'
    (ticks(11) + ticks(12)) / 100.0
}

/// SIGKILLs the children of `pid` (by PID, from /proc's parent links).
pub(crate) fn kill_children(pid: u32) {
    if pid != 0 {
        weft_lab::kill_where(|_, parent, _| parent == pid);
    }
}

/// Registers `host` as a Node with its address, as kubelet would
/// (kube-proxy waits 30 s for both).
pub(crate) fn register_node(api: &ApiServer, host: &Host) -> Result<()> {
    api.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n",
        host.name
    ))?;
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}}]}}}}"#,
        host.ip
    );
    api.kubectl(&[
        "patch",
        "node",
        &host.name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])?;
    Ok(())
}

/// One proxy in one mode on one host, and the counters of the run it is
/// part of (Service and endpoint numbers already used).
struct Trial<'a> {
    api: &'a ApiServer,
    host: &'a Host,
    who: Who,
    mode: &'a str,
    services: usize,
    endpoints: usize,
    samples: usize,
}

/// What one trial measured after the rules were complete.
struct Measured {
    rules_ms: f64,
    rss: u64,
    settled: u64,
    cpu: f64,
    adds: Vec<f64>,
    after_ack: Vec<f64>,
    write_ms: Vec<f64>,
    changes: Vec<f64>,
}

impl Trial<'_> {
    /// Waits until the kernel holds a rule for every Service; false after
    /// `timeout`.
    fn wait_for_rules(&self, proc: &mut Proc, t0: Instant, timeout: Duration) -> Result<bool> {
        let seen = RulesSeen {
            host: self.host,
            mode: self.mode,
            services: self.services,
        };
        seen.wait(self.who, proc, t0, timeout)
    }

    /// The kernel's nftables events (not on legacy iptables, which has
    /// none: polled there).
    fn monitor(&self) -> Option<NftEvents> {
        if self.mode == "iptables-legacy" {
            return None;
        }
        match NftEvents::start(&self.host.ns) {
            Ok(m) => Some(m),
            Err(e) => {
                println!(
                    "  ({}: {e:#}; added Services polled instead)",
                    self.who.name()
                );
                None
            }
        }
    }

    /// When Service `i`'s cluster IP is sent to its endpoints (not what
    /// rejects it while it has none yet, which is in other sets and
    /// tables).
    fn programmed(&self, monitor: Option<&NftEvents>, i: usize) -> Option<Instant> {
        if let Some(m) = monitor {
            let ip = cluster_ip(i).octets();
            let nft = self.mode == "nftables";
            return m.until(
                |e: &Event| {
                    e.mentions(&ip)
                        && if nft {
                            e.kind == Kind::Element && e.container == "service-ips"
                        } else {
                            e.kind == Kind::Rule
                                && e.table == "nat"
                                && e.container == "KUBE-SERVICES"
                        }
                },
                Duration::from_secs(300),
            );
        }
        let t = Instant::now();
        let mut last = None;
        while t.elapsed() <= Duration::from_secs(300) {
            if present(self.host, self.mode, i, &mut last) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// Single Services added through the API: (from the slice's write,
    /// from the API's answer, the write itself), in ms.
    fn adds(
        &self,
        proc: &Proc,
        monitor: Option<&NftEvents>,
        next: &mut usize,
    ) -> Result<[Vec<f64>; 3]> {
        let mut out: [Vec<f64>; 3] = Default::default();
        for _ in 0..self.samples {
            let i = *next;
            *next += 1;
            if let Some(m) = monitor {
                m.drain();
            }
            let written = load(self.api, i..i + 1, self.endpoints)?;
            let Some(done) = self.programmed(monitor, i) else {
                bail!(
                    "{}: service {i} not programmed after 300 s:\n{}",
                    self.who.name(),
                    proc.log_tail(20)
                );
            };
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            out[0].push(ms(done.saturating_duration_since(written.sent)));
            out[1].push(ms(done.saturating_duration_since(written.acked)));
            out[2].push(ms(written.acked - written.sent));
        }
        Ok(out)
    }

    /// One endpoint of an existing Service replaced: from the API's answer
    /// until a rule or element names the new address, in ms.
    fn endpoint_changes(
        &self,
        proc: &Proc,
        monitor: Option<&NftEvents>,
        changed: &mut usize,
    ) -> Result<Vec<f64>> {
        let Some(m) = monitor else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for _ in 0..self.samples {
            let k = *changed;
            *changed += 1;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 127, 0, 1)) + k as u32);
            m.drain();
            let service = k % self.services;
            let written = change_endpoint(self.api, service, self.endpoints, ip)?;
            let Some(done) = m.until(|e| e.mentions(&ip.octets()), Duration::from_secs(300)) else {
                bail!(
                    "{}: endpoint {ip} of service {service} not programmed after 300 s:\n{}",
                    self.who.name(),
                    proc.log_tail(20)
                );
            };
            out.push(done.saturating_duration_since(written.acked).as_secs_f64() * 1e3);
        }
        Ok(out)
    }

    /// Starts the proxy and measures it; `None` when its rules were not
    /// complete after `timeout` (it is stopped).
    fn measure(
        &self,
        lab: &Lab,
        timeout: Duration,
        next: &mut usize,
        changed: &mut usize,
    ) -> Result<Option<Measured>> {
        let t0 = Instant::now();
        let weft_proxy = ProxyCommand::new(&lab.weft, None);
        let mut proc = start(lab, self.api, self.who, self.mode, self.host, &weft_proxy)?;
        if !self.wait_for_rules(&mut proc, t0, timeout)? {
            // its iptables-restore or nft would go on without it
            kill_children(proc.pid().unwrap_or(0));
            proc.stop(Duration::from_secs(5));
            return Ok(None);
        }
        let rules_ms = t0.elapsed().as_secs_f64() * 1e3;
        let pid = proc.pid().unwrap_or(0);
        let (rss, _, _) = rss_kib(pid);
        let cpu = cpu_seconds(pid);
        let monitor = self.monitor();
        let [adds, after_ack, write_ms] = self.adds(&proc, monitor.as_ref(), next)?;
        let changes = self.endpoint_changes(&proc, monitor.as_ref(), changed)?;
        drop(monitor);
        // after the adds, with the first sync's garbage given back
        let (settled, _, _) = rss_kib(pid);
        proc.stop(Duration::from_secs(5));
        Ok(Some(Measured {
            rules_ms,
            rss,
            settled,
            cpu,
            adds,
            after_ack,
            write_ms,
            changes,
        }))
    }
}

impl Measured {
    /// Prints the table row and returns the JSON of one proxy's figures.
    fn report(mut self, mode: &str, n: usize, who: Who) -> serde_json::Value {
        let (med, p99, max) = med_p99_max(&mut self.adds);
        let (ack_med, ack_p99, _) = med_p99_max(&mut self.after_ack);
        let (write_med, _, _) = med_p99_max(&mut self.write_ms);
        let (change_med, change_p99, _) = med_p99_max(&mut self.changes);
        let Measured {
            rules_ms,
            rss,
            settled,
            cpu,
            ..
        } = self;
        println!(
            "{mode:>15} {n:>8} {:>11} | {rules_ms:>9.0} | {med:>6.1} {p99:>6.1} {max:>6.1} | {ack_med:>6.1} {ack_p99:>6.1} | {write_med:>5.1} | {change_med:>6.1} {change_p99:>6.1} | {:>6.1} {:>6.1} | {cpu:>6.2}",
            who.name(),
            rss as f64 / 1024.0,
            settled as f64 / 1024.0
        );
        serde_json::json!({
            "start_to_rules_ms": rules_ms,
            "add_one_ms": {"median": med, "p99": p99, "max": max},
            "add_one_after_write_acked_ms": {"median": ack_med, "p99": ack_p99},
            "slice_write_ms_median": write_med,
            "endpoint_change_after_write_acked_ms": {"median": change_med, "p99": change_p99},
            "rss_kib": rss, "rss_after_adds_kib": settled, "cpu_seconds": cpu,
        })
    }
}

/// The same run's ratios of kube-proxy's figures to weft's.
fn print_ratios(mode: &str, row: &BTreeMap<&str, serde_json::Value>) {
    let (Some(w), Some(k)) = (row.get("weft"), row.get("kube-proxy")) else {
        return;
    };
    let ratio = |path: &[&str]| -> Option<f64> {
        let at = |v: &serde_json::Value| path.iter().try_fold(v, |v, k| v.get(k))?.as_f64();
        Some(at(k)? / at(w)?)
    };
    if let (Some(start), Some(add)) = (
        ratio(&["start_to_rules_ms"]),
        ratio(&["add_one_ms", "median"]),
    ) {
        println!(
            "{mode:>15} same run: kube-proxy / weft = {start:.1}x to every rule, {add:.0}x per added Service (median)"
        );
    }
}

pub fn run(
    weft: &Path,
    modes: &[String],
    counts: &[usize],
    endpoints: usize,
    samples: usize,
    timeout: Duration,
    proxies: &[String],
) -> Result<serde_json::Value> {
    print_header(endpoints)?;
    let mut json = Vec::new();
    for &n in counts {
        let mut lab = Lab::new("wbk", weft)?;
        lab.start_etcd()?;
        let api_host = lab.etcd_host(0)?;
        let api = lab.start_apiserver(&api_host)?;
        let t = Instant::now();
        load(&api, 0..n, endpoints).context("creating the services through the API")?;
        println!(
            "  ({n} Services and EndpointSlices created through the API in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let (mut next, mut changed, mut octet) = (n, 0usize, 10u8);
        for mode in modes.iter().map(String::as_str) {
            let mut row = BTreeMap::new();
            for who in [Who::Weft, Who::KubeProxy]
                .into_iter()
                .filter(|w| proxies.iter().any(|p| p == w.name()))
            {
                octet += 1;
                let host = lab.host(&format!("p{octet}"), octet)?;
                register_node(&api, &host)?;
                let trial = Trial {
                    api: &api,
                    host: &host,
                    who,
                    mode,
                    services: n,
                    endpoints,
                    samples,
                };
                let figures = match trial.measure(&lab, timeout, &mut next, &mut changed)? {
                    Some(m) => m.report(mode, n, who),
                    None => {
                        println!(
                            "{mode:>15} {n:>8} {:>11} | not complete after {} s: stopped",
                            who.name(),
                            timeout.as_secs()
                        );
                        serde_json::json!({"incomplete_after_s": timeout.as_secs()})
                    }
                };
                row.insert(who.name(), figures);
            }
            print_ratios(mode, &row);
            json.push(serde_json::json!({
                "mode": mode, "services": n, "endpoints_per_service": endpoints,
                "weft": row.get("weft"), "kube_proxy": row.get("kube-proxy"),
            }));
        }
        drop(api);
    }
    print_legend();
    Ok(serde_json::Value::Array(json))
}

/// The pinned kube-proxy's `--version`.
pub(crate) fn version() -> String {
    let Ok(bin) = weft_lab::upstream_kubernetes() else {
        return "?".into();
    };
    sh(
        &bin.join("kube-proxy").display().to_string(),
        &["--version"],
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_default()
}

fn print_header(endpoints: usize) -> Result<()> {
    weft_lab::upstream_kubernetes()?;
    let version = version();
    println!(
        "weft-bench proxy --against kube-proxy ({version}): one kube-apiserver, {endpoints} endpoints per service, {} CPUs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "{:>15} {:>8} {:>11} | {:>9} | {:>20} | {:>13} | {:>5} | {:>13} | {:>13} | {:>6}",
        "mode",
        "services",
        "proxy",
        "rules ms",
        "add ms med/p99/max",
        "after ack",
        "write",
        "endpoint chg",
        "RSS MiB",
        "CPU s"
    );
    Ok(())
}

fn print_legend() {
    println!("(rules: process start until the kernel holds a rule for every Service, polled from outside every 50 ms plus");
    println!(" the listing's own time; add one: a Service created through the API, from its EndpointSlice's write until");
    println!(" the kernel announces (nftables netlink events) its cluster IP in a service-ips element or a nat");
    println!(" KUBE-SERVICES rule (iptables-legacy: polled every 2 ms); after ack: the same from the API server's");
    println!(" answer to that write (committed to etcd), whose own median time is `write`; RSS MiB and CPU s: the");
    println!(" proxy process when its rules were complete, and RSS again after the adds; endpoint chg: one endpoint");
    println!(" of an existing Service replaced, from the API's answer until a rule or element names the new address,");
    println!(" med/p99 (not on iptables-legacy, which has no events))");
}

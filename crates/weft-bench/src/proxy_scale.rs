//! `weft-bench --scenario proxy-scale`: the proxy where kube-proxy
//! struggles, weft and the pinned kube-proxy side by side in one run on one
//! real kube-apiserver, each in a host namespace of its own, in each mode
//! asked for:
//!
//! 1. **size**: for each of --scale-services (× --proxy-endpoints each,
//!    default 50: 200, 2,000 and 5,000 Services are 10k, 100k and 250k
//!    endpoints), cold start until the kernel holds every Service (the
//!    median of --cold-starts, each on a fresh host), RSS and CPU then,
//!    and --samples single endpoint changes, from the API's answer until
//!    the kernel names the new address (its nftables events);
//! 2. **rolling**: one Service with 5,000 endpoints in five
//!    EndpointSlices replaced 10 % at a time, as a Deployment rollout does:
//!    per step, from the API's answer until the kernel names all 500 new
//!    addresses;
//! 3. **churn**: --churn-services × 10 endpoints, --churn-rate endpoint
//!    changes per second for --churn-secs: API answer → kernel per change
//!    (p50/p99/max), CPU seconds and RSS over the window;
//! 4. **floor**: weft's final ruleset dumped and loaded into an empty
//!    namespace in one transaction (`nft -f`, `iptables-restore`), the
//!    time printed beside weft's cold start; for nftables also the
//!    netlink floor: the objects and rules as text, then every element
//!    over netlink without a parser ([`crate::nft_floor`]).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_lab::{in_netns, sh, ApiServer, Host, Lab, Proc};

use crate::api_objects::{
    change_endpoint, endpoints_with_first, load, patch_endpoints, service_json,
};
use crate::cold_starts;
use crate::kube_proxy::{
    cpu_seconds, kill_children, med_p99_max, register_node, start, ProxyCommand, RulesSeen, Who,
};
use crate::nft_events::{Event, NftEvents};
use crate::{rss_kib, runtime};

/// The rolling Service: its index (for its cluster IP), slices, endpoints.
const BIG: usize = 60_000;
const BIG_SLICES: usize = 5;
const BIG_PER_SLICE: usize = 1000;
const ROLL_STEP: usize = 500;

/// What the scenario is asked to do.
pub struct ScaleArgs<'a> {
    pub modes: &'a [String],
    pub services: &'a [usize],
    pub endpoints: usize,
    /// Cold starts of each proxy in each mode (the median is reported).
    pub cold_starts: usize,
    pub samples: usize,
    pub timeout: Duration,
    pub proxies: &'a [String],
    pub churn_services: usize,
    pub churn_rate: u32,
    pub churn_secs: u64,
    /// weft's side: `weft proxy` or `--proxy-bin`.
    pub weft_proxy: ProxyCommand,
}

/// Figures of one proxy in one mode, as the JSON names them.
#[derive(Default)]
struct Figures {
    cold_start_ms: Option<f64>,
    change_ms: Vec<f64>,
    rss_kib: u64,
    cpu_s: f64,
}

impl Figures {
    fn json(mut self) -> serde_json::Value {
        let (p50, p99, max) = med_p99_max(&mut self.change_ms);
        serde_json::json!({
            "cold_start_ms": self.cold_start_ms,
            "change_p50_ms": p50, "change_p99_ms": p99, "change_max_ms": max,
            "changes": self.change_ms.len(),
            "rss_mib": self.rss_kib as f64 / 1024.0,
            "cpu_s": self.cpu_s,
        })
    }
}

pub fn run(weft: &Path, a: &ScaleArgs) -> Result<serde_json::Value> {
    let command = [a.weft_proxy.program.as_str()]
        .into_iter()
        .chain(a.weft_proxy.first.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "weft-bench proxy-scale: weft ({command}) beside kube-proxy ({}), one kube-apiserver, {} CPUs",
        crate::kube_proxy::version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut out = serde_json::Map::new();
    out.insert("weft_command".into(), command.into());
    let mut sizes = Vec::new();
    for &n in a.services {
        sizes.push(size_and_rolling(weft, a, n)?);
    }
    out.insert("size".into(), serde_json::Value::Array(sizes));
    if a.churn_secs > 0 {
        out.insert("churn".into(), churn(weft, a)?);
    }
    Ok(serde_json::Value::Object(out))
}

/// One proxy started on a fresh host of `lab`, and when it started.
struct Running {
    proc: Proc,
    host: Host,
    who: Who,
    t0: Instant,
}

fn start_proxy(
    lab: &mut Lab,
    api: &ApiServer,
    who: Who,
    mode: &str,
    octet: u8,
    weft_proxy: &ProxyCommand,
) -> Result<Running> {
    let host = lab.host(&format!("p{octet}"), octet)?;
    register_node(api, &host)?;
    let t0 = Instant::now();
    let proc = start(lab, api, who, mode, &host, weft_proxy)?;
    Ok(Running {
        proc,
        host,
        who,
        t0,
    })
}

impl Running {
    /// Until the kernel holds `services` Services; the time from start, or
    /// `None` after `timeout` (the proxy and its helpers are stopped).
    fn until_rules(
        &mut self,
        mode: &str,
        services: usize,
        timeout: Duration,
    ) -> Result<Option<f64>> {
        let seen = RulesSeen {
            host: &self.host,
            mode,
            services,
        };
        if seen.wait(self.who, &mut self.proc, self.t0, timeout)? {
            return Ok(Some(self.t0.elapsed().as_secs_f64() * 1e3));
        }
        self.stop();
        Ok(None)
    }

    fn pid(&self) -> u32 {
        self.proc.pid().unwrap_or(0)
    }

    fn stop(&mut self) {
        kill_children(self.pid());
        self.proc.stop(Duration::from_secs(5));
    }
}

/// Scenarios 1, 2 and 4 at `n` Services.
fn size_and_rolling(weft: &Path, a: &ScaleArgs, n: usize) -> Result<serde_json::Value> {
    let mut lab = Lab::new("wbs", weft)?;
    lab.start_etcd()?;
    let api_host = lab.etcd_host(0)?;
    let api = lab.start_apiserver(&api_host)?;
    let t = Instant::now();
    load(&api, 0..n, a.endpoints).context("creating the services through the API")?;
    let mut size = Size {
        n,
        endpoints: a.endpoints,
        big: BigService::create(&api)?,
        changed: 0,
    };
    let total = n * a.endpoints + BIG_SLICES * BIG_PER_SLICE;
    println!(
        "\n{n} Services × {} endpoints + one of {} ({total} endpoints) created in {:.1} s",
        a.endpoints,
        BIG_SLICES * BIG_PER_SLICE,
        t.elapsed().as_secs_f64()
    );
    println!(
        "{:>15} {:>11} | {:>10} {:>9} | {:>15} | {:>7} {:>6} | {:>19}",
        "mode",
        "proxy",
        "cold ms",
        "floor ms",
        "change p50/p99",
        "RSS MiB",
        "CPU s",
        "rolling p50/p99/all"
    );
    let (mut rows, mut octet) = (Vec::new(), 10u8);
    for mode in a.modes {
        let mut row = BTreeMap::new();
        let mut floor = Floors::default();
        let mut oracle = None;
        let both = a.proxies.len() > 1;
        for who in wanted(a.proxies) {
            let mut starts = earlier_cold_starts(&mut lab, &api, who, mode, &mut octet, &size, a)?;
            octet += 1;
            let mut run = start_proxy(&mut lab, &api, who, mode, octet, &a.weft_proxy)?;
            let mut json = size.measure(&mut lab, &api, &mut run, a, mode, &mut floor)?;
            // the running proxy's own start decides the oracle, not the median
            let finished = json["cold_start_ms"].as_f64();
            starts.push(finished);
            cold_starts::record(&mut json, starts);
            if who == Who::KubeProxy && both && mode != "nftables" && finished.is_some() {
                octet += 1;
                oracle = Some(iptables_oracle(
                    &mut lab, &api, &run, mode, octet, &size, a,
                )?);
            }
            run.stop();
            print_row(mode, who, &json, floor.text.filter(|_| who == Who::Weft));
            row.insert(who.name(), json);
        }
        if let Some(o) = &oracle {
            println!("{mode:>15} oracle: {}", o["summary"].as_str().unwrap_or(""));
        }
        if a.cold_starts > 1 {
            cold_starts::print(mode, &row);
        }
        if let Some((objects, elements)) = floor.netlink {
            println!(
                "{mode:>15} netlink floor: {:.0} ms (objects and rules as text {objects:.0} ms, elements over netlink {elements:.0} ms)",
                objects + elements
            );
        }
        print_ratio(mode, &row);
        rows.push(serde_json::json!({
            "mode": mode, "services": n, "endpoints": total, "floor_ms": floor.text,
            "floor_netlink_ms": floor.netlink.map(|(o, e)| o + e),
            "weft": row.get("weft"), "kube_proxy": row.get("kube-proxy"),
            "oracle": oracle,
        }));
    }
    drop(api);
    Ok(serde_json::Value::Array(rows))
}

/// All but the last of --cold-starts of `who`: each on a fresh host,
/// stopped once it holds every Service.
fn earlier_cold_starts(
    lab: &mut Lab,
    api: &ApiServer,
    who: Who,
    mode: &str,
    octet: &mut u8,
    size: &Size,
    a: &ScaleArgs,
) -> Result<Vec<Option<f64>>> {
    let mut starts = Vec::new();
    for _ in 1..a.cold_starts {
        *octet += 1;
        let mut run = start_proxy(lab, api, who, mode, *octet, &a.weft_proxy)?;
        starts.push(run.until_rules(mode, size.n + 1, a.timeout)?);
        run.stop();
    }
    Ok(starts)
}

/// The iptables oracle at this size: a second weft started beside the
/// running kube-proxy, once it holds every Service, both hosts'
/// `iptables-save` compared chain by chain (kube-proxy's chains that no
/// rule reaches left out: it deletes them later, [`reachable`]) until
/// equal or 120 s.
///
/// [`reachable`]: weft_lab::iptables_oracle::reachable
fn iptables_oracle(
    lab: &mut Lab,
    api: &ApiServer,
    kube: &Running,
    mode: &str,
    octet: u8,
    size: &Size,
    a: &ScaleArgs,
) -> Result<serde_json::Value> {
    use weft_lab::iptables_oracle::{chains, difference, reachable, rule_count};
    let tool = if mode == "iptables-legacy" {
        "iptables-legacy-save"
    } else {
        "iptables-save"
    };
    let mut weft = start_proxy(lab, api, Who::Weft, mode, octet, &a.weft_proxy)?;
    let ready = weft.until_rules(mode, size.n + 1, a.timeout)?;
    let started = Instant::now();
    let (equal, rules, diff) = loop {
        let k = reachable(&chains(&kube.host.ns, tool)?);
        let w = chains(&weft.host.ns, tool)?;
        let diff = difference(&k, &w);
        if ready.is_none() || diff.is_empty() || started.elapsed() > Duration::from_secs(120) {
            break (ready.is_some() && diff.is_empty(), rule_count(&k), diff);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    weft.stop();
    let summary = if equal {
        format!("kube-proxy's and weft's KUBE-* rules are equal ({rules} rules, {tool})")
    } else if ready.is_none() {
        "weft did not finish its first sync".to_string()
    } else {
        let head: Vec<&str> = diff.lines().take(20).collect();
        format!("the rules DIFFER ({tool}):\n{}", head.join("\n"))
    };
    Ok(serde_json::json!({"equal": equal, "rules": rules, "tool": tool, "summary": summary}))
}

/// The floors of one size and mode: `nft -f` / `iptables-restore` of the
/// whole ruleset, and for nftables (objects as text, elements over
/// netlink) in ms.
#[derive(Default)]
struct Floors {
    text: Option<f64>,
    netlink: Option<(f64, f64)>,
}

/// The size scenario's cluster: its numbers, the rolling Service, the
/// endpoint changes made so far.
struct Size {
    n: usize,
    endpoints: usize,
    big: BigService,
    changed: usize,
}

impl Size {
    /// One proxy's figures; weft's run also measures the floor.
    fn measure(
        &mut self,
        lab: &mut Lab,
        api: &ApiServer,
        run: &mut Running,
        a: &ScaleArgs,
        mode: &str,
        floor: &mut Floors,
    ) -> Result<serde_json::Value> {
        let mut f = Figures {
            cold_start_ms: run.until_rules(mode, self.n + 1, a.timeout)?,
            ..Figures::default()
        };
        let mut rolling = Vec::new();
        if f.cold_start_ms.is_some() {
            f.rss_kib = rss_kib(run.pid()).0;
            f.cpu_s = cpu_seconds(run.pid());
            if run.who == Who::Weft {
                floor.text = Some(floor_ms(lab, &run.host, mode)?);
                if mode == "nftables" {
                    floor.netlink = Some(netlink_floor_ms(lab, &run.host)?);
                }
            }
            // iptables-legacy has no events to time changes by
            if mode != "iptables-legacy" {
                let events = NftEvents::start(&run.host.ns)?;
                for _ in 0..a.samples {
                    let ms = one_change(api, &events, self.n, self.endpoints, &mut self.changed)?;
                    f.change_ms.push(ms);
                }
                rolling = self.big.roll(api, &events)?;
            }
        }
        let mut json = f.json();
        let total: f64 = rolling.iter().sum();
        let (r50, r99, _) = med_p99_max(&mut rolling);
        json["rolling_step_p50_ms"] = r50.into();
        json["rolling_step_p99_ms"] = r99.into();
        json["rolling_total_ms"] = total.into();
        Ok(json)
    }
}

fn wanted(proxies: &[String]) -> impl Iterator<Item = Who> + '_ {
    [Who::Weft, Who::KubeProxy]
        .into_iter()
        .filter(move |w| proxies.iter().any(|p| p == w.name()))
}

fn print_row(mode: &str, who: Who, j: &serde_json::Value, floor: Option<f64>) {
    let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    let floor = floor.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    println!(
        "{mode:>15} {:>11} | {:>10.0} {floor:>9} | {:>7.1} {:>7.1} | {:>7.1} {:>6.2} | {:>6.0} {:>6.0} {:>6.0}",
        who.name(),
        f("cold_start_ms"),
        f("change_p50_ms"),
        f("change_p99_ms"),
        f("rss_mib"),
        f("cpu_s"),
        f("rolling_step_p50_ms"),
        f("rolling_step_p99_ms"),
        f("rolling_total_ms"),
    );
}

/// The same run's ratios, kube-proxy's figure over weft's.
fn print_ratio(mode: &str, row: &BTreeMap<&str, serde_json::Value>) {
    let (Some(w), Some(k)) = (row.get("weft"), row.get("kube-proxy")) else {
        return;
    };
    let r = |key: &str| match (k[key].as_f64(), w[key].as_f64()) {
        (Some(k), Some(w)) if w > 0.0 => format!("{:.1}x", k / w),
        _ => "-".into(),
    };
    println!(
        "{mode:>15} same run, kube-proxy / weft: cold start {}, change p99 {}, RSS {}, rolling total {}",
        r("cold_start_ms"),
        r("change_p99_ms"),
        r("rss_mib"),
        r("rolling_total_ms")
    );
}

/// The addresses in `event` whose first two octets are `prefix`.
fn addresses(event: &Event, prefix: [u8; 2]) -> impl Iterator<Item = [u8; 4]> + '_ {
    event
        .payload
        .windows(4)
        .filter(move |w| w[..2] == prefix)
        .map(|w| [w[0], w[1], w[2], w[3]])
}

/// One endpoint of Service `changed % n` replaced by a new address: ms
/// from the API's answer until the kernel names it.
fn one_change(
    api: &ApiServer,
    events: &NftEvents,
    n: usize,
    endpoints: usize,
    changed: &mut usize,
) -> Result<f64> {
    let k = *changed;
    *changed += 1;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 127, 0, 1)) + k as u32);
    let service = k % n;
    events.drain();
    let acked = change_endpoint(api, service, endpoints, ip)?.acked;
    let done = events
        .until(|e| e.mentions(&ip.octets()), Duration::from_secs(300))
        .with_context(|| format!("endpoint {ip} not in the kernel after 300 s"))?;
    Ok(done.saturating_duration_since(acked).as_secs_f64() * 1e3)
}

/// Endpoint `j` of a slice as the API takes it.
fn endpoint(ip: Ipv4Addr, j: usize) -> serde_json::Value {
    serde_json::json!({
        "addresses": [ip.to_string()],
        "conditions": {"ready": true},
        "nodeName": format!("node{}", j % 50),
    })
}

/// The rolling Service and its slices' current addresses.
struct BigService {
    slices: Vec<Vec<Ipv4Addr>>,
    /// Addresses handed out so far (each step's are new).
    next: u32,
}

impl BigService {
    fn create(api: &ApiServer) -> Result<BigService> {
        let base = u32::from(Ipv4Addr::new(100, 80, 0, 0));
        let slices: Vec<Vec<Ipv4Addr>> = (0..BIG_SLICES)
            .map(|s| {
                (0..BIG_PER_SLICE)
                    .map(|j| Ipv4Addr::from(base + (s * BIG_PER_SLICE + j) as u32))
                    .collect()
            })
            .collect();
        let mut svc = service_json(BIG);
        svc["metadata"]["name"] = "big".into();
        let objects: Vec<serde_json::Value> = slices
            .iter()
            .enumerate()
            .map(|(s, ips)| {
                serde_json::json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("big-{s}"), "namespace": "bench",
                                 "labels": {"kubernetes.io/service-name": "big"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": ips.iter().enumerate().map(|(j, ip)| endpoint(*ip, j)).collect::<Vec<_>>(),
                })
            })
            .collect();
        create_objects(api, svc, objects)?;
        Ok(BigService { slices, next: 0 })
    }

    /// Ten steps, each replacing 500 endpoints (half a slice): ms per step
    /// from the API's answer until the kernel names every new address.
    fn roll(&mut self, api: &ApiServer, events: &NftEvents) -> Result<Vec<f64>> {
        let mut steps = Vec::new();
        for step in 0..(BIG_SLICES * BIG_PER_SLICE / ROLL_STEP) {
            let s = step * ROLL_STEP / BIG_PER_SLICE;
            let from = step * ROLL_STEP % BIG_PER_SLICE;
            let mut pending = std::collections::HashSet::new();
            for j in from..from + ROLL_STEP {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 81, 0, 0)) + self.next);
                self.next += 1;
                self.slices[s][j] = ip;
                pending.insert(ip.octets());
            }
            let eps: Vec<serde_json::Value> = self.slices[s]
                .iter()
                .enumerate()
                .map(|(j, ip)| endpoint(*ip, j))
                .collect();
            events.drain();
            let acked =
                patch_endpoints(api, &format!("big-{s}"), serde_json::Value::Array(eps))?.acked;
            let done = events
                .until(
                    |e| {
                        for a in addresses(e, [100, 81]) {
                            pending.remove(&a);
                        }
                        pending.is_empty()
                    },
                    Duration::from_secs(300),
                )
                .context("a rolling step's endpoints not all in the kernel after 300 s")?;
            steps.push(done.saturating_duration_since(acked).as_secs_f64() * 1e3);
        }
        Ok(steps)
    }
}

fn create_objects(
    api: &ApiServer,
    svc: serde_json::Value,
    slices: Vec<serde_json::Value>,
) -> Result<()> {
    let kubeconfig = api.admin_kubeconfig()?;
    in_netns(&api.host.ns, move || -> Result<()> {
        runtime()?.block_on(async move {
            let client =
                weft_proxy::shell::source::kubernetes::client(Some(&kubeconfig), None).await?;
            let pp = kube::api::PostParams::default();
            let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "bench");
            services.create(&pp, &serde_json::from_value(svc)?).await?;
            let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "bench");
            for s in slices {
                api.create(&pp, &serde_json::from_value(s)?).await?;
            }
            Ok(())
        })
    })?
}

/// Scenario 4: `host`'s ruleset, dumped and loaded into an empty
/// namespace in one transaction; ms.
fn floor_ms(lab: &mut Lab, host: &Host, mode: &str) -> Result<f64> {
    let ns = lab.netns(&format!("floor-{}", host.name))?;
    let file = lab.dir().join(format!("floor-{}.rules", host.name));
    let (save, load): (Vec<&str>, Vec<&str>) = match mode {
        "nftables" => (
            vec!["nft", "list", "table", "ip", "kube-proxy"],
            vec!["nft", "-f"],
        ),
        "iptables-legacy" => (
            vec!["iptables-legacy-save"],
            vec!["iptables-legacy-restore"],
        ),
        _ => (vec!["iptables-nft-save"], vec!["iptables-nft-restore"]),
    };
    let mut args = vec!["netns", "exec", &host.ns];
    args.extend(&save);
    let dump = sh("ip", &args)?;
    std::fs::write(&file, &dump.stdout)?;
    // rules counting into nfacct objects need them to exist (the proxies
    // create theirs before their first restore)
    let text = String::from_utf8_lossy(&dump.stdout);
    let counters: Vec<String> = text
        .split("--nfacct-name ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next().map(str::to_string))
        .collect();
    in_netns(&ns, move || -> Result<()> {
        for c in &counters {
            weft_kernel::ensure_nfacct(c).with_context(|| format!("nfacct {c}"))?;
        }
        Ok(())
    })??;
    let path = file.display().to_string();
    let mut args = vec!["netns", "exec", ns.as_str()];
    args.extend(&load);
    args.push(&path);
    let t = Instant::now();
    sh("ip", &args).context("loading the ruleset into an empty namespace")?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The nftables floor without a parser for the elements: weft's table's
/// objects and rules loaded as `nft -f` text, then its elements over
/// netlink, into an empty namespace, once for each of
/// [`TRANSACTION_SIZES`](crate::nft_floor::TRANSACTION_SIZES); the fastest
/// (text ms, elements ms). The element bytes are encoded before the clock
/// starts.
fn netlink_floor_ms(lab: &mut Lab, host: &Host) -> Result<(f64, f64)> {
    let list = |json: bool| -> Result<Vec<u8>> {
        let mut args = vec!["netns", "exec", &host.ns, "nft"];
        if json {
            args.push("-j");
        }
        args.extend(["list", "table", "ip", "kube-proxy"]);
        Ok(sh("ip", &args)?.stdout)
    };
    let objects = crate::nft_floor::without_elements(&String::from_utf8_lossy(&list(false)?));
    let file = lab.dir().join(format!("floor-nl-{}.nft", host.name));
    std::fs::write(&file, objects)?;
    let listing: serde_json::Value = serde_json::from_slice(&list(true)?)?;
    let path = file.display().to_string();
    // each transaction size into an empty namespace of its own; the
    // fastest total is the floor
    let mut best: Option<(f64, f64)> = None;
    for per in crate::nft_floor::TRANSACTION_SIZES {
        let ns = lab.netns(&format!("floor-nl-{}-{}k", host.name, per / 1000))?;
        let batches = crate::nft_floor::element_batches(&listing, weft_kernel::NFPROTO_IPV4, per)?;
        let t = Instant::now();
        sh("ip", &["netns", "exec", &ns, "nft", "-f", &path])
            .context("loading the objects into an empty namespace")?;
        let text_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        in_netns(&ns, move || crate::nft_floor::load(batches))?
            .context("loading the elements over netlink")?;
        let took = (text_ms, t.elapsed().as_secs_f64() * 1e3);
        if best.is_none_or(|(o, e)| took.0 + took.1 < o + e) {
            best = Some(took);
        }
    }
    best.context("no transaction size to measure the floor with")
}

/// Scenario 3: steady endpoint churn.
fn churn(weft: &Path, a: &ScaleArgs) -> Result<serde_json::Value> {
    let n = a.churn_services;
    let mut lab = Lab::new("wbc", weft)?;
    lab.start_etcd()?;
    let api_host = lab.etcd_host(0)?;
    let api = lab.start_apiserver(&api_host)?;
    load(&api, 0..n, 10).context("creating the services through the API")?;
    println!(
        "\nchurn: {n} Services × 10 endpoints, {} endpoint changes/s for {} s",
        a.churn_rate, a.churn_secs
    );
    println!(
        "{:>15} {:>11} | {:>22} | {:>6} | {:>7} {:>7}",
        "mode", "proxy", "change p50/p99/max ms", "seen", "CPU s", "RSS MiB"
    );
    let (mut octet, mut generation) = (10u8, 0u32);
    let mut rows = Vec::new();
    for mode in a.modes.iter().filter(|m| *m != "iptables-legacy") {
        let mut row = BTreeMap::new();
        for who in wanted(a.proxies) {
            octet += 1;
            generation += 1;
            let mut run = start_proxy(&mut lab, &api, who, mode, octet, &a.weft_proxy)?;
            if run.until_rules(mode, n, a.timeout)?.is_none() {
                println!(
                    "{mode:>15} {:>11} | not complete after {} s",
                    who.name(),
                    a.timeout.as_secs()
                );
                continue;
            }
            // the first sync's work is not churn's
            std::thread::sleep(Duration::from_secs(2));
            let events = NftEvents::start(&run.host.ns)?;
            let cpu0 = cpu_seconds(run.pid());
            let writes = write_churn(&api, n, a.churn_rate, a.churn_secs, generation)?;
            let mut f = Figures {
                change_ms: match_changes(&events, &writes, generation),
                ..Figures::default()
            };
            f.cpu_s = cpu_seconds(run.pid()) - cpu0;
            f.rss_kib = rss_kib(run.pid()).0;
            run.stop();
            let seen = f.change_ms.len();
            let j = f.json();
            let g = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{mode:>15} {:>11} | {:>6.1} {:>7.1} {:>7.1} | {seen:>6} | {:>7.2} {:>7.1}",
                who.name(),
                g("change_p50_ms"),
                g("change_p99_ms"),
                g("change_max_ms"),
                g("cpu_s"),
                g("rss_mib")
            );
            row.insert(who.name(), j);
        }
        if let (Some(w), Some(k)) = (row.get("weft"), row.get("kube-proxy")) {
            let r = |key: &str| {
                k[key].as_f64().unwrap_or(f64::NAN) / w[key].as_f64().unwrap_or(f64::NAN)
            };
            println!(
                "{mode:>15} same run, kube-proxy / weft: CPU {:.1}x, change p99 {:.1}x, RSS {:.1}x",
                r("cpu_s"),
                r("change_p99_ms"),
                r("rss_mib")
            );
        }
        rows.push(serde_json::json!({
            "mode": mode, "services": n, "endpoints": n * 10,
            "rate_per_s": a.churn_rate, "seconds": a.churn_secs,
            "weft": row.get("weft"), "kube_proxy": row.get("kube-proxy"),
        }));
    }
    Ok(serde_json::Value::Array(rows))
}

/// The churn's new addresses: 100.96.0.0/11, a block per generation.
fn churn_ip(generation: u32, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 96, 0, 0)) + (generation << 16) + k)
}

/// Writes `rate` endpoint changes a second for `secs`, up to 32 in
/// flight: each new address with the API's answer to its write.
fn write_churn(
    api: &ApiServer,
    n: usize,
    rate: u32,
    secs: u64,
    generation: u32,
) -> Result<Vec<(Ipv4Addr, Instant)>> {
    let kubeconfig = api.admin_kubeconfig()?;
    in_netns(&api.host.ns, move || -> Result<Vec<(Ipv4Addr, Instant)>> {
        runtime()?.block_on(async move {
            let client =
                weft_proxy::shell::source::kubernetes::client(Some(&kubeconfig), None).await?;
            let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "bench");
            let total = rate as u64 * secs;
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let start = tokio::time::Instant::now();
            let results: Vec<Result<(Ipv4Addr, Instant)>> = futures::stream::iter(0..total)
                .map(|k| {
                    let slices = slices.clone();
                    async move {
                        tokio::time::sleep_until(start + period * k as u32).await;
                        let ip = churn_ip(generation, k as u32);
                        let service = k as usize % n;
                        let eps = endpoints_with_first(service, 10, ip);
                        let patch = serde_json::json!({"endpoints": eps});
                        slices
                            .patch(
                                &format!("svc-{service}-1"),
                                &kube::api::PatchParams::default(),
                                &kube::api::Patch::Merge(&patch),
                            )
                            .await?;
                        Ok((ip, Instant::now()))
                    }
                })
                .buffered(32)
                .collect()
                .await;
            results.into_iter().collect()
        })
    })?
}

/// For each written address, ms from the API's answer until an event
/// named it (waiting up to 30 s after the last write); unseen ones are left
/// out (and counted by the caller from the length).
fn match_changes(events: &NftEvents, writes: &[(Ipv4Addr, Instant)], generation: u32) -> Vec<f64> {
    let mut pending: HashMap<[u8; 4], Instant> =
        writes.iter().map(|(ip, t)| (ip.octets(), *t)).collect();
    let mut out = Vec::with_capacity(writes.len());
    let prefix = churn_ip(generation, 0).octets();
    // events were queued as they came; read them all, then wait for the rest
    events.until(
        |e| {
            for a in addresses(e, [prefix[0], prefix[1]]) {
                if let Some(acked) = pending.remove(&a) {
                    out.push(e.at.saturating_duration_since(acked).as_secs_f64() * 1e3);
                }
            }
            pending.is_empty()
        },
        Duration::from_secs(30),
    );
    out
}

//! Scenario "leases": N remote vxlan leases are loaded into etcd, the agent
//! is started, and the time until every route, neighbour and FDB entry is
//! in the kernel is measured from outside (netlink dumps in the host's
//! namespace); then single leases are added and removed and the time until
//! the kernel reflects each is measured; RSS is read from /proc.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, PutOptions, TxnOp};
use weft_core::lease::{LeaseAttrs, LeaseKey, VxlanLeaseData};
use weft_core::MacAddr;
use weft_kernel::Netlink;
use weft_lab::{in_netns, Host, Lab};

use crate::agents::{self, device_index, Agent};
use crate::{etcd_version, put_in_batches, rss_kib, runtime, stats, BenchArgs};

/// How long the agent idles after the add/remove samples before its RSS is read again.
const IDLE_AFTER: Duration = Duration::from_secs(2);

const CONFIG: &str = r#"{"Network":"100.64.0.0/10","SubnetLen":26,"Backend":{"Type":"vxlan"}}"#;

/// The i-th fake remote lease: subnet 100.64.0.0/10 cut in /26s (skipping
/// the first), public IPs in 198.19.0.0/16 (inside the lab only).
pub(crate) fn fake_lease(i: usize) -> (LeaseKey, LeaseAttrs) {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + ((i as u32 + 1) << 6);
    let key = LeaseKey::v4(ipnet::Ipv4Net::new(Ipv4Addr::from(base), 26).unwrap_or_default());
    let n = i as u32 + 1;
    let public = Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8);
    let mac = MacAddr::local_unicast([
        0,
        0x42,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ]);
    (
        key,
        LeaseAttrs::vxlan(
            public,
            VxlanLeaseData {
                vni: 1,
                vtep_mac: mac,
            },
        ),
    )
}

/// Puts leases `range` into etcd (from inside the etcd namespace).
fn load(lab: &Lab, range: std::ops::Range<usize>) -> Result<()> {
    let prefix = format!("{}/subnets/", lab.etcd_prefix());
    in_netns(&lab.etcd_ns()?, move || -> Result<()> {
        runtime()?.block_on(async move {
            let mut c = Client::connect(["http://127.0.0.1:2379"], None).await?;
            let lease = c.lease_grant(24 * 3600, None).await?.id();
            let ops: Vec<TxnOp> = range
                .map(|i| {
                    let (k, a) = fake_lease(i);
                    TxnOp::put(
                        format!("{prefix}{k}"),
                        a.to_json(),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                })
                .collect();
            put_in_batches(&mut c, &ops).await
        })
    })?
}

fn delete(lab: &Lab, i: usize) -> Result<()> {
    let key = format!("{}/subnets/{}", lab.etcd_prefix(), fake_lease(i).0);
    in_netns(&lab.etcd_ns()?, move || -> Result<()> {
        runtime()?.block_on(async move {
            let mut c = Client::connect(["http://127.0.0.1:2379"], None).await?;
            c.delete(key, None).await?;
            Ok(())
        })
    })?
}

pub(crate) struct ColdStart {
    pub(crate) subnet_file: Duration,
    pub(crate) programmed: Duration,
    pub(crate) rss_kib: u64,
    pub(crate) peak_kib: u64,
    pub(crate) anon_kib: u64,
}

/// Starts `program args` (under `wrap`, if given) as `host`'s agent and
/// waits until `n` remote leases are in its kernel (routes, neighbours and
/// FDB entries on flannel.1).
pub(crate) fn start_and_wait(
    lab: &mut Lab,
    host: &Host,
    n: usize,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    wrap: Option<&str>,
) -> Result<ColdStart> {
    let mut nl = lab.netlink(host)?;
    let t0 = Instant::now();
    match wrap {
        None => lab.start_agent_with(host, program, args, env)?,
        Some(w) => {
            let mut words = w.split_whitespace().map(String::from);
            let wrapper = words.next().ok_or_else(|| anyhow!("--wrap is empty"))?;
            let mut wrapped: Vec<String> = words.collect();
            wrapped.push(program.to_string());
            wrapped.extend(args.iter().cloned());
            lab.start_agent_with(host, &wrapper, &wrapped, env)?;
        }
    }
    let file = lab.subnet_file(host);
    let mut subnet_file = None;
    let deadline = t0 + Duration::from_secs(if wrap.is_some() { 600 } else { 300 });
    loop {
        if subnet_file.is_none() && file.exists() {
            subnet_file = Some(t0.elapsed());
        }
        // a few route look-ups first: a full dump of every entry, every
        // few milliseconds, would take the CPU the agent needs
        let sampled = n == 0
            || [0, n / 2, n - 1]
                .into_iter()
                .all(|i| routed(&mut nl, i).unwrap_or(false));
        if let Some(idx) = device_index(&mut nl).filter(|_| sampled) {
            let plane = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(idx))?;
            if plane.routes.len() >= n && plane.neighs.len() >= n && plane.fdb.len() >= n {
                let programmed = t0.elapsed();
                let pid = lab.agent(host)?.pid().unwrap_or(0);
                let (rss, peak, anon) = rss_kib(pid);
                return Ok(ColdStart {
                    subnet_file: subnet_file.unwrap_or(programmed),
                    programmed,
                    rss_kib: rss,
                    peak_kib: peak,
                    anon_kib: anon,
                });
            }
        }
        if Instant::now() > deadline {
            bail!(
                "agent did not program {n} leases in time:\n{}",
                lab.agent_log(host)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the kernel routes lease `i`'s subnet into flannel.1.
fn routed(nl: &mut Netlink, i: usize) -> Result<bool> {
    let probe = match fake_lease(i).0.v4 {
        Some(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
        None => bail!("fake lease without IPv4"),
    };
    let Some(idx) = device_index(nl) else {
        return Ok(false);
    };
    Ok(matches!(weft_kernel::route_get_oif(nl, probe), Ok(Some((oif, _))) if oif == idx))
}

/// Time from the etcd write until the route to lease `i` is present (or gone).
pub(crate) fn until_route(
    nl: &mut Netlink,
    i: usize,
    present: bool,
    t0: Instant,
) -> Result<Duration> {
    let probe = match fake_lease(i).0.v4 {
        Some(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
        None => bail!("fake lease without IPv4"),
    };
    let idx = device_index(nl).ok_or_else(|| anyhow!("flannel.1 missing"))?;
    loop {
        let via_vxlan =
            matches!(weft_kernel::route_get_oif(nl, probe), Ok(Some((oif, _))) if oif == idx);
        if via_vxlan == present {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "route to {probe} did not {} within 30 s",
                if present { "appear" } else { "disappear" }
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn agents(a: &BenchArgs, weft: &std::path::Path) -> Result<Vec<Agent>> {
    let mut out = Vec::new();
    if a.agents.iter().any(|x| x == "weft") {
        out.push(agents::weft(a, weft));
    }
    if a.agents.iter().any(|x| x == "flanneld") {
        out.push(agents::flanneld()?);
    }
    Ok(out)
}

/// One agent's figures at one lease count.
struct Measured {
    cold: (f64, f64, f64),
    file: (f64, f64, f64),
    adds: (f64, f64, f64),
    dels: (f64, f64, f64),
    last: ColdStart,
    rss_after: (u64, u64),
    rss_idle: (u64, u64),
}

fn measure(lab: &mut Lab, host: &Host, n: usize, agent: &Agent, a: &BenchArgs) -> Result<Measured> {
    let mut args = agent.first.clone();
    args.extend(lab.flanneld_args(host, &[])?);
    let (mut cold, mut file, mut last) = (Vec::new(), Vec::new(), None);
    for _ in 0..a.runs.max(1) {
        agents::reset(lab, host)?;
        let c = start_and_wait(lab, host, n, &agent.program, &args, &[], a.wrap.as_deref())?;
        cold.push(c.programmed.as_secs_f64() * 1e3);
        file.push(c.subnet_file.as_secs_f64() * 1e3);
        last = Some(c);
    }
    let mut nl = lab.netlink(host)?;
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    // fresh subnets past the loaded ones, never the agent's own
    let own = weft_agent::subnet_file::previous_subnets(&lab.subnet_file(host)).0;
    let samples: Vec<usize> = (n + 10..)
        .filter(|i| fake_lease(*i).0.v4 != own)
        .take(a.samples)
        .collect();
    for i in samples {
        let t0 = Instant::now();
        load(lab, i..i + 1)?;
        adds.push(until_route(&mut nl, i, true, t0)?.as_secs_f64() * 1e3);
        let t0 = Instant::now();
        delete(lab, i)?;
        dels.push(until_route(&mut nl, i, false, t0)?.as_secs_f64() * 1e3);
    }
    let pid = lab.agent(host)?.pid().unwrap_or(0);
    let (rss, _, anon) = rss_kib(pid);
    // idle: what the agent holds once the churn has settled
    std::thread::sleep(IDLE_AFTER);
    let (rss_i, _, anon_i) = rss_kib(pid);
    let three = |v: &mut Vec<f64>| {
        let (min, med, _, max) = stats(v);
        (min, med, max)
    };
    let p99 = |v: &mut Vec<f64>| {
        let (_, med, p99, max) = stats(v);
        (med, p99, max)
    };
    Ok(Measured {
        cold: three(&mut cold),
        file: three(&mut file),
        adds: p99(&mut adds),
        dels: p99(&mut dels),
        last: last.ok_or_else(|| anyhow!("no run"))?,
        rss_after: (rss, anon),
        rss_idle: (rss_i, anon_i),
    })
}

pub(crate) fn run(a: &BenchArgs, weft: &std::path::Path) -> Result<serde_json::Value> {
    let mut json = Vec::new();
    let agents = agents(a, weft)?;
    println!(
        "weft-bench: agents in etcd mode vs real etcd {} in network namespaces, {} CPUs, vxlan",
        etcd_version(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:>7} | {:<34} | {:>26} | {:>26} | {:>22} | {:>22} | {:>14}",
        "leases",
        "agent",
        "cold start ms min/med/max",
        "subnet file ms min/med/max",
        "add ms med/p99/max",
        "remove ms med/p99/max",
        "RSS MiB sync/idle/peak/anon"
    );
    for &n in &a.counts {
        let mut lab = Lab::new("wbench", weft)?;
        lab.start_etcd()?;
        lab.put_config(CONFIG)?;
        let host = lab.host("node1", 11)?;
        load(&lab, 0..n).context("loading leases into etcd")?;
        let mut medians = Vec::new();
        for agent in &agents {
            let m = measure(&mut lab, &host, n, agent, a)
                .with_context(|| format!("{} with {n} leases", agent.name))?;
            print_row(n, agent, &m);
            medians.push((agent, m.cold.1, m.last.rss_kib));
            json.push(row_json(n, agent, &m));
        }
        lab.stop_agent(&host, false);
        if let [(w, wt, wr), (u, ut, ur)] = medians[..] {
            if !w.upstream && u.upstream {
                println!(
                    "{n:>7} | same run: {} {wt:.0} ms vs {} {ut:.0} ms to all programmed: {:.1}x faster; VmRSS {:.1} vs {:.1} MiB",
                    w.name,
                    u.name,
                    ut / wt,
                    wr as f64 / 1024.0,
                    ur as f64 / 1024.0,
                );
            }
        }
    }
    println!("(add/remove: etcd write until the kernel route is there/gone, measured by route lookups in the host namespace;");
    println!(" RSS: VmRSS after the cold start and {} s after the add/remove samples, VmHWM, RssAnon after the cold start;", IDLE_AFTER.as_secs());
    println!(" the rest of VmRSS is the binary's clean, shared file pages)");
    Ok(serde_json::Value::Array(json))
}

fn print_row(n: usize, agent: &Agent, m: &Measured) {
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "{n:>7} | {:<34} | {:>8.0} {:>8.0} {:>8.0} | {:>8.1} {:>8.1} {:>8.1} | {:>6.2} {:>6.2} {:>7.2} | {:>6.2} {:>6.2} {:>7.2} | {:>5.1} {:>5.1} {:>5.1} {:>5.1}",
        agent.name,
        m.cold.0,
        m.cold.1,
        m.cold.2,
        m.file.0,
        m.file.1,
        m.file.2,
        m.adds.0,
        m.adds.1,
        m.adds.2,
        m.dels.0,
        m.dels.1,
        m.dels.2,
        mib(m.last.rss_kib),
        mib(m.rss_idle.0),
        mib(m.last.peak_kib),
        mib(m.last.anon_kib),
    );
}

fn row_json(n: usize, agent: &Agent, m: &Measured) -> serde_json::Value {
    serde_json::json!({
        "leases": n,
        "agent": agent.name,
        "cold_start_ms": {"min": m.cold.0, "median": m.cold.1, "max": m.cold.2},
        "subnet_file_ms": {"min": m.file.0, "median": m.file.1, "max": m.file.2},
        "add_ms": {"median": m.adds.0, "p99": m.adds.1, "max": m.adds.2},
        "remove_ms": {"median": m.dels.0, "p99": m.dels.1, "max": m.dels.2},
        "rss_kib_after_sync": m.last.rss_kib,
        "peak_rss_kib": m.last.peak_kib,
        "anon_rss_kib_after_sync": m.last.anon_kib,
        "rss_kib_after_churn": m.rss_after.0,
        "anon_rss_kib_after_churn": m.rss_after.1,
        "rss_kib_idle": m.rss_idle.0,
        "anon_rss_kib_idle": m.rss_idle.1,
    })
}

//! Scenario "etcd-load": what N hosts cost etcd. One process in a host
//! namespace simulates N agents against a real etcd in another namespace,
//! doing what each agent does: grant a 24 h etcd lease and create its
//! subnet key in a transaction (join), watch the subnets prefix from a
//! revision (one watch stream per host), renew the lease (keep-alive).
//! Measured: join and renew throughput (requests/s etcd sustains), the time
//! for one lease change to reach all N watchers, etcd's RSS; and the
//! steady-state request rate N agents generate, from the agent's renewal
//! schedule (renew `-subnet-lease-renew-margin` before the 24 h TTL).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::Semaphore;
use weft_lab::{in_netns, Lab};

use crate::{rss_kib, stats};

const PREFIX: &str = "/coreos.com/network/subnets/";
const TTL: i64 = 24 * 3600;
/// flanneld's default renew margin (minutes).
const RENEW_MARGIN_MIN: i64 = 60;
const CONNECTIONS: usize = 32;
const IN_FLIGHT: usize = 64;

fn key(i: usize) -> String {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + ((i as u32 + 1) << 8);
    format!("{PREFIX}{}-24", Ipv4Addr::from(base))
}

fn value(i: usize) -> String {
    let n = i as u32 + 1;
    format!(
        r#"{{"PublicIP":"198.19.{}.{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:{:02x}:{:02x}:{:02x}"}}}}"#,
        (n >> 8) & 255,
        n & 255,
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255
    )
}

pub fn run(weft: &std::path::Path, counts: &[usize]) -> Result<serde_json::Value> {
    println!(
        "weft-bench etcd-load: N simulated agents vs real etcd {} in network namespaces ({CONNECTIONS} connections, {IN_FLIGHT} requests in flight)",
        crate::etcd_version()
    );
    println!(
        "{:>6} | {:>18} | {:>18} | {:>28} | {:>12} | {:>16}",
        "hosts",
        "join req/s (ms)",
        "renew req/s (ms)",
        "1 change -> all watchers ms",
        "etcd RSS MiB",
        "steady req/s"
    );
    let mut json = Vec::new();
    for &n in counts {
        let mut lab = Lab::new("wbe", weft)?;
        lab.start_etcd()?;
        let sim = lab.host("sim", 40)?;
        let url = lab.etcd_url()?;
        let etcd_pid = etcd_pid(&lab)?;
        let r = in_netns(&sim.ns, move || -> Result<serde_json::Value> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(simulate(url, n))
        })??;
        let (rss, _, _) = rss_kib(etcd_pid);
        let join = r["join_s"].as_f64().unwrap_or(f64::NAN);
        let renew = r["renew_s"].as_f64().unwrap_or(f64::NAN);
        let fan: Vec<f64> = serde_json::from_value(r["fanout_ms"].clone()).unwrap_or_default();
        let mut fan = fan;
        let (fmin, fmed, _, fmax) = stats(&mut fan);
        // Steady state per agent: one keep-alive per (TTL - margin); the
        // watch stream costs etcd nothing until a lease changes.
        let steady = n as f64 / (TTL - RENEW_MARGIN_MIN * 60) as f64;
        println!(
            "{n:>6} | {:>8.0} ({:>7.0}) | {:>8.0} ({:>7.0}) | {fmin:>8.1} {fmed:>8.1} {fmax:>9.1} | {:>12.1} | {steady:>16.3}",
            2.0 * n as f64 / join,
            join * 1e3,
            n as f64 / renew,
            renew * 1e3,
            rss as f64 / 1024.0
        );
        let mut r = r;
        r["etcd_rss_kib"] = serde_json::json!(rss);
        r["steady_state_requests_per_s"] = serde_json::json!(steady);
        json.push(r);
    }
    println!("(join: lease grant + create-if-absent txn per host, 2 requests; renew: one keep-alive per host;");
    println!(" 1 change -> all watchers: a new lease written until every one of the N watch streams has it, min/median/max of 5;");
    println!(" steady: keep-alives per second N agents send with a 24 h TTL renewed 1 h early)");
    Ok(serde_json::Value::Array(json))
}

fn etcd_pid(lab: &Lab) -> Result<u32> {
    let ns = lab.etcd_ns()?;
    let out = weft_lab::sh("ip", &["netns", "pids", &ns])?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "etcd")
        })
        .ok_or_else(|| anyhow!("etcd process not found in {ns}"))
}

async fn simulate(url: String, n: usize) -> Result<serde_json::Value> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(
            Client::connect([url.as_str()], None)
                .await
                .context("connecting")?,
        );
    }
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));

    // Join: every host grants a lease and creates its key.
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = clients[i % CONNECTIONS].clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await?;
            let lease = c.lease_grant(TTL, None).await?.id();
            let k = key(i);
            let txn = Txn::new()
                .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    k,
                    value(i),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            c.txn(txn).await?;
            anyhow::Ok(lease)
        }));
    }
    let mut leases = Vec::with_capacity(n);
    for t in tasks {
        leases.push(t.await??);
    }
    let join = t.elapsed();

    // Watch: one stream per host, from the current revision.
    let rev = clients[0]
        .get("x", None)
        .await?
        .header()
        .map_or(0, |h| h.revision());
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = clients[i % CONNECTIONS].clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        streams.push(c.watch(PREFIX, Some(opts)).await?);
    }
    // One lease change at a time reaches every watcher.
    let mut fanout = Vec::new();
    for round in 0..5 {
        let mut waiters = Vec::with_capacity(n);
        for mut s in streams.drain(..) {
            waiters.push(tokio::spawn(async move {
                loop {
                    match s.message().await {
                        Ok(Some(m)) if !m.events().is_empty() => return Ok((s, Instant::now())),
                        Ok(Some(_)) => continue,
                        Ok(None) => return Err(anyhow!("watch closed")),
                        Err(e) => return Err(anyhow!("watch: {e}")),
                    }
                }
            }));
        }
        let t0 = Instant::now();
        clients[0]
            .put(key(n + round), value(n + round), None)
            .await?;
        let mut last = t0;
        for w in waiters {
            let (s, at) = w.await??;
            last = last.max(at);
            streams.push(s);
        }
        fanout.push((last - t0).as_secs_f64() * 1e3);
    }

    // Renew: every host sends one keep-alive.
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, lease) in leases.iter().copied().enumerate() {
        let mut c = clients[i % CONNECTIONS].clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await?;
            let (mut keeper, mut responses) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), responses.message()).await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let renew = t.elapsed();
    Ok(serde_json::json!({
        "hosts": n,
        "join_s": join.as_secs_f64(),
        "renew_s": renew.as_secs_f64(),
        "fanout_ms": fanout,
        "watch_streams": streams.len(),
    }))
}

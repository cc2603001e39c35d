//! Scenario "etcd-chaos" (a soak, not a timing): a 3-member etcd and a few
//! vxlan agents in network namespaces; for `--minutes`, members are killed
//! (SIGKILL) at random and restarted a few seconds later while leases are
//! added and deleted. Every change is followed until every agent's kernel
//! has it; the longest such wait is the longest stall. At the end, with
//! every member back, each agent's routes must equal etcd's lease table.
//! Reported: agent exits, wrong routes at the end, kills, lease changes,
//! propagation p50/p99/max, lease renewals seen in the agents' logs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ipnet::IpNet;
use weft_lab::{Host, Lab};

use crate::stats;

const MEMBERS: u8 = 3;
const AGENTS: u8 = 4;
/// Lease slots the churn adds and deletes (172.30.<200 + i>.0/24).
const SLOTS: u8 = 40;
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
/// Longest wait for one change to reach every agent before it counts as lost.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(60);

fn slot_key(lab: &Lab, i: u8) -> String {
    format!("{}/subnets/172.30.{}.0-24", lab.etcd_prefix(), 200 + i)
}

fn slot_net(i: u8) -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::new([172, 30, 200 + i, 0].into(), 24).unwrap_or_default())
}

fn slot_value(i: u8) -> String {
    format!(
        r#"{{"PublicIP":"198.19.1.{i}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:00:01:{i:02x}"}}}}"#
    )
}

/// etcdctl until it succeeds (a write can meet a leader election).
fn etcdctl_until_ok(lab: &Lab, args: &[&str]) -> Result<String> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match lab.etcdctl(args) {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() > end => bail!("etcdctl {}: {e:#}", args.join(" ")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The remote routes on the host's flannel.1.
fn routes(lab: &Lab, host: &Host) -> BTreeSet<IpNet> {
    let Ok(mut nl) = lab.netlink(host) else {
        return BTreeSet::new();
    };
    let Ok(Some(dev)) = weft_kernel::link_by_name(&mut nl, "flannel.1") else {
        return BTreeSet::new();
    };
    weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(dev.index))
        .map(|p| p.routes.keys().copied().collect())
        .unwrap_or_default()
}

/// Every lease subnet in etcd.
fn leased(lab: &Lab) -> Result<BTreeSet<IpNet>> {
    let prefix = format!("{}/subnets/", lab.etcd_prefix());
    let out = etcdctl_until_ok(lab, &["get", "--prefix", "--keys-only", &prefix])?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|k| k.replacen('-', "/", 1).parse().ok())
        .collect())
}

pub fn run(weft: &std::path::Path, minutes: f64) -> Result<serde_json::Value> {
    println!(
        "weft-bench etcd-chaos: {MEMBERS}-member etcd {}, {AGENTS} vxlan agents, members killed at random for {minutes} min while leases churn",
        crate::etcd_version()
    );
    let mut lab = Lab::new("wbc", weft)?;
    lab.start_etcd_cluster(MEMBERS)?;
    lab.put_config(CONFIG)?;
    let hosts: Vec<Host> = (0..AGENTS)
        .map(|i| lab.host(&format!("a{i}"), 11 + i))
        .collect::<Result<_>>()?;
    for h in &hosts {
        // renew a minute after acquisition, so renewals happen under chaos
        lab.start_agent(h, &["-subnet-lease-renew-margin=1439"])?;
    }
    let mut own = Vec::new();
    for h in &hosts {
        let env = lab.wait_subnet_env(h, Duration::from_secs(30))?;
        own.push(env.subnet.map(|s| IpNet::V4(s.trunc())));
    }

    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut present = [false; SLOTS as usize];
    let (mut kills, mut changes, mut lost) = (0u32, 0u32, 0u32);
    let mut waits_ms = Vec::new();
    let mut down: Option<(usize, Instant)> = None;
    let mut last_report = Instant::now();
    while Instant::now() < end {
        // chaos: at most one member down at a time (a 3-member cluster
        // keeps its quorum), back after 1-6 s
        match down {
            None if rand::random_bool(0.25) => {
                let m = rand::random_range(0..MEMBERS as usize);
                lab.stop_etcd_member(m, true);
                kills += 1;
                down = Some((
                    m,
                    Instant::now() + Duration::from_millis(rand::random_range(1000..6000)),
                ));
            }
            Some((_, back)) if Instant::now() >= back => {
                lab.start_etcd_cluster(MEMBERS)?;
                down = None;
            }
            _ => {}
        }
        // churn: flip one slot, then follow it into every agent's kernel
        let i = rand::random_range(0..SLOTS);
        let key = slot_key(&lab, i);
        if present[i as usize] {
            etcdctl_until_ok(&lab, &["del", &key])?;
        } else {
            etcdctl_until_ok(&lab, &["put", &key, &slot_value(i)])?;
        }
        present[i as usize] = !present[i as usize];
        changes += 1;
        let t0 = Instant::now();
        let want = present[i as usize];
        loop {
            if hosts
                .iter()
                .all(|h| routes(&lab, h).contains(&slot_net(i)) == want)
            {
                waits_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t0.elapsed() > PROPAGATION_LIMIT {
                lost += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            println!("  … {kills} kills, {changes} lease changes so far");
        }
        std::thread::sleep(Duration::from_millis(rand::random_range(50..400)));
    }
    lab.start_etcd_cluster(MEMBERS)?;

    // The end state: every agent alive and its routes equal to etcd's leases.
    let table = leased(&lab)?;
    let converge_by = Instant::now() + Duration::from_secs(30);
    let wrong = loop {
        let mut diff = 0;
        for (h, own) in hosts.iter().zip(&own) {
            let want: BTreeSet<IpNet> = table
                .iter()
                .filter(|n| Some(**n) != *own)
                .copied()
                .collect();
            diff += want.symmetric_difference(&routes(&lab, h)).count();
        }
        if diff == 0 || Instant::now() > converge_by {
            break diff;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut exits = 0;
    let mut renewals = 0;
    for h in &hosts {
        if !lab.agent(h)?.alive() {
            exits += 1;
        }
        renewals += lab.agent_log(h).matches("lease renewed").count();
    }
    let (min, p50, p99, max) = if waits_ms.is_empty() {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    } else {
        stats(&mut waits_ms)
    };
    println!(
        "{:>7} | {:>6} | {:>7} | {:>24} | {:>11} | {:>12} | {:>8}",
        "minutes",
        "kills",
        "changes",
        "change -> all agents ms",
        "agent exits",
        "wrong routes",
        "renewals"
    );
    println!(
        "{minutes:>7} | {kills:>6} | {changes:>7} | {:>24} | {exits:>11} | {wrong:>12} | {renewals:>8}",
        format!("{p50:.0} / {p99:.0} / {max:.0}")
    );
    if lost > 0 {
        println!("  {lost} change(s) did not reach every agent within {PROPAGATION_LIMIT:?}");
    }
    Ok(serde_json::json!({
        "minutes": minutes,
        "members": MEMBERS,
        "agents": AGENTS,
        "kills": kills,
        "lease_changes": changes,
        "lost_changes": lost,
        "propagation_ms": {"min": min, "p50": p50, "p99": p99, "max": max},
        "agent_exits": exits,
        "wrong_routes_at_end": wrong,
        "renewals": renewals,
    }))
}

//! Restarts and re-created hosts, run once with weft and once with
//! flanneld v0.28.10 on every host, in one test so both figures come from
//! one run. weft's are asserted; flanneld's are printed beside them.
//!
//! - **restart:** pods ping every 20 ms while one host's agent is stopped
//!   and started again, and a third host's lease vanishes while it is
//!   down. Counted: pings lost (weft: 0), and whether the restarted agent
//!   removes the vanished lease's route, neighbour and FDB entry.
//! - **subnet.env:** read every millisecond across the restart; a read
//!   that is not a whole file (all four variables) counts as torn.
//! - **re-created host:** a host comes back with its IP and a new VTEP MAC
//!   in its lease (what a rebuilt flanneld host publishes). The peer's FDB
//!   must hold the new MAC only, and pods reach the host again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, sh, upstream_flanneld, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SECS: fn(u64) -> Duration = Duration::from_secs;
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
/// Pings sent across the restart, one per 20 ms.
const PINGS: u32 = 250;

#[derive(Clone)]
enum Agent {
    Weft,
    Flanneld(PathBuf),
}

impl Agent {
    fn name(&self) -> &'static str {
        match self {
            Agent::Weft => "weft",
            Agent::Flanneld(_) => "flanneld v0.28.10",
        }
    }

    fn start(&self, lab: &mut Lab, host: &Host) {
        match self {
            Agent::Weft => lab.start_agent(host, &[]).expect("weft agent"),
            Agent::Flanneld(bin) => {
                let args = lab.flanneld_args(host, &[]).expect("args");
                lab.start_agent_with(host, &bin.display().to_string(), &args, &[])
                    .expect("flanneld")
            }
        }
    }
}

fn subnet_of(env: &SubnetEnv) -> String {
    env.subnet.expect("FLANNEL_SUBNET").trunc().to_string()
}

fn lines(args: &[&str]) -> Vec<String> {
    let out = sh(args[0], &args[1..]).expect("command");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `bridge fdb` entries of `host`'s flannel.1 that send to `dst`.
fn fdb_to(host: &Host, dst: &str) -> Vec<String> {
    lines(&["bridge", "-n", &host.ns, "fdb", "show", "dev", "flannel.1"])
        .into_iter()
        .filter(|l| l.contains(&format!("dst {dst} ")))
        .collect()
}

/// What `host` still holds for the lease of `subnet` published from `ip`:
/// its route, its neighbour (the subnet's first address) and FDB entry.
fn entries_for(lab: &Lab, host: &Host, subnet: &str, ip: &str) -> Vec<String> {
    let mut held = Vec::new();
    if lab.routes_to(host, subnet).expect("routes") {
        held.push(format!("route {subnet}"));
    }
    let gw = subnet.split('/').next().expect("address");
    let neigh = lines(&["ip", "-n", &host.ns, "neigh", "show", "dev", "flannel.1"]);
    held.extend(
        neigh
            .into_iter()
            .filter(|l| l.starts_with(&format!("{gw} "))),
    );
    held.extend(fdb_to(host, ip));
    held
}

struct Figures {
    lost: u32,
    /// Reads of subnet.env across the restart, and how many were torn.
    file_reads: (u32, u32),
    /// Time from the restart until the vanished lease's entries were gone.
    stale_removed: Option<Duration>,
    /// FDB entries the peer holds for the re-created host afterwards.
    fdb_after_recreate: Vec<String>,
    recreated_reachable: bool,
}

fn run(agent: &Agent, tag: &str) -> Figures {
    let mut lab = Lab::new(tag, Path::new(WEFT)).expect("lab: this test needs root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let hosts: Vec<Host> = (1..=3)
        .map(|i| lab.host(&format!("h{i}"), 10 + i).expect("host"))
        .collect();
    for h in &hosts {
        agent.start(&mut lab, h);
    }
    let envs: Vec<SubnetEnv> = hosts
        .iter()
        .map(|h| {
            lab.wait_subnet_env(h, SECS(30))
                .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", h.name, lab.agent_log(h)))
        })
        .collect();
    let (h1, h2, h3) = (&hosts[0], &hosts[1], &hosts[2]);
    let s3 = subnet_of(&envs[2]);
    let h3_ip = h3.ip.to_string();
    eventually(SECS(20), "h1 programs h3's lease", || {
        (entries_for(&lab, h1, &s3, &h3_ip).len() == 3).then_some(())
    });
    let a = lab.pod(h1, "a").expect("pod a");
    let b = lab.pod(h2, "b").expect("pod b");
    lab.ping(&a, b.ip, SECS(10)).expect("ping before");

    // the restart, with h3's lease vanishing meanwhile
    let pinger = std::process::Command::new("ip")
        .args(["netns", "exec", &a.ns, "ping", "-q", "-i", "0.02", "-c"])
        .arg(PINGS.to_string())
        .arg(b.ip.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_agent(h1, false);
    lab.stop_agent(h3, false);
    lab.etcdctl(&[
        "del",
        &format!("{}/subnets/{}", lab.etcd_prefix(), s3.replace('/', "-")),
    ])
    .expect("del h3's lease");
    std::thread::sleep(Duration::from_millis(500));
    let reader = file_reader(lab.subnet_file(h1));
    let restarted = Instant::now();
    agent.start(&mut lab, h1);
    let mut stale_removed = None;
    while restarted.elapsed() < SECS(10) {
        if entries_for(&lab, h1, &s3, &h3_ip).is_empty() {
            stale_removed = Some(restarted.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = pinger.wait_with_output().expect("ping done");
    let file_reads = reader();
    let text = String::from_utf8_lossy(&out.stdout);
    let received: u32 = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ping summary: {text}"));

    // h2 re-created: same IP, a new VTEP MAC in its lease
    lab.stop_agent(h2, true);
    let mut nl = lab.netlink(h2).expect("netlink");
    let dev = weft_kernel::link_by_name(&mut nl, "flannel.1")
        .expect("links")
        .expect("flannel.1 on h2");
    weft_kernel::delete_link(&mut nl, dev.index).expect("delete flannel.1");
    let key2 = subnet_of(&envs[1]).replace('/', "-");
    let old = lab.lease_value(&key2).expect("h2's lease");
    let old_mac = old
        .split("\"VtepMAC\":\"")
        .nth(1)
        .and_then(|r| r.get(..17))
        .expect("VtepMAC")
        .to_string();
    let new_mac = "0e:00:5e:00:53:02";
    lab.etcdctl(&[
        "put",
        &format!("{}/subnets/{key2}", lab.etcd_prefix()),
        &old.trim().replace(&old_mac, new_mac),
    ])
    .expect("put h2's lease with a new MAC");
    agent.start(&mut lab, h2);
    let current_mac = eventually(SECS(20), "h2 back with a flannel.1", || {
        weft_kernel::link_by_name(&mut nl, "flannel.1")
            .ok()
            .flatten()
            .and_then(|l| l.mac)
    })
    .to_string();
    let recreated_reachable = lab.ping(&a, b.ip, SECS(10)).is_ok();
    let h2_ip = h2.ip.to_string();
    // whatever the peer ends with once it has seen the new lease
    std::thread::sleep(SECS(2));
    let fdb_after_recreate = fdb_to(h1, &h2_ip);
    eprintln!(
        "{}: h2's MAC {old_mac} -> {current_mac}; h1's FDB for h2: {fdb_after_recreate:?}",
        agent.name()
    );
    Figures {
        lost: PINGS - received,
        file_reads,
        stale_removed,
        fdb_after_recreate,
        recreated_reachable,
    }
}

/// Reads `file` every millisecond on a thread until the returned
/// function is called; that returns (reads, torn reads).
fn file_reader(file: PathBuf) -> impl FnOnce() -> (u32, u32) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let (mut reads, mut torn) = (0, 0);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            // a missing file is not a torn one
            if let Ok(text) = std::fs::read_to_string(&file) {
                reads += 1;
                let whole = [
                    "FLANNEL_NETWORK=",
                    "FLANNEL_SUBNET=",
                    "FLANNEL_MTU=",
                    "FLANNEL_IPMASQ=",
                ]
                .iter()
                .all(|k| text.lines().any(|l| l.starts_with(k)))
                    && text.ends_with('\n');
                if !whole {
                    torn += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (reads, torn)
    });
    move || {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().expect("reader")
    }
}

#[test]
fn restart_and_recreated_host_compared_with_flanneld_v0_28() {
    let flanneld =
        upstream_flanneld().expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let weft = run(&Agent::Weft, "wrsw");
    let upstream = run(&Agent::Flanneld(flanneld), "wrsf");
    let removed = |f: &Figures| {
        f.stale_removed.map_or("not within 10 s".to_string(), |d| {
            format!("after {} ms", d.as_millis())
        })
    };
    eprintln!("| | weft | flanneld v0.28.10 |\n|---|---:|---:|");
    eprintln!(
        "| pings lost across a restart (of {PINGS}, 20 ms apart) | {} | {} |",
        weft.lost, upstream.lost
    );
    eprintln!(
        "| a lease vanished while down: its route, neighbour, FDB entry removed | {} | {} |",
        removed(&weft),
        removed(&upstream)
    );
    eprintln!(
        "| torn subnet.env reads across the restart | {} of {} | {} of {} |",
        weft.file_reads.1, weft.file_reads.0, upstream.file_reads.1, upstream.file_reads.0
    );
    eprintln!(
        "| peer's FDB entries for a host re-created with a new VTEP MAC | {} | {} |",
        weft.fdb_after_recreate.len(),
        upstream.fdb_after_recreate.len()
    );
    eprintln!(
        "| re-created host reachable | {} | {} |",
        weft.recreated_reachable, upstream.recreated_reachable
    );
    assert_eq!(weft.lost, 0, "weft lost pings across its restart");
    assert_eq!(weft.file_reads.1, 0, "weft's subnet.env read torn");
    assert!(
        weft.file_reads.0 > 100,
        "subnet.env read {} times",
        weft.file_reads.0
    );
    assert!(
        weft.stale_removed.is_some(),
        "weft kept a vanished lease's entries after its restart"
    );
    assert!(
        weft.recreated_reachable,
        "weft: re-created host unreachable"
    );
    assert_eq!(
        weft.fdb_after_recreate.len(),
        1,
        "weft's FDB for the re-created host: {:?}",
        weft.fdb_after_recreate
    );
    assert!(weft.fdb_after_recreate[0].starts_with("0e:00:5e:00:53:02 "));
}

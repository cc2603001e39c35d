//! Faults and load, end to end on real etcd: simultaneous starts, watch
//! compaction during churn, agent kills, leases lost while away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn lab() -> Lab {
    Lab::new("wtf", Path::new(WEFT)).expect("lab: these tests need root")
}

/// The lease table in etcd: short key -> value.
fn leases(lab: &Lab) -> BTreeMap<String, String> {
    let out = eventually(Duration::from_secs(15), "reading the leases", || {
        lab.etcdctl(&["get", "--prefix", "/coreos.com/network/subnets/"])
            .ok()
    });
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter_map(|kv| {
            Some((
                kv[0].rsplit('/').next()?.to_string(),
                kv.get(1)?.to_string(),
            ))
        })
        .collect()
}

/// (route, neighbour MAC, FDB destination) per remote subnet on flannel.1,
/// as the kernel has them; `None` while routes, neighbours and FDB entries
/// are not one-to-one (a dump can see a batch half applied).
fn kernel_peers(lab: &Lab, host: &Host) -> Option<BTreeSet<String>> {
    let mut nl = lab.netlink(host).expect("netlink");
    let Some(dev) = weft_kernel::link_by_name(&mut nl, "flannel.1").expect("links") else {
        return Some(BTreeSet::new());
    };
    let plane = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(dev.index))
        .expect("dump");
    if plane.neighs.len() != plane.routes.len() || plane.fdb.len() != plane.routes.len() {
        return None;
    }
    let mut out = BTreeSet::new();
    for dst in plane.routes.keys() {
        let gw = dst.network();
        let mac = plane.neighs.values().find(|n| n.ip == gw).map(|n| n.mac);
        let fdb = mac
            .and_then(|m| plane.fdb.values().find(|f| f.mac == m))
            .map(|f| f.dst);
        out.insert(format!("{dst} {mac:?} {fdb:?}"));
    }
    Some(out)
}

/// What the kernel should hold on `host` for the etcd table `table`.
fn expected_peers(table: &BTreeMap<String, String>, own: &str) -> BTreeSet<String> {
    table
        .iter()
        .filter(|(k, _)| k.as_str() != own)
        .map(|(k, v)| {
            let attrs = weft_core::LeaseAttrs::parse(k, v.as_bytes()).expect("lease");
            let d = attrs.vxlan_data(k, false).expect("vxlan data");
            let dst = k.replace('-', "/");
            format!(
                "{dst} {:?} {:?}",
                Some(d.vtep_mac),
                Some(std::net::IpAddr::V4(attrs.public_ip))
            )
        })
        .collect()
}

/// etcdctl, retried for a while: right after a member dies a request can
/// meet the leader election (the agents retry the same way).
fn etcdctl_retry(lab: &Lab, args: &[&str]) {
    eventually(
        Duration::from_secs(15),
        &format!("etcdctl {}", args.join(" ")),
        || lab.etcdctl(args).ok(),
    );
}

fn fake_lease(lab: &Lab, third: u8) {
    let v = format!(
        r#"{{"PublicIP":"198.19.0.{third}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:00:00:{third:02x}"}}}}"#
    );
    etcdctl_retry(
        lab,
        &[
            "put",
            &format!("/coreos.com/network/subnets/172.30.{third}.0-24"),
            &v,
        ],
    );
}

#[test]
fn fifty_agents_starting_at_once_get_fifty_distinct_subnets() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let hosts: Vec<Host> = (0..50)
        .map(|i| lab.host(&format!("n{i}"), 20 + i).expect("host"))
        .collect();
    for h in &hosts {
        lab.start_agent(h, &[]).expect("agent");
    }
    let mut by_file = BTreeMap::new();
    for h in &hosts {
        let env: SubnetEnv = lab
            .wait_subnet_env(h, Duration::from_secs(60))
            .expect("subnet file");
        let subnet = env.subnet.expect("subnet").trunc().to_string();
        assert!(
            by_file.insert(subnet.clone(), h.ip).is_none(),
            "{subnet} given twice"
        );
    }
    let table = leases(&lab);
    assert_eq!(table.len(), 50, "exactly one lease per host");
    for (subnet, ip) in &by_file {
        let value = table
            .get(&subnet.replace('/', "-"))
            .expect("lease for each subnet file");
        assert!(
            value.contains(&format!("\"PublicIP\":\"{ip}\"")),
            "{subnet}: {value}"
        );
    }
}

/// etcd, the config and one host running an agent (`flanneld`, or weft
/// without one); returns the host and the key of its own lease.
fn one_agent(lab: &mut Lab, flanneld: Option<&Path>) -> (Host, String) {
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h = lab.host("h1", 11).expect("host");
    match flanneld {
        None => lab.start_agent(&h, &[]).expect("agent"),
        Some(bin) => {
            let args = lab.flanneld_args(&h, &[]).expect("args");
            lab.start_agent_with(&h, &bin.display().to_string(), &args, &[])
                .expect("flanneld")
        }
    }
    let env = lab
        .wait_subnet_env(&h, Duration::from_secs(20))
        .expect("subnet");
    let own = env
        .subnet
        .expect("subnet")
        .trunc()
        .to_string()
        .replace('/', "-");
    (h, own)
}

/// The agent is frozen while leases come and go and etcd compacts away
/// every revision it has not seen; thawed, its watch meets the
/// compaction. Returns how long after the thaw the kernel equalled etcd
/// (None: not within 20 s) and whether the agent is still running.
fn compaction_while_frozen(flanneld: Option<&Path>) -> (Option<Duration>, bool) {
    let mut lab = lab();
    let (h, own) = one_agent(&mut lab, flanneld);
    // fixtures above 172.30.100.0: an agent alone picks among the first 100 free subnets
    for t in 120..140 {
        fake_lease(&lab, t);
    }
    eventually(Duration::from_secs(10), "20 peers", || {
        kernel_peers(&lab, &h).filter(|p| p.len() == 20).map(|_| ())
    });

    // freeze the agent, churn, compact everything it has not seen, thaw
    lab.agent(&h)
        .expect("agent")
        .signal(nix::sys::signal::Signal::SIGSTOP);
    for t in 120..130 {
        lab.etcdctl(&[
            "del",
            &format!("/coreos.com/network/subnets/172.30.{t}.0-24"),
        ])
        .expect("del");
    }
    for t in 150..170 {
        fake_lease(&lab, t);
    }
    fake_lease(&lab, 135); // changed in place (same value, new revision)
    let status = lab
        .etcdctl(&["endpoint", "status", "-w", "json"])
        .expect("status");
    let rev: serde_json::Value = serde_json::from_str(&status).expect("json");
    let rev = rev[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("revision");
    lab.etcdctl(&["compact", &rev.to_string()])
        .expect("compact");
    lab.etcdctl(&["defrag"]).expect("defrag");
    let thawed = std::time::Instant::now();
    lab.agent(&h)
        .expect("agent")
        .signal(nix::sys::signal::Signal::SIGCONT);

    let table = leases(&lab);
    let want = expected_peers(&table, &own);
    assert_eq!(want.len(), 30);
    let mut converged = None;
    while thawed.elapsed() < Duration::from_secs(20) {
        if kernel_peers(&lab, &h).as_ref() == Some(&want) {
            converged = Some(thawed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (converged, lab.agent(&h).expect("agent").alive())
}

/// Compared with flanneld v0.28.10 in the same run: weft ends with the
/// kernel exactly equal to etcd, without a restart.
#[test]
fn compaction_while_an_agent_is_frozen_ends_in_the_exact_state() {
    let flanneld = weft_lab::upstream_flanneld()
        .expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let weft = compaction_while_frozen(None);
    let upstream = compaction_while_frozen(Some(&flanneld));
    let shown = |(t, alive): (Option<Duration>, bool)| {
        format!(
            "{}, {}",
            t.map_or("kernel not equal to etcd within 20 s".into(), |d| format!(
                "kernel equal to etcd {} ms after the thaw",
                d.as_millis()
            )),
            if alive { "still running" } else { "exited" }
        )
    };
    eprintln!("etcd compaction while frozen: weft {}", shown(weft));
    eprintln!(
        "etcd compaction while frozen: flanneld v0.28.10 {}",
        shown(upstream)
    );
    assert!(weft.0.is_some(), "weft's kernel never equalled etcd");
    assert!(weft.1, "weft exited");
}

#[test]
fn random_churn_ends_with_kernel_equal_to_etcd() {
    let mut lab = lab();
    let (h, own) = one_agent(&mut lab, None);
    // a deterministic pseudo-random walk over 150 subnets: 600 puts and
    // deletes in transactions of 50, as fast as etcd takes them
    let mut x: u32 = 12345;
    let mut ops = Vec::new();
    for _ in 0..600 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let third = 100 + (x >> 16) % 150;
        let key = format!("/coreos.com/network/subnets/172.30.{third}.0-24");
        if key.ends_with(&own) {
            continue;
        }
        if (x >> 8) % 3 == 0 {
            ops.push((key.clone(), etcd_client::TxnOp::delete(key, None)));
        } else {
            let last = (x >> 4) % 250;
            let value = format!(
                r#"{{"PublicIP":"198.19.1.{last}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:43:00:00:{:02x}:{last:02x}"}}}}"#,
                third as u8
            );
            ops.push((key.clone(), etcd_client::TxnOp::put(key, value, None)));
        }
    }
    weft_lab::in_netns(&lab.etcd_ns().expect("ns"), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut c = etcd_client::Client::connect(["http://127.0.0.1:2379"], None)
                .await
                .expect("connect");
            for chunk in ops.chunks(50) {
                // etcd allows a key once per transaction: cut the batch at repeats
                let mut seen = std::collections::HashSet::new();
                let mut batch = Vec::new();
                for (key, op) in chunk {
                    if !seen.insert(key.clone()) {
                        c.txn(etcd_client::Txn::new().and_then(std::mem::take(&mut batch)))
                            .await
                            .expect("txn");
                        seen.clear();
                        seen.insert(key.clone());
                    }
                    batch.push(op.clone());
                }
                c.txn(etcd_client::Txn::new().and_then(batch))
                    .await
                    .expect("txn");
            }
        })
    })
    .expect("netns");
    let table = leases(&lab);
    let want = expected_peers(&table, &own);
    assert!(
        want.len() > 50,
        "the walk left a sizeable table: {}",
        want.len()
    );
    eventually(
        Duration::from_secs(20),
        "the kernel to equal etcd exactly",
        || (kernel_peers(&lab, &h).as_ref() == Some(&want)).then_some(()),
    );
}

#[test]
fn sigkill_and_restart_lose_no_pings_and_an_expired_lease_is_replaced() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let h2 = lab.host("h2", 12).expect("host");
    for h in [&h1, &h2] {
        lab.start_agent(h, &[]).expect("agent");
    }
    let env1 = lab
        .wait_subnet_env(&h1, Duration::from_secs(20))
        .expect("subnet");
    lab.wait_subnet_env(&h2, Duration::from_secs(20))
        .expect("subnet");
    let a = lab.pod(&h1, "a").expect("pod");
    let b = lab.pod(&h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10)).expect("ping");

    // 100 pings over 5 s while h1's agent is SIGKILLed and restarted
    let pinger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.ns,
            "ping",
            "-q",
            "-i",
            "0.05",
            "-c",
            "100",
            &b.ip.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_agent(&h1, true);
    std::thread::sleep(Duration::from_millis(1500));
    lab.start_agent(&h1, &[]).expect("restart");
    let out = pinger.wait_with_output().expect("ping done");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100 received"),
        "no ping lost across SIGKILL and restart: {text}"
    );
    let again = lab
        .wait_subnet_env(&h1, Duration::from_secs(20))
        .expect("subnet");
    assert_eq!(again.subnet, env1.subnet, "same subnet");

    // its lease expires while it is away (the etcd lease is revoked): on
    // restart it takes the subnet of its subnet file again, cleanly
    lab.stop_agent(&h1, true);
    let key = format!(
        "/coreos.com/network/subnets/{}",
        env1.subnet
            .expect("s")
            .trunc()
            .to_string()
            .replace('/', "-")
    );
    let json = lab.etcdctl(&["get", &key, "-w", "json"]).expect("get");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let lease_id = v["kvs"][0]["lease"]
        .as_i64()
        .expect("key has an etcd lease");
    lab.etcdctl(&["lease", "revoke", &format!("{lease_id:x}")])
        .expect("revoke");
    assert!(
        lab.etcdctl(&["get", &key]).expect("get").trim().is_empty(),
        "expired"
    );
    lab.start_agent(&h1, &[]).expect("restart");
    let env3 = lab
        .wait_subnet_env(&h1, Duration::from_secs(20))
        .expect("subnet");
    assert_eq!(
        env3.subnet, env1.subnet,
        "re-acquired the subnet of its subnet file"
    );
    // the file was there before the restart: wait for the lease itself
    let short = key.rsplit('/').next().expect("short key").to_string();
    let table = eventually(Duration::from_secs(20), "the lease re-created", || {
        let t = leases(&lab);
        t.contains_key(&short).then_some(t)
    });
    assert_eq!(table.len(), 2);
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping after re-acquisition");
    let _ = sh("true", &[]);
}

/// Starts `ping -i 0.2 -c count` from `from` to `to` in the background.
fn pinger(from: &weft_lab::Pod, to: std::net::Ipv4Addr, count: u32) -> std::process::Child {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &from.ns,
            "ping",
            "-q",
            "-i",
            "0.2",
            "-c",
            &count.to_string(),
            &to.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping")
}

fn received_all(p: std::process::Child, count: u32) {
    let out = p.wait_with_output().expect("ping done");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{count} packets transmitted, {count} received")),
        "{text}"
    );
}

#[test]
fn three_member_etcd_member_loss_and_full_outage() {
    let mut lab = lab();
    lab.start_etcd_cluster(3).expect("3-member etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let h2 = lab.host("h2", 12).expect("host");
    for h in [&h1, &h2] {
        lab.start_agent(h, &[]).expect("agent");
    }
    let own1 = lab
        .wait_subnet_env(&h1, Duration::from_secs(30))
        .expect("subnet")
        .subnet
        .expect("s")
        .trunc()
        .to_string()
        .replace('/', "-");
    lab.wait_subnet_env(&h2, Duration::from_secs(30))
        .expect("subnet");
    let a = lab.pod(&h1, "a").expect("pod");
    let b = lab.pod(&h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10)).expect("ping");

    // one member dies: no interruption, and changes still reach the agents
    let p = pinger(&a, b.ip, 25);
    lab.stop_etcd_member(0, true);
    fake_lease(&lab, 201);
    eventually(
        Duration::from_secs(20),
        "the new lease through the surviving members",
        || {
            kernel_peers(&lab, &h1)?
                .iter()
                .any(|l| l.starts_with("172.30.201.0/24"))
                .then_some(())
        },
    );
    received_all(p, 25);
    lab.start_etcd_cluster(3).expect("member back");

    // every member down for 30 s: the data path carries on untouched
    let p = pinger(&a, b.ip, 175);
    lab.stop_etcd(true);
    std::thread::sleep(Duration::from_secs(30));
    lab.start_etcd_cluster(3).expect("cluster back");
    received_all(p, 175);
    // agents reconnect and converge: changes made after the outage arrive exactly
    etcdctl_retry(
        &lab,
        &["del", "/coreos.com/network/subnets/172.30.201.0-24"],
    );
    fake_lease(&lab, 202);
    let want = expected_peers(&leases(&lab), &own1);
    eventually(Duration::from_secs(30), "h1 to equal etcd again", || {
        (kernel_peers(&lab, &h1).as_ref() == Some(&want)).then_some(())
    });
    for h in [&h1, &h2] {
        assert!(
            lab.agent(h).expect("agent").alive(),
            "agents ride out the outage"
        );
    }
    lab.ping(&a, b.ip, Duration::from_secs(5))
        .expect("ping after");
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    let mut lab = lab();
    let tls = lab.enable_etcd_tls().expect("certificates (openssl)");
    lab.start_etcd().expect("etcd with TLS");
    assert!(lab.etcd_url().expect("url").starts_with("https://"));
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let h2 = lab.host("h2", 12).expect("host");
    for h in [&h1, &h2] {
        lab.start_agent(h, &[])
            .expect("agent with -etcd-cafile/-etcd-certfile/-etcd-keyfile");
    }
    lab.wait_subnet_env(&h1, Duration::from_secs(30))
        .expect("subnet over TLS");
    lab.wait_subnet_env(&h2, Duration::from_secs(30))
        .expect("subnet over TLS");
    let a = lab.pod(&h1, "a").expect("pod");
    let b = lab.pod(&h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10)).expect("ping");
    // without a client certificate etcd refuses: the agent says so and waits
    let h3 = lab.host("h3", 13).expect("host");
    let args = [
        "agent".to_string(),
        format!("-etcd-endpoints={}", lab.etcd_url().expect("url")),
        format!("-etcd-cafile={}", tls.ca.display()),
        "-iface=eth0".to_string(),
        format!("-subnet-file={}", lab.subnet_file(&h3).display()),
    ];
    lab.start_agent_with(&h3, WEFT, &args, &[]).expect("agent");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !lab.subnet_file(&h3).exists(),
        "no lease without a client certificate"
    );
    assert!(
        lab.agent(&h3).expect("agent").alive(),
        "retries instead of crashing"
    );
}

#[test]
fn etcd_username_and_password_and_no_secret_in_logs() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    lab.enable_etcd_auth("weft", "s3cret-pw").expect("auth");
    let h1 = lab.host("h1", 11).expect("host");
    lab.start_agent(&h1, &["-etcd-username=weft", "-etcd-password=s3cret-pw"])
        .expect("agent");
    lab.wait_subnet_env(&h1, Duration::from_secs(30))
        .expect("subnet with auth");
    assert_eq!(leases(&lab).len(), 1);
    // a wrong password gets no lease, is reported, and the password is never logged
    let h2 = lab.host("h2", 12).expect("host");
    lab.start_agent(&h2, &["-etcd-username=weft", "-etcd-password=wrong-pw"])
        .expect("agent");
    // the words the user sees: etcd's own, after the endpoint
    let want = "authentication failed, invalid user ID or password";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !lab.agent_log(&h2).lines().any(|l| l.contains(want)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} in the log:\n{}",
            lab.agent_log(&h2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!lab.subnet_file(&h2).exists());
    for h in [&h1, &h2] {
        let log = lab.agent_log(h);
        assert!(
            !log.contains("s3cret-pw") && !log.contains("wrong-pw"),
            "password in the log:\n{log}"
        );
    }
}

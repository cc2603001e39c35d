//! End to end: the host-gw backend and vxlan DirectRouting on hosts in
//! network namespaces with a real etcd.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn lab() -> Lab {
    Lab::new("wtb", Path::new(WEFT)).expect("lab: these tests need root")
}

fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// `ip route` lines of the host for destinations in 172.30.0.0/16 (test-side view).
fn cluster_routes(host: &Host) -> Vec<String> {
    let out = sh(
        "ip",
        &[
            "-n",
            &host.ns,
            "-4",
            "route",
            "show",
            "root",
            "172.30.0.0/16",
        ],
    )
    .expect("ip route");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("proto kernel"))
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

fn subnet(env: &SubnetEnv) -> String {
    env.subnet.expect("subnet").trunc().to_string()
}

fn start(lab: &mut Lab, config: &str, n: u8, extra: &[&str]) -> Vec<(Host, SubnetEnv)> {
    lab.start_etcd().expect("etcd");
    lab.put_config(config).expect("config");
    let hosts: Vec<Host> = (0..n)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i).expect("host"))
        .collect();
    for h in &hosts {
        lab.start_agent(h, extra).expect("agent");
    }
    hosts
        .into_iter()
        .map(|h| {
            let env = lab
                .wait_subnet_env(&h, Duration::from_secs(20))
                .expect("subnet");
            (h, env)
        })
        .collect()
}

#[test]
fn host_gw_routes_via_peers_and_repairs_deleted_routes() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"host-gw"}}"#,
        3,
        &["-resync-interval=1"],
    );
    // host-gw: MTU of the underlay, lease JSON as flanneld writes it
    assert_eq!(hosts[0].1.mtu, Some(1500));
    let key = subnet(&hosts[0].1).replace('/', "-");
    let value = lab
        .etcdctl(&[
            "get",
            "--print-value-only",
            &format!("/coreos.com/network/subnets/{key}"),
        ])
        .expect("get");
    assert_eq!(
        value.trim(),
        r#"{"PublicIP":"198.18.0.11","PublicIPv6":null,"BackendType":"host-gw"}"#
    );
    assert!(!sh("ip", &["-n", &hosts[0].0.ns, "link"])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("flannel.1"))
        .unwrap_or(true));

    for (h, _) in &hosts {
        eventually(Duration::from_secs(10), "routes to both peers", || {
            (cluster_routes(h).len() == 2).then_some(())
        });
        for (o, env) in hosts.iter().filter(|(o, _)| o != h) {
            let line = cluster_routes(h)
                .into_iter()
                .find(|l| l.starts_with(&subnet(env)))
                .expect("route");
            assert!(line.contains(&format!("via {} dev eth0", o.ip)), "{line}");
        }
    }
    let pods: Vec<_> = hosts
        .iter()
        .map(|(h, _)| lab.pod(h, "p").expect("pod"))
        .collect();
    for a in &pods {
        for b in &pods {
            if a != b {
                lab.ping(a, b.ip, Duration::from_secs(10))
                    .expect("ping over host-gw");
            }
        }
    }
    // someone deletes a route: it comes back
    let (h1, _) = &hosts[0];
    let victim = subnet(&hosts[1].1);
    sh("ip", &["-n", &h1.ns, "route", "del", &victim]).expect("delete route");
    eventually(Duration::from_secs(15), "route repaired", || {
        cluster_routes(h1)
            .iter()
            .any(|l| l.starts_with(&victim))
            .then_some(())
    });
    // the host's own routes on eth0 are never touched
    let own = sh("ip", &["-n", &h1.ns, "route", "show", "198.18.0.0/24"]).expect("ip route");
    assert!(String::from_utf8_lossy(&own.stdout).contains("198.18.0.0/24 dev eth0"));
}

#[test]
fn host_gw_refuses_a_remote_that_is_not_on_the_l2_network() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","Backend":{"Type":"host-gw"}}"#)
        .expect("config");
    lab.etcdctl(&[
        "put",
        "/coreos.com/network/subnets/172.30.200.0-24",
        r#"{"PublicIP":"192.0.2.50","PublicIPv6":null,"BackendType":"host-gw"}"#,
    ])
    .expect("put");
    let h = lab.host("h1", 11).expect("host");
    lab.start_agent(&h, &[]).expect("agent");
    lab.wait_subnet_env(&h, Duration::from_secs(20))
        .expect("subnet");
    eventually(
        Duration::from_secs(10),
        "a clear error for that lease",
        || {
            lab.agent_log(&h)
                .contains("192.0.2.50 is not on this host's L2 network 198.18.0.0/24")
                .then_some(())
        },
    );
    assert!(
        cluster_routes(&h).is_empty(),
        "no route through a gateway: {:?}",
        cluster_routes(&h)
    );
    assert!(lab.agent(&h).expect("agent").alive());
}

#[test]
fn direct_routing_uses_plain_routes_on_the_l2_network_and_vxlan_beyond() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#,
        2,
        &[],
    );
    // a remote behind a router (not on 198.18.0.0/24) gets the vxlan treatment
    lab.etcdctl(&["put", "/coreos.com/network/subnets/172.30.200.0-24",
        r#"{"PublicIP":"192.0.2.50","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:50"}}"#]).expect("put");
    let (h1, _) = &hosts[0];
    let peer = subnet(&hosts[1].1);
    eventually(Duration::from_secs(10), "both routes", || {
        (cluster_routes(h1).len() == 2).then_some(())
    });
    let routes = cluster_routes(h1);
    let direct = routes
        .iter()
        .find(|l| l.starts_with(&peer))
        .expect("peer route");
    assert!(direct.contains("via 198.18.0.12 dev eth0"), "{direct}");
    let far = routes
        .iter()
        .find(|l| l.starts_with("172.30.200.0/24"))
        .expect("far route");
    assert!(
        far.contains("dev flannel.1") && far.contains("onlink"),
        "{far}"
    );
    let fdb = sh(
        "ip",
        &[
            "netns",
            "exec",
            &h1.ns,
            "bridge",
            "fdb",
            "show",
            "dev",
            "flannel.1",
        ],
    )
    .expect("fdb");
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("02:00:00:00:00:50 dst 192.0.2.50"), "{fdb}");
    assert!(
        !fdb.contains("198.18.0.12"),
        "no FDB entry for the direct peer: {fdb}"
    );
    let a = lab.pod(&hosts[0].0, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping over the direct route");
}

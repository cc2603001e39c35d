//! etcd members that are down or die: on real etcd in network namespaces,
//! agents, the proxy and the client commands use the members that answer
//! and say in words which did not.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weft_lab::{eventually, http_get, sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn lab() -> Lab {
    Lab::new("wef", Path::new(WEFT)).expect("lab: these tests need root")
}

fn has_route(host: &Host, dst: &str) -> bool {
    sh("ip", &["-n", &host.ns, "route", "show", dst])
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

#[test]
fn flanneld_default_endpoints_with_4001_dead_get_a_subnet() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    // The agent runs on etcd's own host, where etcd answers on
    // 127.0.0.1:2379 only: flanneld's default list starts with :4001.
    let host = lab.etcd_host(0).expect("etcd host");
    let mut args = lab
        .agent_args(&host, &["-healthz-port=8471"])
        .expect("args");
    args.retain(|a| !a.starts_with("-etcd-endpoints"));
    lab.start_agent_with(&host, WEFT, &args, &[])
        .expect("agent");
    lab.wait_subnet_env(&host, Duration::from_secs(20))
        .expect("a subnet with the default endpoints");
    eventually(Duration::from_secs(5), "/readyz", || {
        http_get(&host.ns, 8471, "/readyz").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    let health = http_get(&host.ns, 8471, "/healthz").expect("/healthz answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.agent(&host).expect("agent").alive(), "agent stays up");
    let log = lab.agent_log(&host);
    assert!(
        log.contains(
            "etcd http://127.0.0.1:4001: connection refused (trying http://127.0.0.1:2379)"
        ),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("tonic") && !log.contains("Os {"), "{log}");
}

#[test]
fn first_member_down_at_start_then_the_current_member_killed() {
    let mut lab = lab();
    lab.start_etcd_cluster(3).expect("3-member etcd");
    lab.put_config(CONFIG).expect("config");
    lab.stop_etcd_member(0, true);
    let hosts: Vec<Host> = (0..3)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i).expect("host"))
        .collect();
    // renewal a minute after acquisition (24 h lease, 1439 min margin)
    for h in &hosts {
        lab.start_agent(h, &["-subnet-lease-renew-margin=1439"])
            .expect("agent");
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(30))
            .expect("every agent gets a subnet with the first member down");
    }
    let a = lab.pod(&hosts[0], "a").expect("pod");
    let b = lab.pod(&hosts[1], "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10)).expect("ping");

    // Member 0 comes back; the agents stay on member 1 (they moved there
    // at start), and member 1 dies under their watches.
    lab.start_etcd_cluster(3).expect("member 0 back");
    lab.stop_etcd_member(1, true);
    let value = r#"{"PublicIP":"198.19.0.201","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:00:00:00:c9"}}"#;
    eventually(Duration::from_secs(20), "writing a lease", || {
        lab.etcdctl(&["put", "/coreos.com/network/subnets/172.30.201.0-24", value])
            .ok()
    });
    for h in &hosts {
        eventually(
            Duration::from_secs(20),
            &format!("the new lease routed on {}", h.name),
            || has_route(h, "172.30.201.0/24").then_some(()),
        );
    }
    lab.ping(&a, b.ip, Duration::from_secs(5))
        .expect("ping after");
    // Each agent's own lease is renewed through the surviving members.
    for h in &hosts {
        eventually(
            Duration::from_secs(90),
            &format!("{}'s lease renewed", h.name),
            || lab.agent_log(h).contains("lease renewed").then_some(()),
        );
        assert!(lab.agent(h).expect("agent").alive());
        let log = lab.agent_log(h);
        assert!(log.contains("etcd http://198.18.0.2:2379: "), "{log}");
        assert!(!log.contains("tonic") && !log.contains("Os {"), "{log}");
    }
}

#[test]
fn proxy_and_client_commands_with_a_dead_first_endpoint() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    lab.add_dead_endpoint("http://198.18.0.2:4001");
    let out = lab
        .weft_client(&[
            "service",
            "expose",
            "example-service",
            "--port",
            "80",
            "--cluster-ip",
            "10.254.180.209",
        ])
        .expect("weft service expose");
    assert!(out.contains("exposed"), "{out}");
    let list = lab
        .weft_client(&["service", "list"])
        .expect("weft service list");
    assert!(list.contains("example-service"), "{list}");
    let h1 = lab.host("h1", 11).expect("host");
    lab.start_proxy(&h1, &["--proxy-mode=nftables"])
        .expect("proxy");
    eventually(Duration::from_secs(20), "the proxy ready", || {
        http_get(&h1.ns, 10249, "/readyz").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    let rules = sh("ip", &["netns", "exec", &h1.ns, "nft", "list", "ruleset"]).expect("nft");
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("10.254.180.209"),
        "the service's rules are in place"
    );

    // Nothing answers at all: one line naming every endpoint and why.
    let ns = lab.etcd_ns().expect("ns");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, WEFT, "service", "list"])
        .arg("--etcd-endpoints=http://198.18.0.2:4001,http://198.18.0.2:4002")
        .output()
        .expect("weft service list");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("no endpoint answered in")
            && last.contains(
                "198.18.0.2:4001 (connection refused), 198.18.0.2:4002 (connection refused)"
            ),
        "{err}"
    );
    assert!(!err.contains("tonic") && !err.contains("Status {"), "{err}");
}

//! The agent-only `flanneld` binary: flanneld's command line, and a
//! two-host vxlan cluster of it with real etcd whose pods reach each other.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weft_lab::{Host, Lab};

/// The binary under test: this build's, or another build of it named by
/// `WEFT_FLANNELD` (CI points it at the lean profile's `target/lean/flanneld`).
fn flanneld() -> String {
    std::env::var("WEFT_FLANNELD").unwrap_or_else(|_| env!("CARGO_BIN_EXE_flanneld").to_string())
}

#[test]
fn answers_version_and_refuses_a_bad_flag_by_name() {
    let o = Command::new(flanneld())
        .arg("-version")
        .output()
        .expect("run");
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("flanneld v0.21.5 compatible"), "{out}");

    let o = Command::new(flanneld())
        .arg("-subnet-lease-renew-margin=0")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("subnet-lease-renew-margin"), "{err}");
}

/// Starts the flanneld binary on `host` with the lab's etcd and files.
fn start(lab: &mut Lab, host: &Host) {
    let args = lab.flanneld_args(host, &[]).expect("args");
    lab.start_agent_with(host, &flanneld(), &args, &[])
        .expect("flanneld");
}

#[test]
fn two_hosts_of_flanneld_give_pods_that_reach_each_other() {
    let bin = flanneld();
    let mut lab = Lab::new("wfd", Path::new(&bin)).expect("lab: this test needs root");
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    let h1 = lab.host("h1", 11).expect("h1");
    let h2 = lab.host("h2", 12).expect("h2");
    start(&mut lab, &h1);
    start(&mut lab, &h2);
    for h in [&h1, &h2] {
        let env = lab
            .wait_subnet_env(h, Duration::from_secs(20))
            .expect("subnet file");
        assert_eq!(env.mtu, Some(1450));
    }
    assert_eq!(lab.lease_keys().expect("leases").len(), 2);
    let p1 = lab.pod(&h1, "p1").expect("pod on h1");
    let p2 = lab.pod(&h2, "p2").expect("pod on h2");
    lab.ping(&p1, p2.ip, Duration::from_secs(10))
        .expect("h1's pod reaches h2's");
    lab.ping(&p2, p1.ip, Duration::from_secs(10))
        .expect("h2's pod reaches h1's");
}

/// The etcd-only build (`--no-default-features`) refuses Kubernetes mode
/// in one line instead of half-starting.
#[cfg(not(feature = "kube"))]
#[test]
fn an_etcd_only_build_refuses_kubernetes_mode_in_one_line() {
    let o = Command::new(flanneld())
        .arg("-kube-subnet-mgr")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("-kube-subnet-mgr: this agent was built without Kubernetes mode"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

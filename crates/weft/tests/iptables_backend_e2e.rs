//! The iptables backend, end to end in network namespaces: the agent
//! writes its rules to the backend that already holds rules (legacy here),
//! `weft doctor` names the tools of rules split across both backends, and
//! a chosen backend whose programs are missing is one clear error.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weft_lab::{eventually, sh, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn saved(ns: &str, program: &str) -> String {
    let out = sh("ip", &["netns", "exec", ns, program]).expect("save");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `tool` (an iptables program) with each of `rules` in `ns`.
fn add_rules(ns: &str, tool: &str, rules: &[&[&str]]) {
    for rule in rules {
        let mut a = vec!["netns", "exec", ns, tool];
        a.extend_from_slice(rule);
        sh("ip", &a).expect("rule added");
    }
}

#[test]
fn the_agent_follows_the_backend_holding_rules_and_doctor_flags_a_split() {
    let mut lab = Lab::new("wib", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    // kube-proxy ran here on legacy before
    add_rules(
        &h1.ns,
        "iptables-legacy",
        &[
            &["-t", "nat", "-N", "KUBE-SERVICES"],
            &["-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"],
        ],
    );
    lab.start_agent(&h1, &[]).expect("agent");
    lab.wait_subnet_env(&h1, Duration::from_secs(20))
        .expect("subnet");
    eventually(
        Duration::from_secs(10),
        "the agent's forward rules in legacy",
        || {
            saved(&h1.ns, "iptables-legacy-save")
                .contains("-A FLANNEL-FWD")
                .then_some(())
        },
    );
    assert!(!saved(&h1.ns, "iptables-nft-save").contains("FLANNEL"));
    let log = lab.agent_log(&h1);
    assert!(log.contains("iptables backend: legacy ("), "{log}");

    // docker on the other backend: doctor names who holds what
    add_rules(
        &h1.ns,
        "iptables-nft",
        &[
            &["-t", "filter", "-N", "DOCKER"],
            &["-t", "filter", "-A", "FORWARD", "-j", "DOCKER"],
        ],
    );
    let endpoints = format!("--etcd-endpoints={}", lab.etcd_url().expect("url"));
    let subnet_file = format!("--subnet-file={}", lab.subnet_file(&h1).display());
    let out = Command::new("ip")
        .args(["netns", "exec", &h1.ns, WEFT, "doctor", "--output", "json"])
        .args([&endpoints, &subnet_file])
        .output()
        .expect("doctor");
    let findings: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    let f = findings
        .as_array()
        .and_then(|a| a.iter().find(|f| f["check"] == "iptables-backend"))
        .expect("an iptables-backend finding")
        .clone();
    assert_eq!(f["severity"], "warning", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("weft uses legacy"), "{msg}");
    assert!(
        msg.contains("legacy holds") && msg.contains("KUBE-* (kube-proxy)"),
        "{msg}"
    );
    assert!(msg.contains("FLANNEL-* (flanneld)"), "{msg}");
    assert!(
        msg.contains("nf_tables holds") && msg.contains("DOCKER* (docker)"),
        "{msg}"
    );
}

#[test]
fn a_chosen_backend_without_its_programs_is_one_clear_error() {
    let mut lab = Lab::new("wic", Path::new(WEFT)).expect("lab: these tests need root");
    let ns = lab.netns("n").expect("netns");
    // a host whose only iptables is nf_tables (no -legacy programs)
    let bin = lab.dir().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for (name, target) in [
        ("iptables", "iptables-nft"),
        ("iptables-save", "iptables-nft-save"),
        ("iptables-restore", "iptables-nft-restore"),
        ("ip6tables-save", "ip6tables-nft-save"),
        ("ip6tables-restore", "ip6tables-nft-restore"),
        ("nft", "nft"),
    ] {
        let real = ["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(target))
            .find(|p| p.exists())
            .expect("the tool is installed");
        std::os::unix::fs::symlink(real, bin.join(name)).expect("link");
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "env"])
        .arg(format!("PATH={}", bin.display()))
        .args([
            WEFT,
            "proxy",
            "--iptables-backend=legacy",
            "--etcd-endpoints=http://127.0.0.1:2379",
            "--metrics-bind-address=",
        ])
        .output()
        .expect("weft proxy");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains(
            "iptables backend legacy: iptables-legacy-restore is not installed and iptables is iptables v1."
        ) && last.contains("(nf_tables)"),
        "{err}"
    );
    // the agent refuses the same before it takes a lease or writes a file
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let h1 = lab.host("h1", 11).expect("host");
    let file = lab.subnet_file(&h1);
    let out = Command::new("ip")
        .args(["netns", "exec", &h1.ns, "env"])
        .arg(format!("PATH={}", bin.display()))
        .args([WEFT, "agent", "-iface=eth0", "-iptables-backend=legacy"])
        .arg(format!("-etcd-endpoints={}", lab.etcd_url().expect("url")))
        .arg(format!("-subnet-file={}", file.display()))
        .output()
        .expect("weft agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("iptables backend legacy: iptables-legacy-restore is not installed"),
        "{err}"
    );
    assert!(
        lab.lease_keys().expect("leases").is_empty(),
        "no lease taken"
    );
    assert!(!file.exists(), "no subnet file written");

    // a misspelled backend is refused at flag parsing
    let out = Command::new(WEFT)
        .args(["agent", "-iptables-backend=xtables"])
        .output()
        .expect("weft agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"xtables\" is not an iptables backend (auto, legacy or nft)"),
        "{err}"
    );
}

//! A host with nftables and no iptables programs at all (RHEL and Rocky
//! 10 ship that way): the agent and the proxy run there with PATH holding
//! every program of this machine but iptables', ip6tables', arptables',
//! ebtables' and xtables'. The agent, asked for `-ip-masq` by a config
//! without `EnableNFTables`, puts its rules in nftables; the proxy runs in
//! nftables mode; pods reach each other and a Service; `weft doctor`
//! explains the host. flanneld v0.28.10 is started the same way beside
//! them and what it does is printed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use weft_lab::{eventually, serve_name, sh, tcp_ask, upstream_flanneld, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SECS: fn(u64) -> Duration = Duration::from_secs;
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn is_iptables_program(name: &str) -> bool {
    ["iptables", "ip6tables", "arptables", "ebtables", "xtables"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// `program args…` inside `host`, with the full PATH (the test's view).
fn in_host(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", &host.ns];
    all.extend_from_slice(args);
    let out = sh("ip", &all).expect("command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn agent_and_proxy_on_a_host_without_iptables() {
    let flanneld =
        upstream_flanneld().expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let mut lab = Lab::new("wno", Path::new(WEFT)).expect("lab: this test needs root");
    let path = lab
        .path_without("nft-only-bin", is_iptables_program)
        .expect("PATH without iptables");
    let env = vec![("PATH".to_string(), path.clone())];
    assert!(
        !Path::new(&path).join("iptables").exists() && Path::new(&path).join("nft").exists(),
        "the PATH has nft and no iptables"
    );
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let hosts: Vec<Host> = (1..=2)
        .map(|i| lab.host(&format!("h{i}"), 10 + i).expect("host"))
        .collect();
    let weft = WEFT.to_string();
    for h in &hosts {
        let args = lab.agent_args(h, &["-ip-masq"]).expect("args");
        lab.start_agent_with(h, &weft, &args, &env).expect("agent");
    }
    for h in &hosts {
        lab.wait_subnet_env(h, SECS(20))
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", h.name, lab.agent_log(h)));
    }
    let (h1, h2) = (&hosts[0], &hosts[1]);

    // the masquerade rules are in nftables, none in iptables
    // (the table may come a moment after subnet.env: not there yet is a
    // retry, not a failure)
    eventually(SECS(10), "flannel's nftables table", || {
        let args = [
            "netns",
            "exec",
            &h1.ns,
            "nft",
            "list",
            "table",
            "ip",
            "flannel-ipv4",
        ];
        let out = sh("ip", &args).ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("masquerade")
            .then_some(())
    });
    assert!(
        lab.agent_log(h1).contains("no iptables programs"),
        "the agent says why it chose nftables:\n{}",
        lab.agent_log(h1)
    );
    let saved = in_host(h1, &["iptables-nft-save"]);
    assert!(!saved.contains("FLANNEL"), "{saved}");

    // the proxy in nftables mode, and a Service
    for h in &hosts {
        sh(
            "ip",
            &["-n", &h.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
        )
        .expect("route");
        let mut args = vec![
            "proxy".to_string(),
            format!("--etcd-endpoints={}", lab.client_endpoints().expect("etcd")),
            format!("--etcd-prefix={}", lab.etcd_prefix()),
            format!("--hostname-override={}", h.name),
            "--metrics-bind-address=127.0.0.1:10249".to_string(),
        ];
        // h1 is told nftables; h2, without --proxy-mode, finds no iptables
        if h.name == "h1" {
            args.push("--proxy-mode=nftables".into());
        }
        lab.start_proxy_with_env(h, &args, &env).expect("proxy");
    }
    let web = lab.pod(h1, "web").expect("pod");
    let client = lab.pod(h2, "client").expect("pod");
    lab.ping(&client, web.ip, SECS(10))
        .expect("pods across hosts");
    let _server = serve_name(&web, 80).expect("server");
    lab.weft_client(&[
        "service",
        "expose",
        "web",
        "--port",
        "80",
        "--cluster-ip",
        "10.254.0.80",
    ])
    .expect("expose");
    lab.weft_client(&[
        "service",
        "endpoints",
        "add",
        "web",
        &web.ip.to_string(),
        "--node",
        "h1",
    ])
    .expect("endpoint");
    let vip: SocketAddr = "10.254.0.80:80".parse().expect("vip");
    eventually(SECS(15), "the Service answers", || {
        (tcp_ask(&client.ns, vip, SECS(2)).ok().as_deref() == Some("web")).then_some(())
    });
    for h in &hosts {
        let log = lab.proxy_log(h);
        assert!(!log.contains("ERROR"), "{}'s proxy:\n{log}", h.name);
    }
    assert!(
        lab.proxy_log(h2)
            .contains("no iptables programs on this host: nftables mode"),
        "{}",
        lab.proxy_log(h2)
    );
    assert!(in_host(h2, &["nft", "list", "tables"]).contains("table ip kube-proxy"));

    // weft doctor, with the host's PATH
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &h1.ns, &weft, "doctor", "--output", "json"])
        .arg(format!("--subnet-file={}", lab.subnet_file(h1).display()))
        .arg(format!(
            "--etcd-endpoints={}",
            lab.client_endpoints().expect("etcd")
        ))
        .env("PATH", &path)
        .output()
        .expect("doctor");
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor's JSON: {e}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let checks: BTreeSet<String> = findings
        .iter()
        .map(|f| format!("{} {}", f["check"], f["severity"]))
        .collect();
    eprintln!("doctor on the nftables-only host: {checks:?}");
    let firewall = findings
        .iter()
        .find(|f| f["check"] == "iptables-backend")
        .unwrap_or_else(|| panic!("no iptables finding: {findings:?}"));
    assert_eq!(firewall["severity"], "ok", "{firewall}");
    assert!(
        !checks.iter().any(|c| c.ends_with("\"error\"")),
        "doctor found errors: {checks:?}"
    );
    assert!(
        firewall["message"]
            .as_str()
            .is_some_and(|m| m.contains("nftables")),
        "{firewall}"
    );

    // flanneld v0.28.10 on a third host the same way
    let h3 = lab.host("h3", 13).expect("host");
    let args = lab.flanneld_args(&h3, &["-ip-masq"]).expect("args");
    lab.start_agent_with(&h3, &flanneld.display().to_string(), &args, &env)
        .expect("flanneld");
    let written = lab.wait_subnet_env(&h3, SECS(15)).is_ok();
    std::thread::sleep(SECS(2));
    let alive = lab.agent(&h3).map(|p| p.alive()).unwrap_or(false);
    let last = lab
        .agent_log(&h3)
        .lines()
        .rev()
        .find(|l| l.contains("iptables") || l.starts_with('E'))
        .unwrap_or("")
        .to_string();
    eprintln!(
        "flanneld v0.28.10 without iptables programs: subnet file {}, {}; {last}",
        if written { "written" } else { "not written" },
        if alive { "running" } else { "exited" }
    );
}

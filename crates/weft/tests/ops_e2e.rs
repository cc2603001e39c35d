//! End to end: `weft status`, `weft doctor`, `weft qos` and the agent's
//! metrics on a vxlan cluster in network namespaces with a real etcd.
//! Every doctor check is shown a healthy host and then the broken state it
//! is there to catch, built inside a host namespace (or a temp root).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft_lab::{eventually, http_get, sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn weft_in(lab: &Lab, host: &Host, args: &[&str]) -> (i32, String) {
    lab.weft_on(host, args).expect("weft runs")
}

fn doctor(lab: &Lab, host: &Host, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["doctor", "--output", "json"];
    args.extend_from_slice(extra);
    let (code, out) = weft_in(lab, host, &args);
    let json: Vec<Value> =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, json)
}

fn severity(findings: &[Value], check: &str) -> String {
    findings
        .iter()
        .find(|f| f["check"] == check)
        .map(|f| f["severity"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no {check} finding in {findings:?}"))
}

fn netns_sh(host: &Host, args: &[&str]) {
    let mut a = vec!["netns", "exec", host.ns.as_str()];
    a.extend_from_slice(args);
    sh("ip", &a).expect("command in netns");
}

fn cluster(lab: &mut Lab, extra: &[&str]) -> Vec<Host> {
    let hosts = lab.cluster(CONFIG, 3, 31, extra).expect("cluster");
    hosts.into_iter().map(|(h, _)| h).collect()
}

fn http(host: &Host, port: u16, path: &str) -> String {
    http_get(&host.ns, port, path).expect("the endpoint answers")
}

#[test]
fn status_shows_leases_data_path_drift_and_reachability() {
    let mut lab = Lab::new("wts", Path::new(WEFT)).expect("lab: these tests need root");
    let hosts = cluster(&mut lab, &["-resync-interval=3600", "-healthz-port=8471"]);
    let (h1, h2) = (&hosts[0], &hosts[1]);
    let status = |lab: &Lab| -> Value {
        let (code, out) = weft_in(
            lab,
            h1,
            &["status", "--output", "json", "--iface", "eth0", "--ping"],
        );
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    // h1's agent wrote its subnet file before the later agents' leases
    // reached it: wait for the peers and for its data path to take them in
    let s = eventually(
        Duration::from_secs(10),
        "peers reachable and in sync",
        || {
            let s = status(&lab);
            let leases = s["leases"].as_array().cloned().unwrap_or_default();
            let reachable = leases.iter().filter(|l| l["reachable"] == true).count() == 2;
            (reachable && s["dataplane"]["in_sync"] == true).then_some(s)
        },
    );
    assert_eq!(s["backend"], "vxlan");
    assert_eq!(s["network"], "172.30.0.0/16");
    let leases = s["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 3);
    assert_eq!(leases.iter().filter(|l| l["this_host"] == true).count(), 1);
    for l in leases {
        assert!(l["vtep_mac"].as_str().is_some_and(|m| m.len() == 17), "{l}");
        let ttl = l["expires_in_seconds"].as_i64().expect("ttl");
        assert!(ttl > 23 * 3600 && ttl <= 24 * 3600, "{l}");
    }
    assert_eq!(s["dataplane"]["in_sync"], true, "{s}");

    // Break the data path: remove the route to h2's subnet.
    let env2 = lab
        .wait_subnet_env(h2, Duration::from_secs(1))
        .expect("env");
    let peer = env2.subnet.expect("subnet").trunc().to_string();
    netns_sh(h1, &["ip", "route", "del", &peer]);
    let s = status(&lab);
    assert_eq!(s["dataplane"]["in_sync"], false);
    let missing: Vec<String> =
        serde_json::from_value(s["dataplane"]["missing"].clone()).expect("list");
    assert_eq!(missing, vec![format!("route {peer}")]);
    let (_, table) = weft_in(&lab, h1, &["status", "--iface", "eth0"]);
    assert!(
        table.contains("<- this host") && table.contains(&format!("MISSING route {peer}")),
        "{table}"
    );

    // The agent's metrics, read with a Prometheus parser.
    let ready = http(h1, 8471, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http(h1, 8471, "/metrics");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or("");
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    assert_eq!(value("weft_agent_leases"), 2.0);
    assert_eq!(value("weft_agent_netlink_errors_total"), 0.0);
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "weft_agent_reconcile_duration_seconds_count"));
}

#[test]
fn doctor_finds_each_broken_state_and_passes_a_healthy_host() {
    let mut lab = Lab::new("wtd", Path::new(WEFT)).expect("lab: these tests need root");
    let hosts = cluster(&mut lab, &["-iptables-forward-rules=false"]);
    let h = &hosts[1];

    // Healthy: every check that can judge says ok.
    let (_, f) = doctor(&lab, h, &[]);
    for check in [
        "etcd",
        "subnet-file",
        "ip-forward",
        "forward-policy",
        "docker-bridge",
        "mtu",
        "vtep-mac",
    ] {
        assert_eq!(severity(&f, check), "ok", "{check}: {f:?}");
    }
    assert_eq!(severity(&f, "cgroup-driver"), "skipped", "{f:?}");

    // ip_forward off.
    netns_sh(h, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let (code, f) = doctor(&lab, h, &[]);
    assert_eq!((code, severity(&f, "ip-forward").as_str()), (2, "error"));
    netns_sh(h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    // FORWARD policy DROP without accept rules (the agent was told not to add them).
    netns_sh(h, &["iptables", "-P", "FORWARD", "DROP"]);
    let (_, f) = doctor(&lab, h, &[]);
    assert_eq!(severity(&f, "forward-policy"), "error");
    netns_sh(
        h,
        &[
            "iptables",
            "-A",
            "FORWARD",
            "-s",
            "172.30.0.0/16",
            "-j",
            "ACCEPT",
        ],
    );
    let (_, f) = doctor(&lab, h, &[]);
    assert_eq!(severity(&f, "forward-policy"), "ok");
    netns_sh(h, &["iptables", "-P", "FORWARD", "ACCEPT"]);

    // docker0 on docker's default network instead of FLANNEL_SUBNET, and
    // (a bridge now exists) bridge netfilter off or absent.
    netns_sh(h, &["ip", "link", "add", "docker0", "type", "bridge"]);
    netns_sh(h, &["ip", "addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    if Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        netns_sh(
            h,
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"],
        );
    }
    let (_, f) = doctor(&lab, h, &[]);
    assert_eq!(severity(&f, "docker-bridge"), "error");
    assert_eq!(severity(&f, "bridge-netfilter"), "warning");
    netns_sh(h, &["ip", "link", "del", "docker0"]);

    // vxlan MTU too large for the underlay (its MTU lowered under it), and
    // a MAC that is not the lease's.
    netns_sh(h, &["ip", "link", "set", "eth0", "mtu", "1400"]);
    netns_sh(
        h,
        &[
            "ip",
            "link",
            "set",
            "flannel.1",
            "address",
            "02:de:ad:be:ef:01",
        ],
    );
    let (_, f) = doctor(&lab, h, &[]);
    assert_eq!(severity(&f, "mtu"), "error");
    assert_eq!(severity(&f, "vtep-mac"), "error");

    // Subnet file missing, then stale (no lease for its subnet).
    let (_, f) = doctor(&lab, h, &["--subnet-file=/nonexistent/subnet.env"]);
    assert_eq!(severity(&f, "subnet-file"), "error");
    let stale = lab.dir().join("stale.env");
    std::fs::write(&stale, "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.250.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n").expect("write");
    let (_, f) = doctor(&lab, h, &[&format!("--subnet-file={}", stale.display())]);
    assert_eq!(severity(&f, "subnet-file"), "error");

    // etcd unreachable; config invalid.
    let (code, f) = doctor(&lab, h, &["--etcd-endpoints=http://198.18.0.250:2379"]);
    assert_eq!((code, severity(&f, "etcd").as_str()), (2, "error"));
    lab.etcdctl(&["put", "/bad/config", r#"{"Network": "172.30.0.0/33"}"#])
        .expect("put");
    let (_, f) = doctor(&lab, h, &["--etcd-prefix=/bad"]);
    assert_eq!(severity(&f, "etcd"), "error");
    let msg = f
        .iter()
        .find(|x| x["check"] == "etcd")
        .map(|x| x["message"].to_string())
        .unwrap_or_default();
    assert!(msg.contains("Network"), "{msg}");

    // kubelet on cgroupfs, docker on systemd (files in a temp root).
    let root = lab.dir().join("root");
    std::fs::create_dir_all(root.join("etc/docker")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc/kubernetes")).expect("mkdir");
    std::fs::write(
        root.join("etc/docker/daemon.json"),
        r#"{"exec-opts": ["native.cgroupdriver=systemd"]}"#,
    )
    .expect("write");
    std::fs::write(
        root.join("etc/kubernetes/kubelet"),
        "KUBELET_ARGS=\"--cgroup-driver=cgroupfs\"\n",
    )
    .expect("write");
    let (_, f) = doctor(&lab, h, &[&format!("--root={}", root.display())]);
    assert_eq!(severity(&f, "cgroup-driver"), "error");
    let fix = f
        .iter()
        .find(|x| x["check"] == "cgroup-driver")
        .map(|x| x["fix"].to_string())
        .unwrap_or_default();
    assert!(fix.contains("cgroup-driver"), "{fix}");

    // The human form prints a fix line under a failure.
    let (code, text) = weft_in(&lab, h, &["doctor"]);
    assert_eq!(code, 2);
    assert!(
        text.contains("[FAIL] mtu:") && text.contains("fix: ip link set flannel.1 mtu 1350"),
        "{text}"
    );
}

#[test]
fn qos_classes_from_manifests() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("pods.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: v1
kind: Pod
metadata: {name: guaranteed, namespace: default}
spec:
  containers:
  - name: app
    resources: {limits: {cpu: "1", memory: 1Gi}, requests: {cpu: 1000m, memory: 1024Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: burstable}
spec:
  containers:
  - name: app
    resources: {requests: {cpu: 250m}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: web}
spec:
  template:
    spec:
      containers: [{name: nginx, image: nginx}]
"#,
    )
    .expect("write");
    let out = std::process::Command::new(WEFT)
        .args(["qos"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    assert!(row("guaranteed").contains("Guaranteed"), "{text}");
    assert!(row("burstable").contains("Burstable"), "{text}");
    assert!(row("nginx").contains("BestEffort"), "{text}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n    resources: {limits: {cpu: abc}}\n").expect("write");
    let out = std::process::Command::new(WEFT)
        .args(["qos"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limits.cpu") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn demo_keep_leaves_the_cluster_and_demo_down_removes_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("demo.json");
    let out = std::process::Command::new(WEFT)
        .args(["demo", "--keep", "--hosts", "2"])
        .env("WEFT_DEMO_STATE", &state)
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[demo] OK: the overlay, the Service and the status check work"),
        "{text}"
    );
    let kept: weft_lab::KeptLab =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    let listed =
        String::from_utf8_lossy(&sh("ip", &["netns", "list"]).expect("ip").stdout).into_owned();
    for ns in &kept.namespaces {
        assert!(listed.contains(ns.as_str()), "{ns} missing: {listed}");
    }
    let down = std::process::Command::new(WEFT)
        .args(["demo", "down"])
        .env("WEFT_DEMO_STATE", &state)
        .output()
        .expect("down runs");
    assert!(down.status.success());
    let listed =
        String::from_utf8_lossy(&sh("ip", &["netns", "list"]).expect("ip").stdout).into_owned();
    assert!(!listed.contains(&kept.prefix), "{listed}");
    for p in &kept.pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "pid {p} still running"
        );
    }
    assert!(!state.exists());
}

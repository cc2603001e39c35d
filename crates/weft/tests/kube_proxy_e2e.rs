//! `weft proxy` with a real kube-apiserver as its source: the article's
//! Service and its endpoints created through the API, served on a 3-host
//! weft cluster (cluster IP and NodePort from a pod on another host);
//! an endpoint turning not-ready leaves the rules; the API server stopped
//! for 30 s leaves traffic flowing and a change made after it returns is
//! applied; a deleted Service loses its rules; a watch whose
//! resourceVersion was compacted away (`410 Gone`) re-lists.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weft_lab::{eventually, serve_name, sh, tcp_ask, Lab, Pod};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CONFIG: &str = r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: example-service
  namespace: default
spec:
  type: NodePort
  clusterIP: 10.254.180.209
  ports:
  - port: 80
    targetPort: 80
    nodePort: 32663
    protocol: TCP
";

/// The Service's one EndpointSlice with `(pod, ready)` endpoints.
fn slice(endpoints: &[(&Pod, bool)]) -> String {
    let mut y = String::from(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: example-service-1
  namespace: default
  labels:
    kubernetes.io/service-name: example-service
    endpointslice.kubernetes.io/managed-by: weft-tests
addressType: IPv4
ports:
- name: \"\"
  port: 80
  protocol: TCP
endpoints:
",
    );
    for (pod, ready) in endpoints {
        y.push_str(&format!(
            "- addresses: [\"{}\"]\n  nodeName: {}\n  conditions:\n    ready: {ready}\n    serving: true\n    terminating: {}\n",
            pod.ip,
            pod.host,
            !ready
        ));
    }
    y
}

/// The names answering `to` from `client` over `tries` connections.
fn answers(client: &Pod, to: SocketAddr, tries: usize) -> BTreeSet<String> {
    (0..tries)
        .filter_map(|_| tcp_ask(&client.ns, to, Duration::from_secs(1)).ok())
        .collect()
}

#[test]
fn the_article_service_from_the_api_server_on_three_hosts() {
    let mut lab = Lab::new("wkp", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    lab.put_config(CONFIG).expect("config");
    let mut hosts = Vec::new();
    for i in 1..=3u8 {
        let h = lab.host(&format!("h{i}"), 10 + i).expect("host");
        lab.start_agent(&h, &[]).expect("agent");
        hosts.push(h);
    }
    let mut pods = Vec::new();
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(30))
            .expect("subnet");
        pods.push(lab.pod(h, "pod").expect("pod"));
    }
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let mut api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    let kubeconfig = api.admin_kubeconfig().expect("kubeconfig");
    for h in &hosts {
        sh(
            "ip",
            &["-n", &h.ns, "route", "add", "10.254.0.0/16", "dev", "eth0"],
        )
        .expect("service route");
        let args = [
            "proxy".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={}", h.name),
            "--cluster-cidr=172.30.0.0/16".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
        ];
        lab.start_proxy_args(h, &args).expect("proxy");
    }
    let _servers: Vec<_> = pods[..2]
        .iter()
        .map(|p| serve_name(p, 80).expect("server"))
        .collect();
    let (p1, p2, client) = (&pods[0], &pods[1], &pods[2]);
    api.apply(SERVICE).expect("service");
    api.apply(&slice(&[(p1, true), (p2, true)]))
        .expect("endpoints");

    let vip: SocketAddr = "10.254.180.209:80".parse().expect("vip");
    let node_port = SocketAddr::new(hosts[0].ip.into(), 32663);
    let both: BTreeSet<String> = [p1.name.clone(), p2.name.clone()].into();
    for to in [vip, node_port] {
        let mut seen = BTreeSet::new();
        eventually(Duration::from_secs(30), "both endpoints answering", || {
            seen.extend(answers(client, to, 4));
            (seen == both).then_some(())
        });
    }

    // not ready: out of the rules (its terminating state does not matter
    // while a ready endpoint exists)
    api.apply(&slice(&[(p1, true), (p2, false)]))
        .expect("not ready");
    let only_p1: BTreeSet<String> = [p1.name.clone()].into();
    eventually(Duration::from_secs(20), "only the ready endpoint", || {
        (answers(client, vip, 10) == only_p1).then_some(())
    });

    // The API server away for 30 s: traffic goes on.
    api.stop();
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            answers(client, vip, 2),
            only_p1,
            "traffic while the API server is away"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    for h in &hosts {
        assert!(
            lab.proxy(h).expect("proxy").alive(),
            "proxy on {} exited",
            h.name
        );
    }
    api.start().expect("kube-apiserver again");
    api.apply(&slice(&[(p1, true), (p2, true)]))
        .expect("ready again");
    let mut seen = BTreeSet::new();
    eventually(
        Duration::from_secs(60),
        "the change made after the return",
        || {
            seen.extend(answers(client, vip, 4));
            (seen == both).then_some(())
        },
    );

    // deleted: its rules go
    api.kubectl(&["delete", "service", "example-service"])
        .expect("delete");
    let nat = || {
        let saved = sh(
            "ip",
            &["netns", "exec", &hosts[2].ns, "iptables-save", "-t", "nat"],
        )
        .expect("iptables-save");
        String::from_utf8_lossy(&saved.stdout).into_owned()
    };
    let deleted = Instant::now();
    while nat().contains("example-service") {
        assert!(
            deleted.elapsed() < Duration::from_secs(20),
            "the service's rules stay after its deletion:\n{}\n{}",
            nat(),
            lab.proxy_log(&hosts[2])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answers(client, vip, 2).is_empty());
    for h in &hosts {
        let log = lab.proxy_log(h);
        assert!(!log.contains(" ERROR "), "{log}");
        assert!(
            !log.contains("Error {") && !log.contains("Status {"),
            "{log}"
        );
    }
}

#[test]
fn one_source_at_a_time_and_bad_kubeconfig_is_one_line() {
    let out = Command::new(WEFT)
        .args([
            "proxy",
            "--kubeconfig=/nonexistent",
            "--etcd-endpoints=http://192.0.2.1:2379",
            "--metrics-bind-address=",
        ])
        .output()
        .expect("weft proxy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("two sources of Services: give one"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // (a bad kubeconfig is found after the iptables backend is chosen:
    // run in a namespace of the test's own)
    let mut lab = Lab::new("wkpc", Path::new(WEFT)).expect("lab: these tests need root");
    let ns = lab.netns("cli").expect("netns");
    let bad = lab.dir().join("kubeconfig");
    std::fs::write(&bad, "clusters: [1, 2").expect("write");
    let out = Command::new("ip")
        .args(["netns", "exec"])
        .arg(&ns)
        .arg(WEFT)
        .arg("proxy")
        .arg(format!("--kubeconfig={}", bad.display()))
        .arg("--metrics-bind-address=")
        .output()
        .expect("weft proxy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("weft: --kubeconfig "), "{err}");
    assert!(!err.contains("Error {"), "{err}");
}

#[test]
fn the_daemonset_manifest_is_valid_and_its_role_is_enough() {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/kubernetes/weft-proxy.yml");
    let manifest = manifest.display().to_string();
    let mut lab = Lab::new("wkpm", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    let dry = api
        .kubectl(&["apply", "--dry-run=server", "-f", &manifest])
        .expect("server-side dry run");
    for object in [
        "serviceaccount/weft-proxy",
        "clusterrole.rbac.authorization.k8s.io/weft-proxy",
        "clusterrolebinding.rbac.authorization.k8s.io/weft-proxy",
        "configmap/weft-proxy",
        "daemonset.apps/weft-proxy",
    ] {
        assert!(
            dry.contains(&format!("{object} created (server dry run)")),
            "{dry}"
        );
    }
    // The role is enough: the proxy runs with the ServiceAccount's token
    // (no controller manager or kubelet here, so the DaemonSet makes no pod).
    api.kubectl(&["apply", "-f", &manifest]).expect("apply");
    let token = api
        .kubectl(&["-n", "kube-system", "create", "token", "weft-proxy"])
        .expect("token");
    let dir = lab.dir().join("sa");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("token"), token.trim()).expect("token file");
    let ca = api
        .admin_kubeconfig()
        .expect("admin")
        .with_file_name("ca.pem");
    // the manifest's kubeconfig, with the lab's address and files
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let start = text
        .find("kubeconfig.conf: |")
        .expect("kubeconfig in the ConfigMap");
    let body: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let body = body
        .replace("https://API-SERVER-ADDRESS:6443", &api.url)
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            &ca.display().to_string(),
        )
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            &dir.join("token").display().to_string(),
        );
    let kubeconfig = dir.join("kubeconfig.conf");
    std::fs::write(&kubeconfig, body).expect("kubeconfig");
    let node = lab.host("node1", 11).expect("host");
    let args = [
        "proxy".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--hostname-override=node1".into(),
        "--cluster-cidr=172.30.0.0/16".into(),
        "--metrics-bind-address=127.0.0.1:10249".into(),
    ];
    lab.start_proxy_args(&node, &args).expect("proxy");
    api.apply(SERVICE).expect("service");
    let started = Instant::now();
    loop {
        // (no endpoints: the service's address is rejected in the filter table)
        let saved = sh("ip", &["netns", "exec", &node.ns, "iptables-save"]).expect("iptables-save");
        if String::from_utf8_lossy(&saved.stdout).contains("10.254.180.209/32") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no rules for the service with the ServiceAccount's role:\n{}",
            lab.proxy_log(&node)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = lab.proxy_log(&node);
    assert!(
        !log.contains("forbidden") && !log.contains(" WARN "),
        "{log}"
    );
}

/// A watch that cannot resume: while the proxy is frozen, a Service
/// changes, etcd is compacted and the API server
/// restarts (a fresh watch cache), so the proxy's resourceVersion is gone
/// (`410 Gone`). It re-lists and converges on the change.
#[test]
fn a_compacted_resource_version_makes_the_proxy_relist() {
    let mut lab = Lab::new("wkpg", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let mut api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    let kubeconfig = api.admin_kubeconfig().expect("kubeconfig");
    let node = lab.host("node1", 11).expect("host");
    lab.start_proxy_args(
        &node,
        &[
            "proxy".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--hostname-override=node1".into(),
            "--cluster-cidr=172.30.0.0/16".into(),
        ],
    )
    .expect("proxy");
    let pid = lab
        .proxy(&node)
        .expect("proxy")
        .pid()
        .expect("pid")
        .to_string();
    api.apply(SERVICE).expect("service");
    let nat = || {
        let saved = sh("ip", &["netns", "exec", &node.ns, "iptables-save"]).expect("iptables-save");
        String::from_utf8_lossy(&saved.stdout).into_owned()
    };
    let wait_for = |what: &str, needle: &str| {
        let started = Instant::now();
        while !nat().contains(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: no {needle:?}:\n{}",
                lab.proxy_log(&node)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("first sync", "10.254.180.209/32");

    // The proxy frozen (SIGSTOP, by PID) while the Service changes, etcd
    // is compacted and the API server restarts with a fresh watch cache.
    sh("kill", &["-STOP", &pid]).expect("freeze");
    // (its watches end before the change, so no event of it is in flight)
    api.stop();
    api.start().expect("kube-apiserver again");
    api.apply(&SERVICE.replace("port: 80\n", "port: 8080\n"))
        .expect("change");
    let status = lab
        .etcdctl(&["endpoint", "status", "-w", "json"])
        .expect("status");
    let revision = status
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .expect("revision")
        .to_string();
    lab.etcdctl(&["compact", &revision]).expect("compact");
    api.stop();
    api.start().expect("kube-apiserver again");
    sh("kill", &["-CONT", &pid]).expect("thaw");

    // (no endpoints: rejected in the filter table, at the new port)
    wait_for("after the relist", "-m tcp --dport 8080 -j REJECT");
    // both watches found their version gone and listed again (the
    // EndpointSlices' protobuf watch says so; each at its own pace)
    let started = Instant::now();
    let relisted = |log: &str| {
        log.contains("re-listing Services")
            && log.contains("the EndpointSlice watch's resourceVersion has expired (410 Gone)")
            && log.contains("re-listing EndpointSlices")
    };
    while !relisted(&lab.proxy_log(&node)) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no relisting of both:\n{}",
            lab.proxy_log(&node)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = lab.proxy_log(&node);
    assert!(!log.contains(" ERROR "), "{log}");
}

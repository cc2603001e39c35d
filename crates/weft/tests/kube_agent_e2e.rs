//! The agent in Kubernetes mode (`-kube-subnet-mgr`) on a real
//! kube-apiserver: no etcd for the agents, each Node's podCIDR its subnet,
//! the lease in the Node's annotations. The tests create the Nodes with
//! their podCIDRs (as the controller-manager would).
//!
//! - three weft nodes run on the ServiceAccount token of
//!   `dist/kubernetes/weft-flannel.yml` (its ClusterRole is enough), pods
//!   ping across them, the annotations and NetworkUnavailable condition
//!   are flanneld's, an operator's `public-ip-overwrite` is followed by
//!   the peers, a deleted Node is unrouted, and an API server restart
//!   leaves the data path working and resyncs;
//! - weft and upstream flanneld nodes share one API server (vxlan,
//!   host-gw): pods reach each other both ways, a deleted Node is
//!   unrouted by the other kind, the subnet files say the same things.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, upstream_flanneld, ApiServer, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SECS: fn(u64) -> Duration = Duration::from_secs;
const PREFIX: &str = "flannel.alpha.coreos.com";

fn manifest() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist/kubernetes/weft-flannel.yml")
        .display()
        .to_string()
}

/// A lab (tagged `tag`) with etcd and a kube-apiserver on it.
fn lab_with_api(tag: &str) -> (Lab, ApiServer) {
    let mut lab = Lab::new(tag, Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd (for the API server)");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    (lab, api)
}

/// A Node named `name` with pod range `172.30.<third>.0/24`.
fn create_node(api: &ApiServer, name: &str, third: u8) {
    api.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: 172.30.{third}.0/24\n  podCIDRs: [\"172.30.{third}.0/24\"]\n"
    ))
    .unwrap_or_else(|e| panic!("creating Node {name}: {e:#}"));
}

/// A kubeconfig with the token of ServiceAccount kube-flannel/flannel.
fn service_account_kubeconfig(lab: &Lab, api: &ApiServer) -> PathBuf {
    let token = api
        .kubectl(&["-n", "kube-flannel", "create", "token", "flannel"])
        .expect("token");
    let ca = api
        .admin_kubeconfig()
        .expect("admin")
        .with_file_name("ca.pem");
    let file = lab.dir().join("flannel-sa.kubeconfig");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: flannel\n  user:\n    token: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: flannel\ncurrent-context: lab\n",
            api.url,
            ca.display(),
            token.trim()
        ),
    )
    .expect("kubeconfig");
    file
}

fn net_conf(lab: &Lab, backend: &str) -> PathBuf {
    let file = lab.dir().join(format!("net-conf-{backend}.json"));
    std::fs::write(
        &file,
        format!(r#"{{"Network":"172.30.0.0/16","Backend":{{"Type":"{backend}"}}}}"#),
    )
    .expect("net-conf.json");
    file
}

/// flanneld's flags in Kubernetes mode for `host` (without argv[0]), with
/// masquerading and the Node watch's events in the log.
fn kube_args(lab: &Lab, host: &Host, kubeconfig: &Path, conf: &Path) -> Vec<String> {
    let mut args = lab.kube_agent_args(host, kubeconfig, conf);
    args.extend(["-ip-masq".into(), "-v=2".into()]);
    args
}

fn start_weft(lab: &mut Lab, host: &Host, kubeconfig: &Path, conf: &Path) {
    let mut args = vec!["agent".to_string()];
    args.extend(kube_args(lab, host, kubeconfig, conf));
    let env = [("NODE_NAME".to_string(), host.name.clone())];
    lab.start_agent_with(host, WEFT, &args, &env)
        .expect("weft agent");
}

/// An operator's move of `host`'s Node to the address `moved`: the
/// address added to its eth0 and the Node annotated
/// `public-ip-overwrite=<moved>`.
fn overwrite_public_ip(api: &ApiServer, host: &Host, moved: &str) {
    let with_len = format!("{moved}/24");
    weft_lab::sh(
        "ip",
        &["-n", &host.ns, "addr", "add", &with_len, "dev", "eth0"],
    )
    .expect("second address");
    api.kubectl(&[
        "annotate",
        "node",
        &host.name,
        &format!("{PREFIX}/public-ip-overwrite={moved}"),
    ])
    .expect("annotate");
}

fn routes_to(lab: &Lab, host: &Host, subnet: &str) -> bool {
    lab.routes_to(host, subnet).expect("routes")
}

/// The underlay address `host`'s vxlan FDB sends `mac`'s frames to.
fn fdb_dst(lab: &Lab, host: &Host, mac: &str) -> Option<String> {
    let mut nl = lab.netlink(host).expect("netlink");
    let dev = weft_kernel::link_by_name(&mut nl, "flannel.1").ok()??;
    let plane =
        weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(dev.index)).ok()?;
    plane
        .fdb
        .values()
        .find(|f| f.mac.to_string() == mac)
        .map(|f| f.dst.to_string())
}

fn node_json(api: &ApiServer, name: &str) -> serde_json::Value {
    let text = api
        .kubectl(&["get", "node", name, "-o", "json"])
        .expect("get node");
    serde_json::from_str(&text).expect("node JSON")
}

fn annotation(node: &serde_json::Value, key: &str) -> Option<String> {
    node["metadata"]["annotations"][format!("{PREFIX}/{key}")]
        .as_str()
        .map(String::from)
}

/// `weft <command> <flags…> <extra…> -o json` in `host`'s namespace, its
/// output parsed (whatever its exit status: the doctor's says how well).
fn weft_json(host: &Host, command: &str, flags: &[String], extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &host.ns, WEFT, command])
        .args(flags)
        .args(extra)
        .args(["-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("weft {command}: {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "weft {command}: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn wait_env(lab: &mut Lab, host: &Host) -> SubnetEnv {
    lab.wait_subnet_env(host, SECS(40))
        .unwrap_or_else(|e| panic!("subnet file of {}: {e:#}", host.name))
}

#[test]
fn three_weft_nodes_on_the_manifest_s_role() {
    let (mut lab, mut api) = lab_with_api("wka");

    // the manifest is valid as a whole (its namespace must exist for a
    // dry run of the objects in it), then its objects are created
    api.kubectl(&["create", "namespace", "kube-flannel"])
        .expect("namespace");
    let dry = api
        .kubectl(&["apply", "--dry-run=server", "-f", &manifest()])
        .expect("server-side dry run");
    assert!(dry.contains("namespace/kube-flannel"), "{dry}");
    for object in [
        "serviceaccount/flannel",
        "clusterrole.rbac.authorization.k8s.io/flannel",
        "clusterrolebinding.rbac.authorization.k8s.io/flannel",
        "configmap/kube-flannel-cfg",
        "daemonset.apps/kube-flannel-ds",
    ] {
        assert!(
            dry.contains(&format!("{object} created (server dry run)")),
            "{dry}"
        );
    }
    api.kubectl(&["apply", "-f", &manifest()]).expect("apply");
    // the agents run with the ServiceAccount's token: the ClusterRole is enough
    let kubeconfig = service_account_kubeconfig(&lab, &api);
    let conf = net_conf(&lab, "vxlan");

    let mut hosts = Vec::new();
    for i in 1..=3u8 {
        let h = lab.host(&format!("k{i}"), 10 + i).expect("host");
        create_node(&api, &h.name, i);
        start_weft(&mut lab, &h, &kubeconfig, &conf);
        hosts.push(h);
    }
    for (i, h) in hosts.iter().enumerate() {
        let env = wait_env(&mut lab, h);
        assert_eq!(
            env.subnet.map(|s| s.to_string()),
            Some(format!("172.30.{}.1/24", i + 1)),
            "{}'s subnet is its Node's podCIDR",
            h.name
        );
        assert_eq!(
            env.network.map(|n| n.to_string()).as_deref(),
            Some("172.30.0.0/16")
        );
    }
    // flanneld's annotations and condition
    let node = eventually(SECS(20), "k1's annotations and condition", || {
        let n = node_json(&api, "k1");
        let ready = n["status"]["conditions"].as_array()?.iter().any(|c| {
            c["type"] == "NetworkUnavailable"
                && c["status"] == "False"
                && c["reason"] == "FlannelIsUp"
        });
        (ready && annotation(&n, "kube-subnet-manager").is_some()).then_some(n)
    });
    assert_eq!(
        annotation(&node, "kube-subnet-manager").as_deref(),
        Some("true")
    );
    assert_eq!(annotation(&node, "backend-type").as_deref(), Some("vxlan"));
    assert_eq!(
        annotation(&node, "public-ip"),
        Some(hosts[0].ip.to_string())
    );
    let data: serde_json::Value =
        serde_json::from_str(&annotation(&node, "backend-data").expect("backend-data"))
            .expect("JSON");
    assert_eq!(data["VNI"], 1);
    let k3_mac = {
        let n = node_json(&api, "k3");
        let d: serde_json::Value =
            serde_json::from_str(&annotation(&n, "backend-data").expect("k3 backend-data"))
                .expect("JSON");
        d["VtepMAC"].as_str().expect("VtepMAC").to_string()
    };

    let pods: Vec<_> = hosts
        .iter()
        .map(|h| lab.pod(h, "p").expect("pod"))
        .collect();
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        lab.ping(&pods[a], pods[b].ip, SECS(20))
            .unwrap_or_else(|e| {
                panic!(
                    "{} → {}: {e:#}\n{}",
                    hosts[a].name,
                    hosts[b].name,
                    lab.agent_log(&hosts[a])
                )
            });
    }

    // weft status and weft doctor read the cluster as the agents do
    let kube_flags = [
        "--kube-subnet-mgr".to_string(),
        format!("--kubeconfig-file={}", kubeconfig.display()),
        format!("--net-config-path={}", conf.display()),
        format!("--subnet-file={}", lab.subnet_file(&hosts[0]).display()),
    ];
    let status = weft_json(&hosts[0], "status", &kube_flags, &["--iface=eth0"]);
    assert_eq!(status["source"], "kubernetes", "{status}");
    let leases = status["leases"].as_array().expect("leases");
    let nodes: Vec<&str> = leases.iter().filter_map(|l| l["node"].as_str()).collect();
    assert_eq!(nodes, ["k1", "k2", "k3"], "{status}");
    assert_eq!(leases[0]["this_host"], true, "{status}");
    assert_eq!(leases[1]["subnet"], "172.30.2.0/24", "{status}");
    assert_eq!(status["dataplane"]["in_sync"], true, "{status}");
    let doctor = weft_json(&hosts[0], "doctor", &kube_flags, &["--node-name=k1"]);
    let finding = |check: &str| {
        doctor
            .as_array()
            .and_then(|f| f.iter().find(|f| f["check"] == check))
            .cloned()
            .unwrap_or_else(|| panic!("no {check} finding: {doctor}"))
    };
    let k = finding("kubernetes");
    assert_eq!(k["severity"], "ok", "{k}");
    assert!(
        k["message"]
            .as_str()
            .is_some_and(|m| m.contains("Node k1 holds lease 172.30.1.0-24")),
        "{k}"
    );
    let f = finding("subnet-file");
    assert_eq!(f["severity"], "ok", "{f}");
    let stranger = weft_json(&hosts[0], "doctor", &kube_flags, &["--node-name=k9"]);
    let k9 = stranger
        .as_array()
        .and_then(|f| f.iter().find(|f| f["check"] == "kubernetes"))
        .cloned()
        .expect("kubernetes finding");
    assert_eq!(k9["severity"], "error", "{k9}");
    assert!(
        k9["message"]
            .as_str()
            .is_some_and(|m| m.contains("there is no Node k9")),
        "{k9}"
    );

    // an operator moves k3's public address: k3 republishes, peers follow
    let moved = Ipv4Addr::new(
        hosts[2].ip.octets()[0],
        hosts[2].ip.octets()[1],
        hosts[2].ip.octets()[2],
        113,
    );
    overwrite_public_ip(&api, &hosts[2], &moved.to_string());
    eventually(
        SECS(20),
        "k1's FDB entry for k3 at the overwritten address",
        || {
            (fdb_dst(&lab, &hosts[0], &k3_mac).as_deref() == Some(moved.to_string().as_str()))
                .then_some(())
        },
    );
    assert_eq!(
        annotation(&node_json(&api, "k3"), "public-ip"),
        Some(moved.to_string())
    );
    lab.ping(&pods[0], pods[2].ip, SECS(20))
        .expect("k1 → k3 over the new address");

    // the API server away: the data path keeps working; back: resync
    api.stop();
    std::thread::sleep(SECS(3));
    lab.ping(&pods[0], pods[1].ip, SECS(10))
        .expect("k1 → k2 without the API server");
    api.start().expect("API server back");
    api.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: ghost\n  annotations:\n    {PREFIX}/kube-subnet-manager: \"true\"\n    {PREFIX}/backend-type: vxlan\n    {PREFIX}/backend-data: '{{\"VNI\":1,\"VtepMAC\":\"0e:00:00:00:09:09\"}}'\n    {PREFIX}/public-ip: 198.18.250.9\nspec:\n  podCIDR: 172.30.9.0/24\n"
    ))
    .expect("ghost Node");
    eventually(
        SECS(30),
        "a Node added after the restart routed on k1",
        || routes_to(&lab, &hosts[0], "172.30.9.0/24").then_some(()),
    );

    // a deleted Node is unrouted everywhere (its own agent exits)
    api.kubectl(&["delete", "node", "k2"]).expect("delete");
    for h in [&hosts[0], &hosts[2]] {
        eventually(SECS(20), "k2's subnet unrouted", || {
            (!routes_to(&lab, h, "172.30.2.0/24")).then_some(())
        });
    }
    let code = (0..100).find_map(|_| {
        let code = lab.agent(&hosts[1]).ok()?.exit_code();
        if code.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
        code
    });
    assert!(
        code.is_some_and(|c| c != 0),
        "k2's agent still runs:\n{}",
        lab.agent_log(&hosts[1])
    );
    assert!(
        lab.agent_log(&hosts[1]).contains("Node k2 was deleted"),
        "{}",
        lab.agent_log(&hosts[1])
    );
}

#[test]
fn bad_input_is_one_line_naming_the_field() {
    let (mut lab, api) = lab_with_api("wkb");
    let admin = api.admin_kubeconfig().expect("admin");
    let conf = net_conf(&lab, "vxlan");
    let h = lab.host("b1", 11).expect("host");

    // a Node with no annotations at all, and no podCIDR yet: wait and say so
    api.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: b1\n")
        .expect("node");
    start_weft(&mut lab, &h, &admin, &conf);
    eventually(SECS(20), "the wait is reported", || {
        lab.agent_log(&h)
            .contains("has no spec.podCIDR yet")
            .then_some(())
    });
    api.kubectl(&[
        "patch",
        "node",
        "b1",
        "-p",
        r#"{"spec":{"podCIDR":"172.30.4.0/24","podCIDRs":["172.30.4.0/24"]}}"#,
    ])
    .expect("podCIDR");
    let env = wait_env(&mut lab, &h);
    assert_eq!(
        env.subnet.map(|s| s.to_string()).as_deref(),
        Some("172.30.4.1/24")
    );
    lab.stop_agent(&h, false);

    // the node's name from the agent's own pod (POD_NAME, POD_NAMESPACE),
    // for deployments that do not set NODE_NAME
    api.kubectl(&["create", "serviceaccount", "default", "-n", "default"])
        .expect("the namespace's default ServiceAccount (no controller-manager here)");
    api.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent-b1\n  namespace: default\nspec:\n  nodeName: b1\n  automountServiceAccountToken: false\n  containers:\n  - name: agent\n    image: weft\n")
        .expect("pod");
    std::fs::remove_file(lab.subnet_file(&h)).expect("old subnet file");
    let mut args = vec!["agent".to_string()];
    args.extend(kube_args(&lab, &h, &admin, &conf));
    let pod_env = [
        ("POD_NAME".to_string(), "agent-b1".to_string()),
        ("POD_NAMESPACE".to_string(), "default".to_string()),
    ];
    lab.start_agent_with(&h, WEFT, &args, &pod_env)
        .expect("weft agent");
    let env = wait_env(&mut lab, &h);
    assert_eq!(
        env.subnet.map(|s| s.to_string()).as_deref(),
        Some("172.30.4.1/24"),
        "{}",
        lab.agent_log(&h)
    );
    lab.stop_agent(&h, false);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &h.ns, WEFT])
        .args(&args)
        .env_remove("NODE_NAME")
        .env("POD_NAME", "../nodes/b1")
        .env("POD_NAMESPACE", "default")
        .output()
        .expect("weft agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("POD_NAME") && err.trim().lines().count() == 1,
        "{err}"
    );

    // a podCIDR outside the network: one clear error, non-zero exit
    create_node_outside(&api);
    let h2 = lab.host("b2", 12).expect("host");
    start_weft(&mut lab, &h2, &admin, &conf);
    let code = eventually(SECS(20), "the agent exits", || {
        lab.agent(&h2).ok()?.exit_code()
    });
    assert_ne!(code, 0);
    let log = lab.agent_log(&h2);
    assert!(
        log.contains("10.99.0.0/24") && log.contains("outside the network 172.30.0.0/16"),
        "{log}"
    );
    assert!(!routes_to(&lab, &h2, "172.30.4.0/24"), "nothing programmed");

    // a bad annotation prefix: refused before anything is touched
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &h2.ns,
            WEFT,
            "agent",
            "-kube-subnet-mgr",
            "-kube-annotation-prefix=a/b/c",
        ])
        .output()
        .expect("weft agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-kube-annotation-prefix") && err.trim().lines().count() == 1,
        "{err}"
    );
}

fn create_node_outside(api: &ApiServer) {
    api.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: b2\nspec:\n  podCIDR: 10.99.0.0/24\n",
    )
    .expect("node b2");
}

/// weft on `w1` and `w2`, upstream flanneld on `f`, one API server.
fn mixed(backend: &str, tag: &str) {
    let flanneld = upstream_flanneld().expect("upstream flanneld (scripts/upstream.sh flannel)");
    let flanneld = flanneld.display().to_string();
    let (mut lab, api) = lab_with_api(tag);
    let admin = api.admin_kubeconfig().expect("admin");
    let conf = net_conf(&lab, backend);
    let w1 = lab.host("w1", 11).expect("host");
    let f = lab.host("f", 12).expect("host");
    let w2 = lab.host("w2", 13).expect("host");
    for (h, third) in [(&w1, 1), (&f, 2), (&w2, 3)] {
        create_node(&api, &h.name, third);
    }
    start_weft(&mut lab, &w1, &admin, &conf);
    start_weft(&mut lab, &w2, &admin, &conf);
    let args = kube_args(&lab, &f, &admin, &conf);
    let env = [("NODE_NAME".to_string(), "f".to_string())];
    lab.start_agent_with(&f, &flanneld, &args, &env)
        .expect("flanneld");
    let envs: Vec<SubnetEnv> = [&w1, &f, &w2]
        .iter()
        .map(|h| wait_env(&mut lab, h))
        .collect();
    let keys = |h: &Host| -> Vec<String> {
        std::fs::read_to_string(lab.subnet_file(h))
            .expect("subnet file")
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    assert_eq!(keys(&w1), keys(&f), "{backend}: subnet file variables");
    assert_eq!(envs[0].network, envs[1].network);
    assert_eq!(envs[0].mtu, envs[1].mtu, "{backend}: MTU");
    assert_eq!(envs[0].ipmasq, envs[1].ipmasq);

    // each kind reads the other's annotations
    let pods: Vec<_> = [&w1, &f, &w2]
        .iter()
        .map(|h| lab.pod(h, "p").expect("pod"))
        .collect();
    for (a, b) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
        lab.ping(&pods[a], pods[b].ip, SECS(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{backend}: {} → {}: {e:#}\nflanneld:\n{}",
                    pods[a].host,
                    pods[b].host,
                    lab.agent_log(&f)
                )
            });
    }
    // a weft Node deleted: flanneld unroutes it
    lab.stop_agent(&w2, false);
    api.kubectl(&["delete", "node", "w2"]).expect("delete w2");
    eventually(SECS(20), "flanneld unroutes w2", || {
        (!routes_to(&lab, &f, "172.30.3.0/24")).then_some(())
    });
    // flanneld's Node deleted: weft unroutes it
    lab.stop_agent(&f, false);
    api.kubectl(&["delete", "node", "f"]).expect("delete f");
    eventually(SECS(20), "weft unroutes f", || {
        (!routes_to(&lab, &w1, "172.30.2.0/24")).then_some(())
    });
}

#[test]
fn weft_and_flanneld_share_a_kube_vxlan_cluster() {
    mixed("vxlan", "wkmv");
}

#[test]
fn weft_and_flanneld_share_a_kube_host_gw_cluster() {
    mixed("host-gw", "wkmh");
}

/// The objects of a manifest as the API server defaults them
/// (`kubectl apply --dry-run=server -o json`), by "Kind/name".
fn served_objects(
    api: &ApiServer,
    manifest: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = api
        .kubectl(&["apply", "--dry-run=server", "-o", "json", "-f", manifest])
        .unwrap_or_else(|e| panic!("server-side dry run of {manifest}: {e:#}"));
    let list: serde_json::Value = serde_json::from_str(&out).expect("kubectl's JSON");
    let items = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![list]);
    items
        .into_iter()
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            );
            (key, o)
        })
        .collect()
}

/// `(name, mountPath)` of a container's volume mounts, sorted.
fn mounts(container: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["mountPath"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// weft's DaemonSet manifest is a drop-in for kube-flannel.yml of
/// v0.28.10 (scripts/upstream.sh keeps it beside the binary): both are
/// accepted by the API server, and ours has the same objects, the same
/// ConfigMap (keys and contents), the same RBAC rules, the same host
/// volumes mounted at the same paths, init containers doing the same jobs
/// on the same mounts, and the same flags, port, probes, environment and
/// security context on the agent's container.
#[test]
fn manifest_is_a_drop_in_for_kube_flannel_v0_28() {
    let upstream = upstream_flanneld()
        .expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)")
        .with_file_name("kube-flannel.yml");
    let upstream = upstream.display().to_string();
    let (_lab, api) = lab_with_api("wkm"); // the lab lives as long as the test
    api.kubectl(&["create", "namespace", "kube-flannel"])
        .expect("namespace");
    let theirs = served_objects(&api, &upstream);
    let ours = served_objects(&api, &manifest());
    let names = |m: &std::collections::BTreeMap<String, serde_json::Value>| {
        m.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&theirs), "the same objects");
    let both = |key: &str| (&ours[key], &theirs[key]);

    let (o, t) = both("ConfigMap/kube-flannel-cfg");
    assert_eq!(o["data"], t["data"], "the ConfigMap's keys and contents");
    let (o, t) = both("ClusterRole/flannel");
    let rules = |r: &serde_json::Value| {
        let mut v: Vec<String> = r["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(rules(o), rules(t), "RBAC rules");
    let (o, t) = both("ClusterRoleBinding/flannel");
    assert_eq!(o["subjects"], t["subjects"]);
    assert_eq!(o["roleRef"], t["roleRef"]);

    let (o, t) = both("DaemonSet/kube-flannel-ds");
    assert_eq!(o["metadata"]["namespace"], t["metadata"]["namespace"]);
    let (po, pt) = (
        &o["spec"]["template"]["spec"],
        &t["spec"]["template"]["spec"],
    );
    for field in [
        "hostNetwork",
        "priorityClassName",
        "tolerations",
        "serviceAccountName",
        "affinity",
        "volumes",
    ] {
        assert_eq!(po[field], pt[field], "pod spec {field}");
    }
    let inits = |p: &serde_json::Value| {
        p["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["name"].as_str().unwrap_or("").to_string(), mounts(c)))
            .collect::<Vec<_>>()
    };
    assert_eq!(inits(po), inits(pt), "init containers and their mounts");
    let (co, ct) = (&po["containers"][0], &pt["containers"][0]);
    assert_eq!(co["name"], ct["name"]);
    assert_eq!(mounts(co), mounts(ct), "the agent's mounts");
    for field in [
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "resources",
    ] {
        assert_eq!(co[field], ct[field], "the agent's {field}");
    }
    let words = |c: &serde_json::Value| -> Vec<String> {
        ["command", "args"]
            .iter()
            .flat_map(|k| c[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect()
    };
    let ours_words = words(co);
    for flag in words(ct).iter().filter(|w| w.starts_with("--")) {
        assert!(ours_words.contains(flag), "flag {flag} in {ours_words:?}");
    }
    let env_names = |c: &serde_json::Value| -> std::collections::BTreeSet<String> {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    };
    let missing: Vec<String> = env_names(ct).difference(&env_names(co)).cloned().collect();
    assert!(missing.is_empty(), "environment missing: {missing:?}");
}

/// Kubernetes mode on wireguard: three weft nodes on the manifest's role,
/// each Node's annotations carrying its WireGuard lease, pods on every
/// node reaching the others, and the underlay carrying nothing of theirs
/// in clear (a capture on one node).
#[test]
fn three_weft_nodes_on_wireguard() {
    let (mut lab, api) = lab_with_api("wkw");
    api.kubectl(&["create", "namespace", "kube-flannel"])
        .expect("namespace");
    api.kubectl(&["apply", "-f", &manifest()]).expect("apply");
    let kubeconfig = service_account_kubeconfig(&lab, &api);
    let conf = net_conf(&lab, "wireguard");
    let mut hosts = Vec::new();
    for i in 1..=3u8 {
        let h = lab.host(&format!("k{i}"), 10 + i).expect("host");
        create_node(&api, &h.name, i);
        let mut args = vec!["agent".to_string()];
        args.extend(kube_args(&lab, &h, &kubeconfig, &conf));
        args.push(format!(
            "--wireguard-socket-dir={}",
            lab.dir().join(&h.name).join("wg").display()
        ));
        let env = [
            ("NODE_NAME".to_string(), h.name.clone()),
            (
                "WIREGUARD_KEY_FILE".to_string(),
                lab.dir().join(&h.name).join("wgkey").display().to_string(),
            ),
        ];
        lab.start_agent_with(&h, WEFT, &args, &env)
            .expect("weft agent");
        hosts.push(h);
    }
    for h in &hosts {
        let env = wait_env(&mut lab, h);
        assert_eq!(env.mtu, Some(1420), "underlay 1500 - 80");
    }
    let node = eventually(SECS(20), "k1's wireguard lease annotations", || {
        let n = node_json(&api, "k1");
        (annotation(&n, "backend-type").as_deref() == Some("wireguard")).then_some(n)
    });
    let data: serde_json::Value =
        serde_json::from_str(&annotation(&node, "backend-data").expect("backend-data"))
            .expect("JSON");
    assert_eq!(data["Port"], 51820, "{data}");
    assert_eq!(
        data["PublicKey"].as_str().map(str::len),
        Some(44),
        "a base64 key: {data}"
    );
    let pods: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| lab.pod(h, &format!("p{i}")).expect("pod"))
        .collect();
    let cap = weft_lab::Capture::start(&lab, &hosts[0], "eth0", "underlay").expect("tcpdump");
    for (i, a) in pods.iter().enumerate() {
        for b in pods.iter().skip(i + 1) {
            lab.ping(a, b.ip, SECS(15))
                .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", a.ip, b.ip));
            lab.ping(b, a.ip, SECS(15))
                .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", b.ip, a.ip));
        }
    }
    weft_lab::marked_ping(&pods[0], &pods[1]).expect("marked ping");
    cap.stop().assert_wireguard_only(10);
}

/// An operator's `public-ip-overwrite` through a reboot of the node (the
/// agent killed, its vxlan device and subnet file gone, the agent started
/// again), on a weft node and on a flanneld v0.28.10 node in one cluster
/// (the annotation set, then the agent restarted, as flannel documents):
/// the Node's `public-ip` stays the overwritten address and a third node
/// keeps reaching its pods through it.
#[test]
fn public_ip_overwrite_survives_a_reboot_as_with_flanneld() {
    let flanneld = upstream_flanneld().expect("upstream flanneld (scripts/upstream.sh flannel)");
    let flanneld = flanneld.display().to_string();
    let (mut lab, api) = lab_with_api("wkp");
    let admin = api.admin_kubeconfig().expect("admin");
    let conf = net_conf(&lab, "vxlan");
    let o = lab.host("o", 11).expect("host");
    let w = lab.host("w", 12).expect("host");
    let f = lab.host("f", 13).expect("host");
    for (h, third) in [(&o, 1), (&w, 2), (&f, 3)] {
        create_node(&api, &h.name, third);
    }
    let start = |lab: &mut Lab, h: &Host| {
        if h.name == "f" {
            let args = kube_args(lab, h, &admin, &conf);
            let env = [("NODE_NAME".to_string(), "f".to_string())];
            lab.start_agent_with(h, &flanneld, &args, &env)
                .expect("flanneld");
        } else {
            start_weft(lab, h, &admin, &conf);
        }
    };
    for h in [&o, &w, &f] {
        start(&mut lab, h);
        wait_env(&mut lab, h);
    }
    let observer_pod = lab.pod(&o, "p").expect("pod");
    for h in [&w, &f] {
        let who = if h.name == "f" {
            "flanneld v0.28.10"
        } else {
            "weft"
        };
        let moved = format!("198.18.0.{}", 100 + h.ip.octets()[3]);
        overwrite_public_ip(&api, h, &moved);
        // flanneld reads the annotation when it starts (weft follows it
        // live too): restart the agent as flannel's docs say
        lab.stop_agent(h, false);
        start(&mut lab, h);
        let public = |api: &ApiServer| annotation(&node_json(api, &h.name), "public-ip");
        eventually(SECS(30), &format!("{who}: public-ip {moved}"), || {
            (public(&api).as_deref() == Some(moved.as_str())).then_some(())
        });
        let pod = lab.pod(h, "p").expect("pod");
        lab.ping(&observer_pod, pod.ip, SECS(20))
            .unwrap_or_else(|e| panic!("{who}: before the reboot: {e:#}"));

        // the reboot
        lab.stop_agent(h, true);
        let mut nl = lab.netlink(h).expect("netlink");
        if let Some(dev) = weft_kernel::link_by_name(&mut nl, "flannel.1").expect("links") {
            weft_kernel::delete_link(&mut nl, dev.index).expect("delete flannel.1");
        }
        std::fs::remove_file(lab.subnet_file(h)).expect("subnet file");
        start(&mut lab, h);
        wait_env(&mut lab, h);
        let mac = eventually(SECS(20), &format!("{who}: flannel.1 again"), || {
            weft_kernel::link_by_name(&mut nl, "flannel.1")
                .ok()
                .flatten()
                .and_then(|l| l.mac)
        })
        .to_string();
        eventually(
            SECS(30),
            &format!("{who}: the observer's FDB entry"),
            || (fdb_dst(&lab, &o, &mac).as_deref() == Some(moved.as_str())).then_some(()),
        );
        let after = public(&api);
        eprintln!("{who}: public-ip after a reboot: {after:?} (overwrite {moved})");
        assert_eq!(after.as_deref(), Some(moved.as_str()), "{who}");
        lab.ping(&observer_pod, pod.ip, SECS(20))
            .unwrap_or_else(|e| panic!("{who}: after the reboot: {e:#}"));
    }
}

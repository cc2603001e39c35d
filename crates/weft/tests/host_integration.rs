//! Host integration end to end: docker options, the flannel CNI plugin
//! driven like a container runtime (env + stdin) with Debian's real CNI
//! plugins inside network namespaces, and the installed systemd units.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use weft_lab::{sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const CNI_PATH: &str = "/usr/lib/cni";
const ARTICLE_ENV: &str = "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.46.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

fn lab() -> Lab {
    Lab::new("wth", Path::new(WEFT)).expect("lab: these tests need root")
}

/// A link to the weft binary under another name (argv[0] dispatch).
fn alias(lab: &Lab, name: &str) -> PathBuf {
    let p = lab.dir().join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(WEFT, &p).expect("symlink");
    }
    p
}

fn run_in(ns: &str, program: &Path, args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

// ---------------------------------------------------------------- docker

#[test]
fn docker_opts_matches_the_script_and_refuses_bad_input() {
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let script = alias(&lab, "mk-docker-opts.sh");
    let subnet = lab.dir().join("subnet.env");
    let out = lab.dir().join("docker_opts.env");
    std::fs::write(&subnet, ARTICLE_ENV).expect("write");
    let f = subnet.display().to_string();
    let d = out.display().to_string();
    let opts = |args: &[&str], env: &[(&str, String)]| run_in(&h.ns, &script, args, env, b"");

    let o = opts(&["-f", &f, "-d", &d], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        "DOCKER_OPT_BIP=\"--bip=172.30.46.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=true\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\nDOCKER_OPTS=\" --bip=172.30.46.1/24 --ip-masq=true --mtu=1450\"\n"
    );
    // the article's unit: -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker, combined only with -c
    let o = opts(
        &["-f", &f, "-d", &d, "-c", "-k", "DOCKER_NETWORK_OPTIONS"],
        &[],
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        "DOCKER_NETWORK_OPTIONS=\" --bip=172.30.46.1/24 --ip-masq=true --mtu=1450\"\n"
    );
    // -i only, -m, and a value already in the environment kept in front
    let o = opts(
        &["-f", &f, "-d", &d, "-m"],
        &[("DOCKER_OPTS", "--debug".into())],
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        "DOCKER_OPT_BIP=\"--bip=172.30.46.1/24\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\nDOCKER_OPTS=\"--debug --bip=172.30.46.1/24 --mtu=1450\"\n"
    );
    let good = std::fs::read_to_string(&out).expect("out");

    // missing subnet file: error, old output untouched
    let o = opts(&["-f", "/nonexistent/subnet.env", "-d", &d], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/subnet.env"));
    assert_eq!(std::fs::read_to_string(&out).expect("out"), good);
    // malformed subnet file: the line and key are named
    std::fs::write(&subnet, "FLANNEL_SUBNET=172.30.46.1/24\nFLANNEL_MTU=lots\n").expect("write");
    let o = opts(&["-f", &f, "-d", &d], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2") && err.contains("FLANNEL_MTU"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("out"), good);
    // unknown option: usage, exit 1 like the script
    assert_eq!(opts(&["-x"], &[]).status.code(), Some(1));
    // the subnet already routed through a gateway: refused
    std::fs::write(&subnet, ARTICLE_ENV).expect("write");
    sh(
        "ip",
        &[
            "-n",
            &h.ns,
            "route",
            "add",
            "172.30.46.0/24",
            "via",
            "198.18.0.1",
        ],
    )
    .expect("route");
    let o = opts(&["-f", &f, "-d", &d], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already routed via 198.18.0.1"));
    assert_eq!(std::fs::read_to_string(&out).expect("out"), good);
}

// ---------------------------------------------------------------- CNI

struct Cni<'a> {
    lab: &'a Lab,
    plugin: PathBuf,
}

impl Cni<'_> {
    fn conf(&self, host: &Host) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.lab.prefix,
            "type": "flannel",
            "subnetFile": self.lab.subnet_file(host),
            "dataDir": self.lab.dir().join(&host.name).join("cni-flannel"),
            "ipam": { "dataDir": self.lab.dir().join(&host.name).join("cni-ipam") },
            "delegate": { "hairpinMode": true, "isDefaultGateway": true },
        })
    }

    /// Runs `program` as a CNI plugin in the host's namespace.
    fn call(&self, host: &Host, program: &Path, c: Call, conf: &Value) -> (i32, Value, String) {
        let env = [
            ("CNI_COMMAND", c.command.to_string()),
            ("CNI_CONTAINERID", c.id.to_string()),
            ("CNI_NETNS", format!("/run/netns/{}", c.pod_ns)),
            ("CNI_IFNAME", c.ifname.to_string()),
            ("CNI_PATH", CNI_PATH.to_string()),
        ];
        let o = run_in(&host.ns, program, &[], &env, conf.to_string().as_bytes());
        let stdout: Value = if o.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
                panic!(
                    "stdout not JSON ({e}): {}",
                    String::from_utf8_lossy(&o.stdout)
                )
            })
        };
        (
            o.status.code().unwrap_or(-1),
            stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn flannel(
        &self,
        host: &Host,
        command: &str,
        id: &str,
        pod_ns: &str,
        conf: &Value,
    ) -> (i32, Value, String) {
        let c = Call {
            command,
            id,
            pod_ns,
            ifname: "eth0",
        };
        self.call(host, &self.plugin, c, conf)
    }
}

/// One CNI invocation's CNI_COMMAND, CNI_CONTAINERID, netns and CNI_IFNAME.
#[derive(Clone, Copy)]
struct Call<'a> {
    command: &'a str,
    id: &'a str,
    pod_ns: &'a str,
    ifname: &'a str,
}

/// Runs loopback + flannel ADD for a pod namespace, like a runtime.
fn add_pod(cni: &Cni, host: &Host, id: &str, pod_ns: &str) -> (String, Value) {
    let pod_ns = pod_ns.to_string();
    let lo = cni.call(
        host,
        &Path::new(CNI_PATH).join("loopback"),
        Call {
            command: "ADD",
            id,
            pod_ns: &pod_ns,
            ifname: "lo",
        },
        &json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}),
    );
    assert_eq!(lo.0, 0, "loopback: {:?}", lo);
    let (code, result, stderr) = cni.flannel(host, "ADD", id, &pod_ns, &cni.conf(host));
    assert_eq!(code, 0, "ADD failed: {result} {stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    (pod_ns, result)
}

fn pod_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address");
    addr.split('/').next().expect("ip").to_string()
}

#[test]
fn cni_plugin_gives_pods_on_two_hosts_addresses_that_reach_each_other() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    let hosts: Vec<Host> = (0..2)
        .map(|i| lab.host(&format!("h{}", i + 1), 11 + i).expect("host"))
        .collect();
    for h in &hosts {
        lab.start_agent(h, &[]).expect("agent");
    }
    let envs: Vec<_> = hosts
        .iter()
        .map(|h| {
            lab.wait_subnet_env(h, Duration::from_secs(20))
                .expect("subnet")
        })
        .collect();
    let plugin = alias(&lab, "flannel");
    let pod_ns: Vec<String> = (0..2)
        .map(|i| lab.netns(&format!("c{i}")).expect("pod netns"))
        .collect();
    let cni = Cni { lab: &lab, plugin };
    let pods: Vec<(String, Value)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| add_pod(&cni, h, &format!("c{i}"), &pod_ns[i]))
        .collect();

    for (i, (_, result)) in pods.iter().enumerate() {
        let gw = envs[i].subnet.expect("subnet");
        let ip: std::net::Ipv4Addr = pod_ip(result).parse().expect("ip");
        assert!(gw.trunc().contains(&ip), "{ip} in node subnet {gw}");
        assert_eq!(
            ip,
            std::net::Ipv4Addr::from(u32::from(gw.network()) + 2),
            "first free address .2"
        );
        let routes = result["routes"].as_array().expect("routes");
        assert!(
            routes.iter().any(|r| r["dst"] == "172.30.0.0/16"),
            "route to the cluster network: {routes:?}"
        );
        // the pod's eth0 has the node's MTU
        let link = sh("ip", &["-n", &pods[i].0, "-o", "link", "show", "eth0"]).expect("link");
        assert!(String::from_utf8_lossy(&link.stdout).contains("mtu 1450"));
    }
    // the delegate conf is saved privately, exactly as delegated
    let data = lab.dir().join("h1/cni-flannel");
    assert_eq!(
        std::fs::metadata(&data).expect("dir").permissions().mode() & 0o777,
        0o700
    );
    let saved = data.join("c0");
    assert_eq!(
        std::fs::metadata(&saved)
            .expect("file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let saved_conf: Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("read")).expect("json");
    assert_eq!(saved_conf["type"], "bridge");
    assert_eq!(
        saved_conf["ipam"]["ranges"][0][0]["subnet"],
        envs[0].subnet.expect("s").trunc().to_string()
    );
    assert_eq!(saved_conf["mtu"], 1450);
    assert_eq!(saved_conf["ipMasq"], true);

    // pods on the two hosts reach each other over the vxlan overlay
    let (a, b) = (&pods[0], &pods[1]);
    let ping = |from: &str, to: &str| {
        sh(
            "ip",
            &["netns", "exec", from, "ping", "-c", "1", "-W", "2", to],
        )
    };
    ping(&a.0, &pod_ip(&b.1)).expect("pod on h1 reaches pod on h2");
    ping(&b.0, &pod_ip(&a.1)).expect("pod on h2 reaches pod on h1");

    // portmap chained after flannel, as the example conflist does
    let mut pm = json!({"cniVersion": "1.0.0", "name": lab.prefix, "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    pm["prevResult"] = a.1.clone();
    let (code, _, err) = cni.call(
        &hosts[0],
        &Path::new(CNI_PATH).join("portmap"),
        Call {
            command: "ADD",
            id: "c0",
            pod_ns: &a.0,
            ifname: "eth0",
        },
        &pm,
    );
    assert_eq!(code, 0, "portmap: {err}");
    let nat = sh(
        "ip",
        &["netns", "exec", &hosts[0].ns, "iptables-save", "-t", "nat"],
    )
    .expect("iptables-save");
    assert!(
        String::from_utf8_lossy(&nat.stdout).contains("--dport 8080"),
        "hostPort rule installed"
    );

    // CHECK: fine as set up; reports drift once the pod lost its address
    let mut check_conf = cni.conf(&hosts[0]);
    check_conf["prevResult"] = a.1.clone();
    let (code, out, _) = cni.flannel(&hosts[0], "CHECK", "c0", &a.0, &check_conf);
    assert_eq!(code, 0, "CHECK of a healthy pod: {out}");
    // the node got another subnet (say, its lease was lost): the pod is stale
    let subnet_path = lab.subnet_file(&hosts[0]);
    let real = std::fs::read_to_string(&subnet_path).expect("subnet file");
    // another subnet than the one the agent drew at random
    let other = if envs[0].subnet.expect("s").trunc().to_string() == "172.30.99.0/24" {
        98
    } else {
        99
    };
    std::fs::write(
        &subnet_path,
        ARTICLE_ENV.replace("172.30.46.1", &format!("172.30.{other}.1")),
    )
    .expect("write");
    let (code, out, _) = cni.flannel(&hosts[0], "CHECK", "c0", &a.0, &check_conf);
    assert_eq!(code, 1, "{out}");
    assert!(
        out["msg"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("to 172.30.{other}.0/24")),
        "{out}"
    );
    std::fs::write(&subnet_path, real).expect("restore");
    let addr = a.1["ips"][0]["address"].as_str().expect("addr").to_string();
    sh("ip", &["-n", &a.0, "addr", "del", &addr, "dev", "eth0"]).expect("break the pod");
    let (code, out, _) = cni.flannel(&hosts[0], "CHECK", "c0", &a.0, &check_conf);
    assert_eq!(code, 1, "CHECK notices the missing address: {out}");
    assert!(out["code"].is_number() && out["msg"].is_string(), "{out}");

    // DEL releases the address; works without the subnet file; twice is fine
    let ipam_file = lab
        .dir()
        .join("h1/cni-ipam")
        .join(&lab.prefix)
        .join(pod_ip(&a.1));
    assert!(
        ipam_file.exists(),
        "host-local reserved {}",
        ipam_file.display()
    );
    std::fs::remove_file(lab.subnet_file(&hosts[0])).expect("rm subnet file");
    let (code, out, _) = cni.flannel(&hosts[0], "DEL", "c0", &a.0, &cni.conf(&hosts[0]));
    assert_eq!(code, 0, "DEL without the subnet file: {out}");
    assert!(!ipam_file.exists(), "address released");
    assert!(!saved.exists(), "saved conf removed");
    let (code, out, _) = cni.flannel(&hosts[0], "DEL", "c0", &a.0, &cni.conf(&hosts[0]));
    assert_eq!(code, 0, "second DEL: {out}");
}

#[test]
fn cni_errors_are_json_on_stdout_with_the_specs_codes() {
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let pod = lab.netns("p1").expect("pod netns");
    let cni = Cni {
        lab: &lab,
        plugin: alias(&lab, "flannel"),
    };
    let raw = |command: &str, stdin: &[u8]| {
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", "c1".to_string()),
            ("CNI_NETNS", format!("/run/netns/{pod}")),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", CNI_PATH.to_string()),
        ];
        let o = run_in(&h.ns, &cni.plugin, &[], &env, stdin);
        assert!(
            o.stderr.is_empty(),
            "nothing on stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        (o.status.code(), v)
    };
    // malformed config: decoding failure, code 6
    let (code, v) = raw("ADD", b"{not json");
    assert_eq!((code, v["code"].as_u64()), (Some(1), Some(6)), "{v}");
    assert!(v["msg"]
        .as_str()
        .unwrap_or("")
        .starts_with("error unmarshall network config"));
    // unsupported version: code 1
    let (code, v) = raw(
        "ADD",
        br#"{"cniVersion":"0.2.0","name":"n","type":"flannel"}"#,
    );
    assert_eq!((code, v["code"].as_u64()), (Some(1), Some(1)), "{v}");
    // missing subnet file: plugin error 999 naming the file
    let mut conf = cni.conf(&h);
    conf["subnetFile"] = json!("/nonexistent/subnet.env");
    let (code, v) = raw("ADD", conf.to_string().as_bytes());
    assert_eq!((code, v["code"].as_u64()), (Some(1), Some(999)), "{v}");
    assert!(v["msg"]
        .as_str()
        .unwrap_or("")
        .contains("/nonexistent/subnet.env"));
    // incomplete subnet file: the missing values are named
    let partial = lab.dir().join("partial.env");
    std::fs::write(&partial, "FLANNEL_SUBNET=172.30.46.1/24\n").expect("write");
    conf["subnetFile"] = json!(partial);
    let (_, v) = raw("ADD", conf.to_string().as_bytes());
    assert!(
        v["msg"]
            .as_str()
            .unwrap_or("")
            .contains("FLANNEL_NETWORK, FLANNEL_MTU, FLANNEL_IPMASQ"),
        "{v}"
    );
    // DEL of something never added is a success
    let (code, _) = raw("DEL", cni.conf(&h).to_string().as_bytes());
    assert_eq!(code, Some(0));
    // a container id that would escape the data directory is refused (code 4)
    let env = [
        ("CNI_COMMAND", "DEL".to_string()),
        ("CNI_CONTAINERID", "../../etc/x".to_string()),
    ];
    let o = run_in(
        &h.ns,
        &cni.plugin,
        &[],
        &env,
        cni.conf(&h).to_string().as_bytes(),
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["code"], 4);
    // VERSION
    let (code, v) = raw("VERSION", b"");
    assert_eq!(code, Some(0));
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );
    // unknown command: code 4
    let (_, v) = raw("FROB", b"{}");
    assert_eq!(v["code"], 4);
}

// ---------------------------------------------------------------- units

#[test]
fn install_lays_out_the_host_and_the_units_verify() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let o = Command::new(WEFT)
        .args(["install", "--root"])
        .arg(r)
        .output()
        .expect("install");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bin = r.join("usr/bin/weft");
    assert_eq!(
        std::fs::metadata(&bin).expect("weft").permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(r.join("usr/bin/flanneld")).expect("flanneld"),
        Path::new("weft")
    );
    assert_eq!(
        std::fs::read_link(r.join("usr/libexec/flannel/mk-docker-opts.sh")).expect("script"),
        Path::new("/usr/bin/weft")
    );
    assert_eq!(
        std::fs::read_link(r.join("opt/cni/bin/flannel")).expect("cni"),
        Path::new("/usr/bin/weft")
    );
    let conflist: Value = serde_json::from_slice(
        &std::fs::read(r.join("etc/cni/net.d/10-flannel.conflist")).expect("conflist"),
    )
    .expect("json");
    assert_eq!(conflist["plugins"][0]["type"], "flannel");
    assert_eq!(conflist["plugins"][1]["type"], "portmap");
    let sysconfig = std::fs::read_to_string(r.join("etc/sysconfig/flanneld")).expect("sysconfig");
    assert!(
        sysconfig.contains("FLANNEL_ETCD_ENDPOINTS=")
            && sysconfig.contains("FLANNEL_ETCD_PREFIX=")
            && sysconfig.contains("FLANNEL_OPTIONS=")
    );

    let unit =
        std::fs::read_to_string(r.join("etc/systemd/system/weft-agent.service")).expect("unit");
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("EnvironmentFile=/etc/sysconfig/flanneld"));
    assert!(unit.contains("ExecStart=/usr/bin/flanneld -etcd-endpoints=${FLANNEL_ETCD_ENDPOINTS} -etcd-prefix=${FLANNEL_ETCD_PREFIX} $FLANNEL_OPTIONS"));
    assert!(unit.contains(
        "ExecStartPost=/usr/bin/weft docker-opts -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker"
    ));
    // systemd itself checks the unit (pointed at the binary that exists here)
    let check_dir = tempfile::tempdir().expect("tempdir");
    let checked = check_dir.path().join("weft-agent.service");
    std::fs::write(
        &checked,
        unit.replace("/usr/bin/weft", WEFT)
            .replace("/usr/bin/flanneld", WEFT),
    )
    .expect("write");
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .expect("systemd-analyze (Debian's systemd) is required");
    assert!(
        v.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let dropin =
        std::fs::read_to_string(r.join("etc/systemd/system/docker.service.d/10-weft.conf"))
            .expect("drop-in");
    assert!(
        !dropin.lines().any(|l| l.starts_with("Requires=")),
        "an agent restart must not restart docker"
    );
    for line in [
        "Wants=weft-agent.service",
        "After=weft-agent.service",
        "EnvironmentFile=-/run/flannel/docker",
        "ExecStart=\n",
        "$DOCKER_NETWORK_OPTIONS",
    ] {
        assert!(dropin.contains(line), "drop-in has {line:?}");
    }

    // a second install keeps the operator's configuration
    std::fs::write(
        r.join("etc/sysconfig/flanneld"),
        "FLANNEL_ETCD_ENDPOINTS=mine\n",
    )
    .expect("edit");
    let o = Command::new(WEFT)
        .args(["install", "--root"])
        .arg(r)
        .output()
        .expect("install again");
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(r.join("etc/sysconfig/flanneld")).expect("kept"),
        "FLANNEL_ETCD_ENDPOINTS=mine\n"
    );

    // --agent-binary: flanneld becomes a copy of the agent-only binary
    // (replacing the link), still started by the same unit
    let agent = r.join("lean-flanneld");
    let stand_in = "#!/bin/sh\necho 'weft 0.1.0 (flanneld v0.21.5 compatible)'\n";
    std::fs::write(&agent, stand_in).expect("agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let install_with = |agent: &Path| {
        Command::new(WEFT)
            .args(["install", "--root"])
            .arg(r)
            .arg("--agent-binary")
            .arg(agent)
            .output()
            .expect("install with --agent-binary")
    };
    let o = install_with(&agent);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let installed = r.join("usr/bin/flanneld");
    assert!(!installed.symlink_metadata().expect("flanneld").is_symlink());
    assert_eq!(
        std::fs::read_to_string(&installed).expect("flanneld"),
        stand_in
    );
    assert_eq!(
        std::fs::metadata(&installed)
            .expect("mode")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // a missing file or one that is no weft agent is refused in one line,
    // and the installed flanneld stays as it was
    let not_agent = r.join("not-an-agent");
    std::fs::write(&not_agent, "#!/bin/sh\necho hello\n").expect("write");
    std::fs::set_permissions(&not_agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (bad, says) in [
        (
            Path::new("/nonexistent/flanneld"),
            "--agent-binary: running /nonexistent/flanneld -version",
        ),
        (
            not_agent.as_path(),
            "is not a weft agent (its -version printed \"hello\")",
        ),
    ] {
        let o = install_with(bad);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
        assert_eq!(
            std::fs::read_to_string(&installed).expect("flanneld kept"),
            stand_in
        );
    }
}

/// `weft agent --help` lists flanneld's flags (it is the agent's help, not
/// the subcommand wrapper's).
#[test]
fn agent_help_lists_the_agent_flags() {
    let out = std::process::Command::new(WEFT)
        .args(["agent", "--help"])
        .output()
        .expect("weft runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for flag in [
        "--etcd-endpoints",
        "--kube-subnet-mgr",
        "--iface",
        "--ip-masq",
        "--healthz-port",
    ] {
        assert!(text.contains(flag), "no {flag} in:\n{text}");
    }
}

/// The CNI plugin in weft's image (what the agent's DaemonSet copies onto
/// each host) is static: it answers in a root file system with no C
/// library at all, as on a host whose glibc is older than the build's.
#[test]
fn the_image_carries_a_static_cni_plugin_that_runs_without_a_c_library() {
    let image = std::env::var_os("WEFT_IMAGE").expect(
        "WEFT_IMAGE: weft's image archive (scripts/test.sh builds it with scripts/image.sh)",
    );
    let plugin = file_in_image(Path::new(&image), "usr/lib/weft/flannel")
        .expect("usr/lib/weft/flannel in weft's image");
    let root = tempfile::tempdir().expect("tmp");
    let path = root.path().join("flannel");
    std::fs::write(&path, plugin).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1);
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .arg("/flannel")
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("chroot (needs root)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).expect("VERSION answers JSON");
    assert!(v["supportedVersions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "0.3.1")));
}

/// The programs the DaemonSets start are in weft's image, and the proxy's
/// (`weft-proxy`, the proxy alone) is the build of this version: it
/// answers `--version` as `weft` does.
#[test]
fn the_image_carries_every_program_the_daemonsets_start() {
    let image = std::env::var_os("WEFT_IMAGE").expect(
        "WEFT_IMAGE: weft's image archive (scripts/test.sh builds it with scripts/image.sh)",
    );
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/kubernetes");
    let mut started = Vec::new();
    for file in ["weft-flannel.yml", "weft-proxy.yml"] {
        let text = std::fs::read_to_string(dist.join(file)).expect("manifest");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "command:" {
                let program = lines.next().expect("a command's program");
                started.push(program.trim().trim_start_matches("- ").to_string());
            }
        }
    }
    assert_eq!(started, ["/usr/bin/weft", "/usr/bin/weft-proxy"]);
    let dir = tempfile::tempdir().expect("tmp");
    for program in &started {
        let bytes = file_in_image(Path::new(&image), program.trim_start_matches('/'))
            .unwrap_or_else(|| panic!("{program} in weft's image"));
        let path = dir.path().join(program.rsplit('/').next().expect("name"));
        std::fs::write(&path, bytes).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let version = |name: &str| {
        let out = Command::new(dir.path().join(name))
            .arg("--version")
            .output()
            .expect("run the image's program");
        assert!(out.status.success(), "{name} --version");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let weft = version("weft");
    assert_eq!(
        version("weft-proxy"),
        weft.replacen("weft", "weft-proxy", 1)
    );
    assert!(
        weft.starts_with(&format!("weft {}", env!("CARGO_PKG_VERSION"))),
        "{weft}"
    );
}

/// A file of an image archive (`ctr images import` / `docker load`
/// format): found in its layers, each an uncompressed tar.
fn file_in_image(archive: &Path, wanted: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut outer = tar::Archive::new(std::fs::File::open(archive).ok()?);
    for entry in outer.entries().ok()? {
        let mut entry = entry.ok()?;
        let name = entry.path().ok()?.to_string_lossy().into_owned();
        if !name.starts_with("blobs/sha256/") {
            continue;
        }
        let mut blob = Vec::new();
        entry.read_to_end(&mut blob).ok()?;
        let mut layer = tar::Archive::new(blob.as_slice());
        let Ok(entries) = layer.entries() else {
            continue;
        };
        for inner in entries.flatten() {
            let mut inner = inner;
            let path = inner.path().map(|p| p.to_string_lossy().into_owned());
            if path.is_ok_and(|p| p.trim_start_matches("./") == wanted) {
                let mut bytes = Vec::new();
                inner.read_to_end(&mut bytes).ok()?;
                return Some(bytes);
            }
        }
    }
    None
}

/// The lean agent built statically (scripts/static.sh) starts in a root
/// file system with no C library, as on a host older than the build.
#[test]
fn the_static_lean_agent_runs_without_a_c_library() {
    let dir = std::env::var_os("WEFT_STATIC_DIR")
        .expect("WEFT_STATIC_DIR: scripts/static.sh's output (scripts/test.sh sets it)");
    let root = tempfile::tempdir().expect("tmp");
    let path = root.path().join("flanneld");
    std::fs::copy(Path::new(&dir).join("flanneld"), &path).expect("copy the static flanneld");
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/flanneld", "--version"])
        .env_clear()
        .output()
        .expect("chroot (needs root)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("flanneld"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! weft and upstream flanneld hosts in one cluster: one etcd prefix, the
//! same flags, vxlan and host-gw with v0.28.10 (`scripts/upstream.sh
//! flannel`), vxlan with v0.26.7 too. Pods on each side reach the other's; a lease removed
//! while its owner is stopped is unrouted by the other side; the two
//! subnet files say the same things.

use std::path::Path;
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, upstream_flanneld, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn routes_to(lab: &Lab, host: &Host, subnet: &str) -> bool {
    lab.routes_to(host, subnet).expect("routes")
}

/// Deletes the lease of `subnet` from etcd.
fn del(lab: &Lab, subnet: &str) {
    lab.etcdctl(&[
        "del",
        &format!("{}/subnets/{}", lab.etcd_prefix(), subnet.replace('/', "-")),
    ])
    .expect("del");
}

fn subnet_of(env: &SubnetEnv) -> String {
    env.subnet.expect("FLANNEL_SUBNET").trunc().to_string()
}

/// The variable names of a subnet file, in order.
fn keys(lab: &Lab, host: &Host) -> Vec<String> {
    std::fs::read_to_string(lab.subnet_file(host))
        .expect("subnet file")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

/// A pod on each of `w` (weft) and `f` (flanneld) pinging the other.
fn pods_reach_each_other(lab: &mut Lab, w: &Host, f: &Host, what: &str) {
    let pw = lab.pod(w, "pw").expect("pod on the weft host");
    let pf = lab.pod(f, "pf").expect("pod on the flanneld host");
    lab.ping(&pw, pf.ip, SECS(10)).unwrap_or_else(|e| {
        panic!(
            "{what}: weft pod -> flanneld pod: {e:#}\n{}",
            lab.agent_log(f)
        )
    });
    lab.ping(&pf, pw.ip, SECS(10))
        .unwrap_or_else(|e| panic!("{what}: flanneld pod -> weft pod: {e:#}"));
}

/// Starts flanneld on `f` again and waits until it watches leases (its
/// routes outlive it, so they say nothing about its second start).
fn restart_flanneld(
    lab: &mut Lab,
    f: &Host,
    program: &str,
    args: &[String],
    env: &[(String, String)],
) {
    lab.start_agent_with(f, program, args, env)
        .expect("flanneld again");
    eventually(SECS(30), "flanneld back, watching leases", || {
        (lab.agent_log(f)
            .to_lowercase()
            .matches("watching for new subnet leases")
            .count()
            >= 2)
            .then_some(())
    });
}

fn mixed(backend: &str, flanneld: std::path::PathBuf) {
    let mut lab = Lab::new("wmx", Path::new(WEFT)).expect("lab: this test needs root");
    let (w, f, ew, ef) = mixed_pair(
        &mut lab,
        &format!(
            r#"{{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{{"Type":"{backend}"}}}}"#
        ),
        &flanneld,
    );
    let args = lab.flanneld_args(&f, &["-ip-masq"]).expect("args");
    let flanneld = flanneld.display().to_string();
    // the same variables, with the same network, MTU and masquerading
    assert_eq!(ew.network, ef.network);
    assert_eq!(ew.mtu, ef.mtu, "{backend}: MTU");
    let (ws, fs) = (subnet_of(&ew), subnet_of(&ef));
    eventually(SECS(20), "each side routes to the other's subnet", || {
        (routes_to(&lab, &w, &fs) && routes_to(&lab, &f, &ws)).then_some(())
    });
    if backend == "vxlan" {
        // flannel issue 2152 (bad UDP checksums after NAT): v0.28.10 leaves
        // the device's TX checksum offload as the kernel sets it and
        // documents `ethtool -K flannel.1 tx-checksum-ip-generic off`;
        // weft does the same, and `weft doctor` warns
        assert_eq!(
            tx_checksum(&w),
            tx_checksum(&f),
            "flannel.1's tx-checksum-ip-generic"
        );
    }
    pods_reach_each_other(&mut lab, &w, &f, backend);

    // Each side unroutes a lease the other's owner no longer holds (the
    // owner is stopped first, or it would take its lease back).
    lab.stop_agent(&f, false);
    del(&lab, &fs);
    eventually(SECS(20), "weft unroutes flanneld's removed lease", || {
        (!routes_to(&lab, &w, &fs)).then_some(())
    });
    restart_flanneld(&mut lab, &f, &flanneld, &args, &[]);
    assert!(
        routes_to(&lab, &f, &ws),
        "{backend}: flanneld routes to weft's subnet"
    );
    lab.stop_agent(&w, false);
    del(&lab, &ws);
    let end = std::time::Instant::now() + SECS(20);
    while routes_to(&lab, &f, &ws) {
        assert!(
            std::time::Instant::now() < end,
            "{backend}: flanneld still routes to weft's removed lease {ws}:\n{}",
            lab.agent_log(&f)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ethtool -k flannel.1`'s tx-checksum-ip-generic line on `host`.
fn tx_checksum(host: &Host) -> String {
    let out = weft_lab::sh(
        "ip",
        &["netns", "exec", &host.ns, "ethtool", "-k", "flannel.1"],
    )
    .expect("ethtool (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.trim_start().starts_with("tx-checksum-ip-generic:"))
        .unwrap_or_else(|| panic!("no tx-checksum-ip-generic in: {text}"))
        .trim()
        .to_string()
}

fn flanneld() -> std::path::PathBuf {
    upstream_flanneld().expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)")
}

#[test]
fn weft_and_flanneld_share_a_vxlan_cluster() {
    mixed("vxlan", flanneld());
}

#[test]
fn weft_and_flanneld_share_a_host_gw_cluster() {
    mixed("host-gw", flanneld());
}

/// A cluster part-way through an upgrade of flannel: hosts still on
/// v0.26.7 beside weft.
#[test]
fn weft_and_flanneld_v0_26_share_a_vxlan_cluster() {
    let old = weft_lab::upstream_flanneld_v026()
        .expect("upstream flanneld v0.26.7 (scripts/upstream.sh flannel-v0.26)");
    mixed("vxlan", old);
}

fn blackholes(host: &Host) -> String {
    let out = weft_lab::sh(
        "ip",
        &["-n", &host.ns, "route", "show", "type", "blackhole"],
    )
    .expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// flannel v0.28's `-ip-blackhole-route`, on weft and on flanneld in one
/// cluster: each host gets a blackhole route for its own subnet (hosts
/// without pods, so no bridge route holds the range).
#[test]
fn blackhole_routes_as_flanneld_v0_28_makes_them() {
    let flanneld = flanneld().display().to_string();
    let mut lab = Lab::new("wbh", Path::new(WEFT)).expect("lab: this test needs root");
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    let w = lab.host("weft", 11).expect("weft host");
    let f = lab.host("flanneld", 12).expect("flanneld host");
    let extra = ["-ip-blackhole-route", "-iptables-resync=1"];
    lab.start_agent(&w, &extra).expect("weft agent");
    let args = lab.flanneld_args(&f, &extra).expect("args");
    lab.start_agent_with(&f, &flanneld, &args, &[])
        .expect("flanneld");
    for h in [&w, &f] {
        let env = lab.wait_subnet_env(h, SECS(30)).expect("subnet file");
        let own = subnet_of(&env);
        eventually(SECS(15), &format!("{}: blackhole {own}", h.name), || {
            blackholes(h)
                .contains(&format!("blackhole {own}"))
                .then_some(())
        });
    }
}

/// The lease value stored for `subnet`.
fn lease_value(lab: &Lab, subnet: &str) -> String {
    let key = format!("{}/subnets/{}", lab.etcd_prefix(), subnet.replace('/', "-"));
    let out = lab
        .etcdctl(&["get", "--print-value-only", &key])
        .expect("get lease");
    out.trim().to_string()
}

/// A user's extension scripts: routes like host-gw, and a log line per
/// run with the variables and stdin each command received.
fn extension_scripts(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    };
    let log = dir.join("$WEFT_TEST_TAG.log").display().to_string();
    let add = script(
        "add.sh",
        &format!(
            "read data\necho \"add $1 $2 $data\" >> \"{log}\"\nip route replace \"$1\" via \"$2\""
        ),
    );
    let remove = script(
        "remove.sh",
        &format!("read data\necho \"remove $1 $2 $data\" >> \"{log}\"\nip route del \"$1\""),
    );
    let post = script(
        "post.sh",
        &format!(
            "echo \"post NETWORK=$NETWORK SUBNET=$SUBNET IPV6SUBNET=$IPV6SUBNET PUBLIC_IP=$PUBLIC_IP PUBLIC_IPV6=$PUBLIC_IPV6\" >> \"{log}\""
        ),
    );
    // PreStartupCommand's output is the lease's BackendData; `$WEFT_TEST_TAG`
    // is expanded from the agent's environment, without a shell
    format!(
        r#"{{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{{"Type":"extension",
            "PreStartupCommand":"/bin/echo tag=$WEFT_TEST_TAG <&>",
            "PostStartupCommand":"{post}",
            "SubnetAddCommand":"{add} $SUBNET ${{PUBLIC_IP}}",
            "SubnetRemoveCommand":"{remove} $SUBNET $PUBLIC_IP"}}}}"#
    )
}

/// The lines of one side's command log.
fn command_log(dir: &Path, tag: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{tag}.log"))).unwrap_or_default()
}

/// flannel's extension backend on weft and flanneld v0.28.10 in one
/// cluster: the same lease value, PostStartupCommand told the same
/// things, each side's SubnetAddCommand run for the other's lease with its
/// BackendData on stdin (the routes it adds carry pod traffic), and
/// SubnetRemoveCommand run when a lease goes.
#[test]
fn weft_and_flanneld_share_an_extension_cluster() {
    let flanneld = flanneld().display().to_string();
    let mut lab = Lab::new("wext", Path::new(WEFT)).expect("lab: this test needs root");
    lab.start_etcd().expect("etcd");
    let config = extension_scripts(lab.dir());
    lab.put_config(&config).expect("config");
    let w = lab.host("weft", 11).expect("weft host");
    let f = lab.host("flanneld", 12).expect("flanneld host");
    let tag = |t: &str| vec![("WEFT_TEST_TAG".to_string(), t.to_string())];
    let wargs = lab.agent_args(&w, &[]).expect("args");
    let weft = WEFT.to_string();
    lab.start_agent_with(&w, &weft, &wargs, &tag("weft"))
        .expect("weft agent");
    let fargs = lab.flanneld_args(&f, &[]).expect("args");
    lab.start_agent_with(&f, &flanneld, &fargs, &tag("flanneld"))
        .expect("flanneld");
    let envs: Vec<SubnetEnv> = [&w, &f]
        .iter()
        .map(|h| {
            lab.wait_subnet_env(h, SECS(30)).unwrap_or_else(|e| {
                panic!("subnet file of {}: {e:#}\n{}", h.name, lab.agent_log(h))
            })
        })
        .collect();
    assert_eq!(keys(&lab, &w), keys(&lab, &f), "subnet file variables");
    assert_eq!(envs[0].mtu, envs[1].mtu, "MTU: the interface's");
    let (ws, fs) = (subnet_of(&envs[0]), subnet_of(&envs[1]));
    let dir = lab.dir().to_path_buf();

    // the same lease value, byte for byte but the addresses and the tag
    let normal = |v: String, ip: &str, t: &str| v.replace(ip, "IP").replace(t, "TAG");
    assert_eq!(
        normal(lease_value(&lab, &ws), "198.18.0.11", "weft"),
        normal(lease_value(&lab, &fs), "198.18.0.12", "flanneld"),
        "lease values"
    );
    assert!(
        lease_value(&lab, &ws).contains(r#""BackendData":"tag=weft \u003c\u0026\u003e""#),
        "weft's BackendData: {}",
        lease_value(&lab, &ws)
    );

    // PostStartupCommand: the same variables, printed the same way
    let post = |t: &str, s: &str, ip: &str| {
        eventually(SECS(10), &format!("{t}: PostStartupCommand ran"), || {
            command_log(&dir, t)
                .lines()
                .find(|l| l.starts_with("post "))
                .map(|l| l.replace(s, "SUBNET").replace(ip, "IP"))
        })
    };
    assert_eq!(
        post("weft", &ws, "198.18.0.11"),
        post("flanneld", &fs, "198.18.0.12"),
        "PostStartupCommand's variables"
    );

    // each side ran its add command for the other's lease, data on stdin
    let ran = |t: &str, line: String| {
        eventually(SECS(20), &format!("{t}: {line}"), || {
            command_log(&dir, t)
                .lines()
                .any(|l| l == line)
                .then_some(())
        })
    };
    ran("weft", format!("add {fs} 198.18.0.12 tag=flanneld <&>"));
    ran("flanneld", format!("add {ws} 198.18.0.11 tag=weft <&>"));
    pods_reach_each_other(&mut lab, &w, &f, "extension");

    // a lease gone: the remove command runs on the other side
    lab.stop_agent(&f, false);
    del(&lab, &fs);
    ran("weft", format!("remove {fs} 198.18.0.12 tag=flanneld <&>"));
    eventually(SECS(5), "weft's remove script deletes the route", || {
        (!routes_to(&lab, &w, &fs)).then_some(())
    });
    restart_flanneld(&mut lab, &f, &flanneld, &fargs, &tag("flanneld"));
    lab.stop_agent(&w, false);
    del(&lab, &ws);
    ran("flanneld", format!("remove {ws} 198.18.0.11 tag=weft <&>"));
    let adds = command_log(&dir, "weft")
        .lines()
        .filter(|l| l.starts_with("add "))
        .count();
    // flanneld's lease at start and again after it came back: renewals and
    // re-lists run nothing
    assert_eq!(adds, 2, "weft's add runs:\n{}", command_log(&dir, "weft"));
    eprintln!(
        "weft ran:\n{}\nflanneld ran:\n{}",
        command_log(&dir, "weft"),
        command_log(&dir, "flanneld")
    );
}

/// flannel's alloc backend: leases and subnet files, nothing else, the
/// same on both.
#[test]
fn weft_and_flanneld_share_an_alloc_cluster() {
    let mut lab = Lab::new("wal", Path::new(WEFT)).expect("lab: this test needs root");
    let (w, f, ew, ef) = mixed_pair(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"alloc"}}"#,
        &flanneld(),
    );
    let (ws, fs) = same_mtu_and_lease_value(&lab, &ew, &ef);
    // give each a moment to see the other's lease: still no route
    std::thread::sleep(SECS(2));
    assert!(!routes_to(&lab, &w, &fs) && !routes_to(&lab, &f, &ws));
    assert!(lab.agent_log(&w).contains("lease acquired"));
}

/// Checks the pair's subnet files give the same MTU and their leases the
/// same value but the addresses; returns the two subnets.
fn same_mtu_and_lease_value(lab: &Lab, ew: &SubnetEnv, ef: &SubnetEnv) -> (String, String) {
    assert_eq!(ew.mtu, ef.mtu, "MTU");
    let (ws, fs) = (subnet_of(ew), subnet_of(ef));
    assert_eq!(
        lease_value(lab, &ws).replace("198.18.0.11", "IP"),
        lease_value(lab, &fs).replace("198.18.0.12", "IP"),
        "lease values"
    );
    (ws, fs)
}

/// Starts weft on one host and `flanneld` on another with `config` and
/// `-ip-masq`; returns the hosts and their subnet files, after checking
/// both files hold the same variables and masquerading.
fn mixed_pair(lab: &mut Lab, config: &str, flanneld: &Path) -> (Host, Host, SubnetEnv, SubnetEnv) {
    lab.start_etcd().expect("etcd");
    lab.put_config(config).expect("config");
    let w = lab.host("weft", 11).expect("weft host");
    let f = lab.host("flanneld", 12).expect("flanneld host");
    lab.start_agent(&w, &["-ip-masq"]).expect("weft agent");
    let args = lab.flanneld_args(&f, &["-ip-masq"]).expect("args");
    lab.start_agent_with(&f, &flanneld.display().to_string(), &args, &[])
        .expect("flanneld");
    let [ew, ef] = [&w, &f].map(|h| {
        lab.wait_subnet_env(h, SECS(30))
            .unwrap_or_else(|e| panic!("subnet file of {}: {e:#}\n{}", h.name, lab.agent_log(h)))
    });
    assert_eq!(keys(lab, &w), keys(lab, &f), "subnet file variables");
    assert_eq!(ew.ipmasq, ef.ipmasq, "IPMASQ");
    (w, f, ew, ef)
}

/// flannel's udp backend (flanneld built with cgo) beside weft's: the same
/// lease value and subnet file, pods reach each other both ways.
#[test]
fn weft_and_flanneld_share_a_udp_cluster() {
    let mut lab = Lab::new("wmu", Path::new(WEFT)).expect("lab: this test needs root");
    let (w, f, ew, ef) = mixed_pair(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"udp"}}"#,
        &flanneld(),
    );
    same_mtu_and_lease_value(&lab, &ew, &ef);
    pods_reach_each_other(&mut lab, &w, &f, "udp");
}

/// `-save` of a host's nat table: the FLANNEL-POSTRTG rules, with the
/// host's own subnets written as SUBNET / SUBNET6.
fn masq_rules(host: &Host, save: &str, own: &[String]) -> Vec<String> {
    let out =
        weft_lab::sh("ip", &["netns", "exec", &host.ns, save, "-t", "nat"]).expect("iptables-save");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A FLANNEL-POSTRTG "))
        .map(|l| {
            own.iter()
                .enumerate()
                .fold(l.to_string(), |l, (i, s)| l.replace(s, &format!("OWN{i}")))
        })
        .collect()
}

/// A dual-stack vxlan cluster with `-ip-masq`: IPv4 and IPv6 pods reach
/// each other both ways, and weft's masquerade rules for both families
/// are flanneld v0.28.10's, rule for rule.
#[test]
fn weft_and_flanneld_share_a_dual_stack_cluster_with_ip_masq() {
    let mut lab = Lab::new("wm6", Path::new(WEFT)).expect("lab: this test needs root");
    let (w, f, ew, ef) = mixed_pair(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"vxlan"}}"#,
        &flanneld(),
    );
    // One difference on purpose: flanneld gives flannel-v6.1 the IPv4
    // device's MTU (underlay - 50) and writes that to the subnet file,
    // though IPv6 vxlan takes 70 bytes; weft's flannel-v6.1 is underlay
    // - 70 and the pods get the smaller of the two, so no pod packet
    // needs fragmenting on the underlay.
    assert_eq!((ew.mtu, ef.mtu), (Some(1430), Some(1450)), "MTUs");
    let own = |e: &SubnetEnv| {
        vec![
            e.subnet.expect("v4").trunc().to_string(),
            e.ipv6_subnet.expect("v6").trunc().to_string(),
        ]
    };
    for save in ["iptables-save", "ip6tables-save"] {
        let (rw, rf) = (
            masq_rules(&w, save, &own(&ew)),
            masq_rules(&f, save, &own(&ef)),
        );
        assert!(!rw.is_empty(), "{save}: weft wrote no masquerade rules");
        assert_eq!(rw, rf, "{save}: weft's rules (left) and flanneld's");
    }
    let pw = lab.pod(&w, "pw").expect("pod on the weft host");
    let pf = lab.pod(&f, "pf").expect("pod on the flanneld host");
    for (from, to) in [(&pw, &pf), (&pf, &pw)] {
        lab.ping(from, to.ip, SECS(10))
            .unwrap_or_else(|e| panic!("IPv4 {} -> {}: {e:#}", from.ip, to.ip));
        let v6 = to.ip6.expect("IPv6 pod");
        lab.ping(from, v6, SECS(10))
            .unwrap_or_else(|e| panic!("IPv6 -> {v6}: {e:#}"));
    }
}

//! End to end: weft agents on hosts built from network namespaces, with a
//! real etcd, real vxlan devices and real pings between pod namespaces.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, in_netns, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const ARTICLE_CONFIG: &str =
    r#"{ "Network": "172.30.0.0/16", "SubnetLen": 24, "Backend": { "Type": "vxlan" } }"#;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn lab() -> Lab {
    Lab::new("wte", Path::new(WEFT)).expect("lab: these tests need root")
}

fn subnet_of(env: &SubnetEnv) -> String {
    env.subnet.expect("FLANNEL_SUBNET").trunc().to_string()
}

/// Routes on flannel.1 of `host`, as "dst" strings.
fn vxlan_routes(lab: &Lab, host: &Host) -> Vec<String> {
    let mut nl = lab.netlink(host).expect("netlink");
    let Some(dev) = weft_kernel::link_by_name(&mut nl, "flannel.1").expect("links") else {
        return Vec::new();
    };
    let plane = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(dev.index))
        .expect("dump");
    let mut r: Vec<String> = plane.routes.keys().map(|k| k.to_string()).collect();
    r.sort();
    r
}

/// A cluster of `n` hosts with agents running and subnet files written.
fn cluster(lab: &mut Lab, n: u8) -> Vec<(Host, SubnetEnv)> {
    lab.cluster(ARTICLE_CONFIG, n, 11, &[]).expect("cluster")
}

#[test]
fn pods_on_three_hosts_reach_each_other_with_flannel_formats() {
    let mut lab = lab();
    lab.set_etcd_prefix("/kube-centos/network");
    let hosts = cluster(&mut lab, 3);
    // subnet file exactly as flanneld writes it
    for (h, env) in &hosts {
        let text = std::fs::read_to_string(lab.subnet_file(h)).expect("read");
        let sn = env.subnet.expect("subnet");
        assert_eq!(text, format!("FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET={sn}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"));
        assert_eq!(sn.addr().octets()[3], 1);
        let mode = std::fs::metadata(lab.subnet_file(h))
            .expect("meta")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644
        );
    }
    // leases exactly as flanneld writes them
    let keys = lab.lease_keys().expect("keys");
    assert_eq!(keys.len(), 3);
    for (h, env) in &hosts {
        let key = subnet_of(env).replace('/', "-");
        assert!(keys.contains(&key), "{key} in {keys:?}");
        let value = lab.lease_value(&key).expect("get");
        let mut nl = lab.netlink(h).expect("nl");
        let dev = weft_kernel::link_by_name(&mut nl, "flannel.1")
            .expect("dump")
            .expect("flannel.1");
        assert_eq!(
            value.trim(),
            format!(
                r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
                h.ip,
                dev.mac.expect("mac")
            )
        );
        assert_eq!(dev.mtu, 1450);
        // the etcd lease behind the key has flannel's 24 h TTL
        let lease = lab
            .etcdctl(&[
                "get",
                "-w",
                "json",
                &format!("/kube-centos/network/subnets/{key}"),
            ])
            .expect("json");
        assert!(
            lease.contains("\"lease\":"),
            "key is bound to an etcd lease: {lease}"
        );
    }
    let pods: Vec<_> = hosts
        .iter()
        .map(|(h, _)| lab.pod(h, "pod").expect("pod"))
        .collect();
    for a in &pods {
        for b in &pods {
            if a != b {
                lab.ping(a, b.ip, SECS(10)).expect("ping across hosts");
            }
        }
    }
    // each host routes to the two others, and only to them
    for (h, env) in &hosts {
        let want: Vec<String> = {
            let mut w: Vec<String> = hosts
                .iter()
                .filter(|(o, _)| o != h)
                .map(|(_, e)| subnet_of(e))
                .collect();
            w.sort();
            w
        };
        assert_eq!(
            vxlan_routes(&lab, h),
            want,
            "routes on {} ({})",
            h.name,
            subnet_of(env)
        );
    }
}

#[test]
fn deleted_lease_removes_routes_and_its_owner_exits() {
    let mut lab = lab();
    let hosts = cluster(&mut lab, 3);
    let (h3, env3) = &hosts[2];
    let gone = subnet_of(env3);
    for (h, _) in &hosts[..2] {
        eventually(SECS(10), "route to h3", || {
            vxlan_routes(&lab, h).contains(&gone).then_some(())
        });
    }
    lab.etcdctl(&[
        "del",
        &format!("/coreos.com/network/subnets/{}", gone.replace('/', "-")),
    ])
    .expect("del");
    for (h, _) in &hosts[..2] {
        eventually(SECS(10), "route to h3 removed", || {
            (!vxlan_routes(&lab, h).contains(&gone)).then_some(())
        });
        assert_eq!(vxlan_routes(&lab, h).len(), 1);
    }
    let code = lab.agent(h3).expect("agent").wait_exit(SECS(10));
    assert_eq!(
        code,
        Some(1),
        "h3's agent exits non-zero when its lease is deleted"
    );
    assert!(lab.agent_log(h3).contains("was deleted from etcd"));
}

#[test]
fn restarted_agent_keeps_its_subnet_and_the_data_path() {
    let mut lab = lab();
    let hosts = cluster(&mut lab, 2);
    let (h1, env1) = &hosts[0];
    let (h2, _) = &hosts[1];
    let p1 = lab.pod(h1, "a").expect("pod");
    let p2 = lab.pod(h2, "b").expect("pod");
    lab.ping(&p1, p2.ip, SECS(10)).expect("ping before");
    let mac_before = {
        let mut nl = lab.netlink(h1).expect("nl");
        weft_kernel::link_by_name(&mut nl, "flannel.1")
            .expect("dump")
            .expect("dev")
            .mac
    };
    assert_eq!(lab.stop_agent(h1, false), Some(0), "SIGTERM exits 0");
    // the data path stays while the agent is away
    assert_eq!(vxlan_routes(&lab, h1).len(), 1);
    lab.ping(&p1, p2.ip, SECS(5))
        .expect("ping while the agent is stopped");
    lab.start_agent(h1, &[]).expect("restart");
    let env_again = lab.wait_subnet_env(h1, SECS(20)).expect("subnet");
    assert_eq!(
        subnet_of(&env_again),
        subnet_of(env1),
        "same subnet after restart"
    );
    let mut nl = lab.netlink(h1).expect("nl");
    let mac_after = weft_kernel::link_by_name(&mut nl, "flannel.1")
        .expect("dump")
        .expect("dev")
        .mac;
    assert_eq!(mac_before, mac_after, "VTEP MAC kept");
    assert_eq!(lab.lease_keys().expect("keys").len(), 2, "no second lease");
    lab.ping(&p1, p2.ip, SECS(10)).expect("ping after");

    // without its device (a reboot) and with the subnet file gone, the
    // lease with its public IP is still found and reused
    lab.stop_agent(h1, true);
    let idx = weft_kernel::link_by_name(&mut nl, "flannel.1")
        .expect("dump")
        .expect("dev")
        .index;
    weft_kernel::delete_link(&mut nl, idx).expect("delete device");
    std::fs::remove_file(lab.subnet_file(h1)).expect("rm subnet file");
    lab.start_agent(h1, &[]).expect("restart");
    let env3 = lab.wait_subnet_env(h1, SECS(20)).expect("subnet");
    assert_eq!(subnet_of(&env3), subnet_of(env1));
    let mac_reboot = weft_kernel::link_by_name(&mut nl, "flannel.1")
        .expect("dump")
        .expect("dev")
        .mac;
    assert_eq!(
        mac_reboot, mac_before,
        "recreated device takes the MAC from the lease"
    );
    lab.ping(&p1, p2.ip, SECS(10)).expect("ping after reboot");
}

#[test]
fn agents_recover_when_etcd_restarts() {
    let mut lab = lab();
    let hosts = cluster(&mut lab, 2);
    // a host that leased first learns of the other through its watch:
    // let that happen before etcd goes away
    for (i, (h, _)) in hosts.iter().enumerate() {
        let other = subnet_of(&hosts[1 - i].1);
        eventually(SECS(10), "routes between the hosts", || {
            vxlan_routes(&lab, h).contains(&other).then_some(())
        });
    }
    lab.stop_etcd(true);
    std::thread::sleep(SECS(3));
    // the data path survives the outage
    let p1 = lab.pod(&hosts[0].0, "a").expect("pod");
    let p2 = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&p1, p2.ip, SECS(5)).expect("ping during outage");
    lab.start_etcd().expect("etcd again");
    // a host joining after the restart is learnt through the resumed watch
    let h3 = lab.host("h3", 13).expect("host");
    lab.start_agent(&h3, &[]).expect("agent");
    let env3 = lab.wait_subnet_env(&h3, SECS(20)).expect("subnet");
    let s3 = subnet_of(&env3);
    for (h, _) in &hosts {
        eventually(SECS(20), "route to the new host", || {
            vxlan_routes(&lab, h).contains(&s3).then_some(())
        });
        assert!(lab.agent(h).expect("agent").alive());
    }
    let p3 = lab.pod(&h3, "c").expect("pod");
    lab.ping(&p1, p3.ip, SECS(10)).expect("ping new host");
}

#[test]
fn bad_config_is_reported_and_waited_out() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","SubnetLen":8}"#)
        .expect("config");
    let h = lab.host("h1", 11).expect("host");
    lab.start_agent(&h, &[]).expect("agent");
    eventually(SECS(10), "error in the log", || {
        lab.agent_log(&h).contains("field SubnetLen").then_some(())
    });
    assert!(
        lab.agent(&h).expect("agent").alive(),
        "waits instead of crash-looping"
    );
    assert!(!lab.subnet_file(&h).exists());
    lab.put_config(ARTICLE_CONFIG).expect("fix");
    lab.wait_subnet_env(&h, SECS(10))
        .expect("recovers once the config is fixed");
}

#[test]
fn full_pool_exits_nonzero_with_a_clear_error() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    // 100.64.0.0/28 cut in /30s: subnets 2..4 are leasable (3 in all)
    lab.put_config(r#"{"Network":"100.64.0.0/28","SubnetLen":30,"Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    for (i, s) in ["100.64.0.4-30", "100.64.0.8-30", "100.64.0.12-30"]
        .iter()
        .enumerate()
    {
        let v = format!(
            r#"{{"PublicIP":"198.18.0.{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:00:00:00:00:0{i}"}}}}"#,
            100 + i
        );
        lab.etcdctl(&["put", &format!("/coreos.com/network/subnets/{s}"), &v])
            .expect("put");
    }
    let h = lab.host("h1", 11).expect("host");
    lab.start_agent(&h, &[]).expect("agent");
    let code = lab.agent(&h).expect("agent").wait_exit(SECS(15));
    assert_eq!(code, Some(1));
    assert!(
        lab.agent_log(&h)
            .contains("no free subnet left in 100.64.0.0/28"),
        "{}",
        lab.agent_log(&h)
    );
}

#[test]
fn simultaneous_starts_never_share_a_subnet() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    // 7 leasable subnets for 7 hosts starting at once: every race is lost by someone
    lab.put_config(r#"{"Network":"100.64.0.0/26","SubnetLen":29,"Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    let hosts: Vec<Host> = (0..7)
        .map(|i| lab.host(&format!("h{i}"), 20 + i).expect("host"))
        .collect();
    for h in &hosts {
        lab.start_agent(h, &[]).expect("agent");
    }
    let mut subnets: Vec<String> = hosts
        .iter()
        .map(|h| subnet_of(&lab.wait_subnet_env(h, SECS(30)).expect("subnet")))
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 7, "all distinct: {subnets:?}");
    assert_eq!(lab.lease_keys().expect("keys").len(), 7);
}

#[test]
fn flanneld_name_env_fallback_readiness_and_healthz() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.set_etcd_prefix("/kube-centos/network");
    lab.put_config(ARTICLE_CONFIG).expect("config");
    let h = lab.host("h1", 11).expect("host");
    // invoked as `flanneld`, configured only through FLANNELD_* variables
    let link = lab.dir().join("flanneld");
    std::os::unix::fs::symlink(WEFT, &link).expect("symlink");
    let notify = lab.dir().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind notify socket");
    sock.set_read_timeout(Some(SECS(20))).expect("timeout");
    let env: Vec<(String, String)> = [
        ("FLANNELD_ETCD_ENDPOINTS", lab.etcd_url().expect("url")),
        ("FLANNELD_ETCD_PREFIX", "/kube-centos/network".to_string()),
        ("FLANNELD_IFACE", "eth0".to_string()),
        (
            "FLANNELD_SUBNET_FILE",
            lab.subnet_file(&h).display().to_string(),
        ),
        ("FLANNELD_HEALTHZ_PORT", "18080".to_string()),
        ("NOTIFY_SOCKET", notify.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    lab.start_agent_with(&h, &link.display().to_string(), &[], &env)
        .expect("agent");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the agent");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert!(
        lab.subnet_file(&h).exists(),
        "ready only once the subnet file is written"
    );
    assert_eq!(
        lab.lease_keys().expect("keys").len(),
        1,
        "used the prefix from FLANNELD_ETCD_PREFIX"
    );
    let reply = in_netns(&h.ns, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, 18080)).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .expect("netns");
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    // -version as flanneld
    let out = std::process::Command::new(&link)
        .arg("-version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("flanneld v0.21.5 compatible"));
    // bad flags: one line naming the flag, exit 2
    let out = std::process::Command::new(&link)
        .arg("-subnet-lease-renew-margin=0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("subnet-lease-renew-margin"));
}

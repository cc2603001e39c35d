//! End to end: what an attacker on the control plane or the underlay can
//! write at weft hosts. Hostile leases written straight into etcd are left
//! out (no route, neighbour or FDB entry), told once each, counted and
//! reported by `weft status` and `weft doctor`, while pods on valid leases
//! keep pinging and a valid lease written after them is routed. udp
//! datagrams from an address that is no lease's are dropped and counted.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, in_netns, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const HEALTH: &str = "-healthz-port=8471";

fn start(lab: &mut Lab, config: &str, n: u8) -> Vec<(Host, SubnetEnv)> {
    lab.cluster(config, n, 11, &[HEALTH, "-resync-interval=1"])
        .expect("cluster")
}

fn out(args: &[&str]) -> String {
    weft_lab::output_of("ip", args).expect("ip")
}

/// `bridge fdb show dev flannel.1` on `host`.
fn fdb(host: &Host) -> String {
    weft_lab::fdb(host, "flannel.1").expect("fdb")
}

/// The sample `name{labels}` of the agent's /metrics on `host` (0 if absent).
fn metric(host: &Host, name: &str) -> f64 {
    weft_lab::metric_sum(
        &weft_lab::metrics(host, 8471).expect("metrics"),
        name.trim(),
    )
}

/// A vxlan lease value with a recognisable VTEP MAC.
fn vxlan_value(public: &str, mac: &str) -> String {
    format!(
        r#"{{"PublicIP":"{public}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
    )
}

#[test]
fn hostile_leases_in_etcd_are_left_out_while_valid_ones_are_routed() {
    let mut lab = Lab::new("wtu", Path::new(WEFT)).expect("lab: these tests need root");
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#,
        2,
    );
    let (h1, env1) = &hosts[0];
    let (h2, env2) = &hosts[1];
    let own1 = env1.subnet.expect("subnet").trunc();
    let own2 = env2.subnet.expect("subnet").trunc();
    let key = |n: ipnet::Ipv4Net| format!("{}-{}", n.network(), n.prefix_len());
    let a = lab.pod(h1, "a").expect("pod a");
    let b = lab.pod(h2, "b").expect("pod b");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping before");

    // pods keep pinging while the hostile leases arrive
    let pinger = Command::new("ip")
        .args([
            "netns", "exec", &a.ns, "ping", "-n", "-q", "-i", "0.1", "-w", "8",
        ])
        .arg(b.ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping runs");

    let hostile: Vec<(String, String, String)> = vec![
        (
            "0.0.0.0-1".into(),
            vxlan_value("198.18.0.12", "02:0b:ad:00:00:01"),
            "subnet 0.0.0.0/1 is not inside the network 172.30.0.0/16".into(),
        ),
        (
            "128.0.0.0-1".into(),
            vxlan_value("198.18.0.12", "02:0b:ad:00:00:02"),
            "subnet 128.0.0.0/1 is not inside the network 172.30.0.0/16".into(),
        ),
        (
            "198.18.0.0-24".into(),
            vxlan_value("198.18.0.12", "02:0b:ad:00:00:03"),
            "subnet 198.18.0.0/24 is not inside the network 172.30.0.0/16".into(),
        ),
        (
            "172.30.200.0-25".into(),
            vxlan_value("198.18.0.12", "02:0b:ad:00:00:04"),
            "subnet 172.30.200.0/25 is not a /24 (the cluster's subnet length)".into(),
        ),
        (
            format!("{}&2001:db8:f::-64", key(own2)),
            vxlan_value("198.18.0.66", "02:0b:ad:00:00:05"),
            format!("subnet {own2} is already held by lease {}", key(own2)),
        ),
        (
            "172.30.201.0-24".into(),
            vxlan_value("224.0.0.22", "02:0b:ad:00:00:06"),
            "PublicIP 224.0.0.22 is a multicast address".into(),
        ),
        (
            "172.30.202.0-24".into(),
            vxlan_value("0.0.0.0", "02:0b:ad:00:00:07"),
            "PublicIP 0.0.0.0 is unspecified".into(),
        ),
    ];
    for (k, v, _) in &hostile {
        lab.etcdctl(&["put", &format!("{}/subnets/{k}", lab.etcd_prefix()), v])
            .expect("put hostile lease");
    }
    // this host's own subnet, claimed by a second key, as seen from h1
    let own_claim = format!("{}&2001:db8:f:1::-64", key(own1));
    lab.etcdctl(&[
        "put",
        &format!("{}/subnets/{own_claim}", lab.etcd_prefix()),
        &vxlan_value("198.18.0.77", "02:0b:ad:00:00:08"),
    ])
    .expect("put own claim");
    // and a valid lease written after them all
    let valid = "172.30.203.0-24";
    lab.etcdctl(&[
        "put",
        &format!("{}/subnets/{valid}", lab.etcd_prefix()),
        &vxlan_value("198.18.0.99", "02:00:00:00:00:99"),
    ])
    .expect("put valid lease");

    eventually(
        Duration::from_secs(10),
        "the valid lease routed on both hosts",
        || {
            let routed = |h: &Host| lab.routes_to(h, "172.30.203.0/24").unwrap_or(false);
            (routed(h1) && routed(h2)).then_some(())
        },
    );
    // a few resyncs (-resync-interval=1) later, still nothing for them
    std::thread::sleep(Duration::from_secs(3));
    for h in [h1, h2] {
        let routes = out(&["-n", &h.ns, "route", "show"]);
        let neigh = out(&["-n", &h.ns, "neigh", "show", "dev", "flannel.1"]);
        let fdb = fdb(h);
        for bad in [
            "0.0.0.0/1",
            "128.0.0.0/1",
            "198.18.0.0/24 via",
            "172.30.200.0/25",
            "172.30.201.0",
            "172.30.202.0",
        ] {
            assert!(
                !routes.contains(bad),
                "{}: route for {bad}:\n{routes}",
                h.name
            );
        }
        assert!(
            !routes.contains("198.18.0.66") && !routes.contains("198.18.0.77"),
            "{routes}"
        );
        assert!(
            !neigh.contains("02:0b:ad"),
            "{}: hostile neighbour:\n{neigh}",
            h.name
        );
        assert!(
            !fdb.contains("02:0b:ad"),
            "{}: hostile FDB entry:\n{fdb}",
            h.name
        );
        // the underlay still works: etcd is reachable, the agent is alive
        assert!(lab.agent(h).expect("agent").alive(), "{}", lab.agent_log(h));
    }
    // h2's own lease is still routed from h1 to h2's VTEP, not elsewhere
    assert!(lab.routes_to(h1, &own2.to_string()).expect("route"));

    // each refusal told once, by name and reason
    let log1 = lab.agent_log(h1);
    for (k, _, why) in &hostile {
        let line = format!("lease {k} left out: {why}");
        assert_eq!(log1.matches(&line).count(), 1, "{line} once in:\n{log1}");
    }
    let own_line = format!("lease {own_claim} left out: subnet {own1} is this host's own");
    assert_eq!(log1.matches(&own_line).count(), 1, "{own_line}:\n{log1}");
    // on h1: the seven hostile leases and the claim on its own subnet
    assert_eq!(metric(h1, "weft_agent_leases_refused "), 8.0);
    assert_eq!(metric(h1, "weft_agent_lease_refusals_total"), 8.0);
    // on h2 the claim on its own subnet is its own-subnet refusal, and the
    // claim on h1's subnet a taken one: eight as well
    assert_eq!(metric(h2, "weft_agent_leases_refused "), 8.0);

    // the pods never noticed
    let ping = pinger.wait_with_output().expect("ping ends");
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "pings lost during the hostile writes:\n{text}"
    );

    // status and doctor show what is left out
    let client = |args: &[&str]| {
        let file = format!("--subnet-file={}", lab.subnet_file(h1).display());
        let url = format!("--etcd-endpoints={}", lab.etcd_url().expect("etcd"));
        let mut a = vec!["netns", "exec", h1.ns.as_str(), WEFT];
        a.extend_from_slice(args);
        a.extend([file.as_str(), url.as_str()]);
        let o = Command::new("ip").args(&a).output().expect("weft runs");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let status = client(&["status", "--iface", "eth0"]);
    for (k, _, why) in &hostile {
        assert!(
            status.contains(&format!("left out: lease {k}: {why}")),
            "{status}"
        );
    }
    assert!(status.contains("data path: in sync"), "{status}");
    let doctor = client(&["doctor"]);
    assert!(
        doctor.contains("[WARN] leases: 8 lease(s) left out by the agent"),
        "{doctor}"
    );

    // the holder of a taken subnet goes: the waiting lease takes it
    lab.etcdctl(&[
        "del",
        &format!("{}/subnets/{}", lab.etcd_prefix(), key(own2)),
    ])
    .expect("delete h2's lease");
    let waiting = &hostile[4].0;
    eventually(
        Duration::from_secs(10),
        "the waiting lease admitted on h1",
        || {
            let log = lab.agent_log(h1);
            log.contains(&format!(
                "lease {waiting}: admitted now that lease {} is gone",
                key(own2)
            ))
            .then_some(())
        },
    );
    eventually(
        Duration::from_secs(10),
        "h1 routes h2's subnet to the new holder",
        || {
            let fdb = fdb(h1);
            fdb.contains("02:0b:ad:00:00:05 dst 198.18.0.66")
                .then_some(())
        },
    );
}

/// An IPv4/UDP packet from `src` to `dst` carrying `payload` (UDP checksum
/// left out, as IPv4 allows).
fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.ip().octets());
    p[16..20].copy_from_slice(&d.ip().octets());
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&s.port().to_be_bytes());
    p[22..24].copy_from_slice(&d.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

#[test]
fn udp_datagrams_from_an_address_that_is_no_lease_are_dropped() {
    let mut lab = Lab::new("wtv", Path::new(WEFT)).expect("lab: these tests need root");
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"udp"}}"#,
        2,
    );
    let (h1, h2) = (&hosts[0].0, &hosts[1].0);
    let a = lab.pod(h1, "a").expect("pod a");
    let b = lab.pod(h2, "b").expect("pod b");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping over udp");
    let _echo = weft_lab::serve_name(&a, 7777).expect("echo in pod a");
    // an intruder on the underlay, holding no lease
    let intruder = lab.host("intruder", 50).expect("intruder");
    let (pod_a_ip, pod_b_ip) = (a.ip, b.ip);
    // the packet claims to come from pod b; pod a's answer would go there
    let listener = in_netns(&b.ns, || UdpSocket::bind((pod_b_ip, 5555)))
        .expect("netns")
        .expect("bind in pod b");
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let forged = udp_packet(
        SocketAddr::from((pod_b_ip, 5555)),
        SocketAddr::from((pod_a_ip, 7777)),
        b"?",
    );
    let before = metric(h1, "weft_agent_udp_foreign_datagrams_total");
    assert_eq!(before, 0.0);
    let h1_ip: Ipv4Addr = h1.ip;
    for _ in 0..20 {
        in_netns(&intruder.ns, || {
            let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
            s.send_to(&forged, (h1_ip, 8285)).expect("send");
        })
        .expect("netns");
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = listener.recv_from(&mut buf) {
            panic!(
                "a forged datagram reached pod a, which answered {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
    eventually(
        Duration::from_secs(5),
        "the dropped datagrams counted",
        || (metric(h1, "weft_agent_udp_foreign_datagrams_total") >= 20.0).then_some(()),
    );
    assert!(
        lab.agent_log(h1)
            .contains("udp: dropped a datagram from 198.18.0.50, which is no lease's PublicIP"),
        "{}",
        lab.agent_log(h1)
    );
    // the same packet from the real peer's address is delivered: pod a answers
    in_netns(&h2.ns, || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        s.send_to(&forged, (h1_ip, 8285)).expect("send");
    })
    .expect("netns");
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let (n, _) = listener
        .recv_from(&mut buf)
        .expect("pod a answers a packet that came from a peer");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "a");
    lab.ping(&b, a.ip, Duration::from_secs(5))
        .expect("peers still ping");
}

/// A Node that publishes a flannel vxlan lease: `cidr`, public address
/// `public` and VTEP MAC `mac` (as a flanneld or weft node would).
fn flannel_node(api: &weft_lab::ApiServer, name: &str, cidr: &str, public: &str, mac: &str) {
    let p = "flannel.alpha.coreos.com";
    api.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    {p}/kube-subnet-manager: \"true\"\n    {p}/backend-type: vxlan\n    {p}/backend-data: '{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}'\n    {p}/public-ip: {public}\nspec:\n  podCIDR: {cidr}\n  podCIDRs: [\"{cidr}\"]\n"
    ))
    .unwrap_or_else(|e| panic!("Node {name}: {e:#}"));
}

#[test]
fn hostile_nodes_are_left_out_in_kubernetes_mode() {
    let mut lab = Lab::new("wtk", Path::new(WEFT)).expect("lab: these tests need root");
    lab.start_etcd().expect("etcd (for the API server)");
    let etcd_host = lab.etcd_host(0).expect("etcd host");
    let api = lab.start_apiserver(&etcd_host).expect("kube-apiserver");
    let admin = api.admin_kubeconfig().expect("admin");
    let conf = lab.dir().join("net-conf.json");
    std::fs::write(
        &conf,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan"}}"#,
    )
    .expect("net-conf.json");
    let mut hosts = Vec::new();
    for (i, name) in ["k1", "k2"].into_iter().enumerate() {
        api.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: 172.30.{n}.0/24\n  podCIDRs: [\"172.30.{n}.0/24\"]\n",
            n = i + 1
        ))
        .expect("node");
        let h = lab.host(name, 11 + i as u8).expect("host");
        let mut args = vec!["agent".to_string()];
        args.extend(lab.kube_agent_args(&h, &admin, &conf));
        args.push(HEALTH.into());
        let env = [("NODE_NAME".to_string(), name.to_string())];
        lab.start_agent_with(&h, WEFT, &args, &env).expect("agent");
        hosts.push(h);
    }
    for h in &hosts {
        lab.wait_subnet_env(h, Duration::from_secs(40))
            .expect("subnet");
    }
    let (k1, k2) = (&hosts[0], &hosts[1]);
    let a = lab.pod(k1, "a").expect("pod a");
    let b = lab.pod(k2, "b").expect("pod b");
    lab.ping(&a, b.ip, Duration::from_secs(20))
        .expect("ping before");

    // named to list after the real Nodes (in a listing, the first holder
    // of a pod range keeps it)
    flannel_node(
        &api,
        "zz-dup",
        "172.30.2.0/24",
        "198.18.0.66",
        "02:0b:ad:00:01:01",
    );
    flannel_node(
        &api,
        "zz-own",
        "172.30.1.0/24",
        "198.18.0.67",
        "02:0b:ad:00:01:02",
    );
    flannel_node(
        &api,
        "zz-len",
        "172.30.9.0/25",
        "198.18.0.68",
        "02:0b:ad:00:01:03",
    );
    flannel_node(
        &api,
        "zz-mcast",
        "172.30.10.0/24",
        "224.0.0.1",
        "02:0b:ad:00:01:04",
    );
    flannel_node(
        &api,
        "zz-valid",
        "172.30.11.0/24",
        "198.18.0.99",
        "02:00:00:00:01:99",
    );
    eventually(Duration::from_secs(20), "the valid Node routed", || {
        let routed = |h: &Host| lab.routes_to(h, "172.30.11.0/24").unwrap_or(false);
        (routed(k1) && routed(k2)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    for h in [k1, k2] {
        let routes = out(&["-n", &h.ns, "route", "show"]);
        for bad in ["172.30.9.0/25", "172.30.10.0", "198.18.0.66", "198.18.0.67"] {
            assert!(!routes.contains(bad), "{}: {bad} routed:\n{routes}", h.name);
        }
        let fdb = fdb(h);
        assert!(
            !fdb.contains("02:0b:ad"),
            "{}: hostile FDB entry:\n{fdb}",
            h.name
        );
    }
    // two Nodes with one pod range would be one lease to the data path:
    // the Node that held it first (this host's own, always) keeps it
    let log1 = lab.agent_log(k1);
    for line in [
        "Node zz-dup: pod range 172.30.2.0-24 is already Node k2's; its lease is left out until that Node gives it up",
        "Node zz-own: pod range 172.30.1.0-24 is already Node k1's; its lease is left out until that Node gives it up",
        "lease 172.30.9.0-25 left out: subnet 172.30.9.0/25 is not a /24 (the cluster's subnet length)",
        "lease 172.30.10.0-24 left out: PublicIP 224.0.0.1 is a multicast address",
    ] {
        assert_eq!(log1.matches(line).count(), 1, "{line} once in:\n{log1}");
    }
    for h in [k1, k2] {
        assert_eq!(metric(h, "weft_agent_leases_refused "), 2.0, "{}", h.name);
        assert_eq!(
            metric(h, "weft_agent_lease_refusals_total"),
            4.0,
            "{}",
            h.name
        );
    }
    // k2's own lease still points at k2, not at the duplicate's address
    let fdb = fdb(k1);
    assert!(fdb.contains("dst 198.18.0.12"), "{fdb}");
    // deleting the duplicate unroutes nothing
    api.kubectl(&["delete", "node", "zz-dup"])
        .expect("delete zz-dup");
    std::thread::sleep(Duration::from_secs(1));
    assert!(lab.routes_to(k1, "172.30.2.0/24").expect("routes"));
    // weft status names what the agent leaves out
    let status = {
        let o = Command::new("ip")
            .args(["netns", "exec", &k1.ns, WEFT, "status", "--kube-subnet-mgr"])
            .arg(format!("--kubeconfig-file={}", admin.display()))
            .arg(format!("--net-config-path={}", conf.display()))
            .arg(format!("--subnet-file={}", lab.subnet_file(k1).display()))
            .args(["--iface", "eth0"])
            .output()
            .expect("weft status");
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    for line in [
        "left out: Node zz-own: pod range 172.30.1.0-24 is already Node k1's",
        "left out: Node zz-len: lease 172.30.9.0-25: subnet 172.30.9.0/25 is not a /24",
        "left out: Node zz-mcast: lease 172.30.10.0-24: PublicIP 224.0.0.1 is a multicast address",
    ] {
        assert!(status.contains(line), "{line} in:\n{status}");
    }
    // k2's real pods never lost k1's
    lab.ping(&b, a.ip, Duration::from_secs(5))
        .expect("ping after");
}

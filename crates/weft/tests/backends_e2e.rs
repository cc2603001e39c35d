//! End to end: the host-gw backend and vxlan DirectRouting on hosts in
//! network namespaces with a real etcd.

use std::path::Path;
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn lab() -> Lab {
    Lab::new("wtb", Path::new(WEFT)).expect("lab: these tests need root")
}

/// `ip route` lines of the host for destinations in 172.30.0.0/16 (test-side view).
fn cluster_routes(host: &Host) -> Vec<String> {
    let out = sh(
        "ip",
        &[
            "-n",
            &host.ns,
            "-4",
            "route",
            "show",
            "root",
            "172.30.0.0/16",
        ],
    )
    .expect("ip route");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("proto kernel"))
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

fn subnet(env: &SubnetEnv) -> String {
    env.subnet.expect("subnet").trunc().to_string()
}

fn start(lab: &mut Lab, config: &str, n: u8, extra: &[&str]) -> Vec<(Host, SubnetEnv)> {
    lab.cluster(config, n, 11, extra).expect("cluster")
}

#[test]
fn host_gw_routes_via_peers_and_repairs_deleted_routes() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"host-gw"}}"#,
        3,
        &["-resync-interval=1"],
    );
    // host-gw: MTU of the underlay, lease JSON as flanneld writes it
    assert_eq!(hosts[0].1.mtu, Some(1500));
    let key = subnet(&hosts[0].1).replace('/', "-");
    let value = lab.lease_value(&key).expect("get");
    assert_eq!(
        value.trim(),
        r#"{"PublicIP":"198.18.0.11","PublicIPv6":null,"BackendType":"host-gw"}"#
    );
    assert!(!sh("ip", &["-n", &hosts[0].0.ns, "link"])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("flannel.1"))
        .unwrap_or(true));

    for (h, _) in &hosts {
        eventually(Duration::from_secs(10), "routes to both peers", || {
            (cluster_routes(h).len() == 2).then_some(())
        });
        for (o, env) in hosts.iter().filter(|(o, _)| o != h) {
            let line = cluster_routes(h)
                .into_iter()
                .find(|l| l.starts_with(&subnet(env)))
                .expect("route");
            assert!(line.contains(&format!("via {} dev eth0", o.ip)), "{line}");
        }
    }
    let pods: Vec<_> = hosts
        .iter()
        .map(|(h, _)| lab.pod(h, "p").expect("pod"))
        .collect();
    for a in &pods {
        for b in &pods {
            if a != b {
                lab.ping(a, b.ip, Duration::from_secs(10))
                    .expect("ping over host-gw");
            }
        }
    }
    // someone deletes a route: it comes back
    let (h1, _) = &hosts[0];
    let victim = subnet(&hosts[1].1);
    sh("ip", &["-n", &h1.ns, "route", "del", &victim]).expect("delete route");
    eventually(Duration::from_secs(15), "route repaired", || {
        cluster_routes(h1)
            .iter()
            .any(|l| l.starts_with(&victim))
            .then_some(())
    });
    // the host's own routes on eth0 are never touched
    let own = sh("ip", &["-n", &h1.ns, "route", "show", "198.18.0.0/24"]).expect("ip route");
    assert!(String::from_utf8_lossy(&own.stdout).contains("198.18.0.0/24 dev eth0"));
}

#[test]
fn host_gw_refuses_a_remote_that_is_not_on_the_l2_network() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(r#"{"Network":"172.30.0.0/16","Backend":{"Type":"host-gw"}}"#)
        .expect("config");
    lab.etcdctl(&[
        "put",
        "/coreos.com/network/subnets/172.30.200.0-24",
        r#"{"PublicIP":"192.0.2.50","PublicIPv6":null,"BackendType":"host-gw"}"#,
    ])
    .expect("put");
    let h = lab.host("h1", 11).expect("host");
    lab.start_agent(&h, &[]).expect("agent");
    lab.wait_subnet_env(&h, Duration::from_secs(20))
        .expect("subnet");
    eventually(
        Duration::from_secs(10),
        "a clear error for that lease",
        || {
            lab.agent_log(&h)
                .contains("192.0.2.50 is not on this host's L2 network 198.18.0.0/24")
                .then_some(())
        },
    );
    assert!(
        cluster_routes(&h).is_empty(),
        "no route through a gateway: {:?}",
        cluster_routes(&h)
    );
    assert!(lab.agent(&h).expect("agent").alive());
}

#[test]
fn direct_routing_uses_plain_routes_on_the_l2_network_and_vxlan_beyond() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#,
        2,
        &[],
    );
    // a remote behind a router (not on 198.18.0.0/24) gets the vxlan treatment
    lab.etcdctl(&["put", "/coreos.com/network/subnets/172.30.200.0-24",
        r#"{"PublicIP":"192.0.2.50","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:50"}}"#]).expect("put");
    let (h1, _) = &hosts[0];
    let peer = subnet(&hosts[1].1);
    eventually(Duration::from_secs(10), "both routes", || {
        (cluster_routes(h1).len() == 2).then_some(())
    });
    let routes = cluster_routes(h1);
    let direct = routes
        .iter()
        .find(|l| l.starts_with(&peer))
        .expect("peer route");
    assert!(direct.contains("via 198.18.0.12 dev eth0"), "{direct}");
    let far = routes
        .iter()
        .find(|l| l.starts_with("172.30.200.0/24"))
        .expect("far route");
    assert!(
        far.contains("dev flannel.1") && far.contains("onlink"),
        "{far}"
    );
    let fdb = sh(
        "ip",
        &[
            "netns",
            "exec",
            &h1.ns,
            "bridge",
            "fdb",
            "show",
            "dev",
            "flannel.1",
        ],
    )
    .expect("fdb");
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(fdb.contains("02:00:00:00:00:50 dst 192.0.2.50"), "{fdb}");
    assert!(
        !fdb.contains("198.18.0.12"),
        "no FDB entry for the direct peer: {fdb}"
    );
    let a = lab.pod(&hosts[0].0, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping over the direct route");
}

/// Packets counted by the rule of nft table `ip count` whose text contains `needle`.
fn nft_counter(ns: &str, needle: &str) -> u64 {
    let out = sh(
        "ip",
        &["netns", "exec", ns, "nft", "list", "table", "ip", "count"],
    )
    .expect("nft list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {needle} in {ns}"))
}

fn count_sources(ns: &str, sources: &[&str]) {
    let mut script = String::from(
        "table ip count {\n chain input {\n  type filter hook input priority 0; policy accept;\n",
    );
    for s in sources {
        script.push_str(&format!("  ip saddr {s} counter\n"));
    }
    script.push_str(" }\n}\n");
    let path = std::env::temp_dir().join(format!("weft-count-{ns}.nft"));
    std::fs::write(&path, script).expect("write");
    sh(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            &path.display().to_string(),
        ],
    )
    .expect("nft -f");
    let _ = std::fs::remove_file(path);
}

fn masquerade_scenario(firewall: &str) {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan"}}"#,
        2,
        &[
            "-ip-masq",
            "-iptables-resync=1",
            &format!("-firewall={firewall}"),
        ],
    );
    let ext = lab.host("ext", 100).expect("external host");
    let (h1, env1) = &hosts[0];
    assert_eq!(
        env1.ipmasq,
        Some(true),
        "FLANNEL_IPMASQ=true in the subnet file"
    );
    let p1 = lab.pod(h1, "p1").expect("pod");
    let p2 = lab.pod(&hosts[1].0, "p2").expect("pod");
    count_sources(&ext.ns, &["198.18.0.11", "172.30.0.0/16"]);
    count_sources(&p2.ns, &[&p1.ip.to_string(), "198.18.0.11"]);

    // leaving the cluster network: the outside sees the host, and replies find their way back
    lab.ping(&p1, ext.ip, Duration::from_secs(10))
        .expect("pod reaches the outside");
    assert!(
        nft_counter(&ext.ns, "198.18.0.11") >= 1,
        "masqueraded to the host address"
    );
    assert_eq!(
        nft_counter(&ext.ns, "172.30.0.0/16"),
        0,
        "no pod address leaks out"
    );
    // within the cluster network: no masquerade
    lab.ping(&p1, p2.ip, Duration::from_secs(10))
        .expect("pod to pod");
    assert!(
        nft_counter(&p2.ns, &p1.ip.to_string()) >= 1,
        "pod source kept"
    );
    assert_eq!(nft_counter(&p2.ns, "198.18.0.11"), 0);

    // the rules as loaded, read back, and repaired after tampering
    let subnet = ipnet::IpNet::V4(env1.subnet.expect("subnet").trunc());
    let rules = weft_firewall::MasqRules {
        network: "172.30.0.0/16".parse().expect("net"),
        subnet,
        masquerade: true,
        fully_random: true,
        forward: true,
    };
    match firewall {
        "iptables" => {
            let loaded = |table: &str| {
                String::from_utf8_lossy(
                    &sh(
                        "ip",
                        &["netns", "exec", &h1.ns, "iptables-save", "-t", table],
                    )
                    .expect("save")
                    .stdout,
                )
                .into_owned()
            };
            for c in rules.iptables() {
                let saved = loaded(c.table);
                let got: Vec<&str> = saved
                    .lines()
                    .filter(|l| l.starts_with(&format!("-A {} ", c.chain)))
                    .collect();
                assert_eq!(
                    got,
                    c.rules.iter().map(String::as_str).collect::<Vec<_>>(),
                    "{}",
                    c.chain
                );
                assert!(
                    saved
                        .lines()
                        .any(|l| l == format!("-A {} {}", c.hook, c.jump)),
                    "jump from {}",
                    c.hook
                );
            }
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &h1.ns,
                    "iptables",
                    "-t",
                    "nat",
                    "-F",
                    "FLANNEL-POSTRTG",
                ],
            )
            .expect("tamper");
            eventually(Duration::from_secs(10), "masquerade rules restored", || {
                loaded("nat")
                    .lines()
                    .filter(|l| l.starts_with("-A FLANNEL-POSTRTG "))
                    .count()
                    .eq(&6)
                    .then_some(())
            });
        }
        _ => {
            let count = || {
                let out = sh(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &h1.ns,
                        "nft",
                        "-j",
                        "list",
                        "table",
                        "ip",
                        "flannel-ipv4",
                    ],
                )
                .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                Some(
                    v["nftables"]
                        .as_array()?
                        .iter()
                        .filter(|o| o.get("rule").is_some())
                        .count(),
                )
            };
            assert_eq!(count(), Some(8));
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &h1.ns,
                    "nft",
                    "delete",
                    "table",
                    "ip",
                    "flannel-ipv4",
                ],
            )
            .expect("tamper");
            eventually(Duration::from_secs(10), "nft table restored", || {
                (count() == Some(8)).then_some(())
            });
        }
    }
}

#[test]
fn ip_masq_with_iptables() {
    masquerade_scenario("iptables");
}

#[test]
fn ip_masq_with_nftables() {
    masquerade_scenario("nftables");
}

#[test]
fn cleanup_removes_everything_weft_made_and_nothing_else() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan"}}"#,
        2,
        &["-ip-masq"],
    );
    let (h1, _) = &hosts[0];
    eventually(Duration::from_secs(10), "route to the peer", || {
        (!cluster_routes(h1).is_empty()).then_some(())
    });
    // a host-gw style route into the network, and an unrelated route
    sh(
        "ip",
        &[
            "-n",
            &h1.ns,
            "route",
            "add",
            "172.30.250.0/24",
            "via",
            "198.18.0.12",
            "dev",
            "eth0",
        ],
    )
    .expect("route");
    sh(
        "ip",
        &[
            "-n",
            &h1.ns,
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "198.18.0.12",
            "dev",
            "eth0",
        ],
    )
    .expect("route");
    assert_eq!(lab.stop_agent(h1, false), Some(0));
    let file = lab.subnet_file(h1).display().to_string();
    let cleanup = |args: &[&str]| {
        let mut full = vec!["netns", "exec", &h1.ns, WEFT, "cleanup"];
        full.extend_from_slice(args);
        let out = std::process::Command::new("ip")
            .args(&full)
            .output()
            .expect("cleanup");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = cleanup(&["--subnet-file", &file]);
    assert!(report.contains("removed device flannel.1"), "{report}");
    assert!(
        report.contains("iptables (nf_tables) nat FLANNEL-POSTRTG")
            && report.contains("iptables (nf_tables) filter FLANNEL-FWD"),
        "{report}"
    );
    let ip = |args: &[&str]| {
        let mut full = vec!["-n", h1.ns.as_str()];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&sh("ip", &full).expect("ip").stdout).into_owned()
    };
    assert!(!ip(&["link"]).contains("flannel.1"));
    assert!(cluster_routes(h1).is_empty(), "{:?}", cluster_routes(h1));
    assert!(ip(&["nexthop"]).trim().is_empty());
    assert!(
        ip(&["route"]).contains("192.0.2.0/24 via 198.18.0.12"),
        "unrelated route kept"
    );
    let saved = String::from_utf8_lossy(
        &sh("ip", &["netns", "exec", &h1.ns, "iptables-save"])
            .expect("save")
            .stdout,
    )
    .into_owned();
    assert!(!saved.contains("FLANNEL"), "{saved}");
    assert!(
        lab.subnet_file(h1).exists(),
        "subnet file kept unless asked"
    );
    // again: nothing left to do; and the file can go too
    assert!(cleanup(&["--subnet-file", &file]).contains("nothing to clean up"));
    assert!(cleanup(&["--subnet-file", &file, "--remove-subnet-file"]).contains("removed"));
    assert!(!lab.subnet_file(h1).exists());
}

#[test]
fn udp_backend_carries_pings_and_tcp_between_pods() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"udp"}}"#,
        2,
        &[],
    );
    let (h1, env1) = &hosts[0];
    assert_eq!(env1.mtu, Some(1472), "underlay 1500 - 28");
    let key = subnet(env1).replace('/', "-");
    let value = lab.lease_value(&key).expect("get");
    assert_eq!(
        value.trim(),
        r#"{"PublicIP":"198.18.0.11","PublicIPv6":null}"#,
        "flanneld's udp lease has no BackendType"
    );
    let link = String::from_utf8_lossy(
        &sh("ip", &["-n", &h1.ns, "addr", "show", "flannel0"])
            .expect("flannel0")
            .stdout,
    )
    .into_owned();
    assert!(
        link.contains(&format!("inet {}/16", env1.subnet.expect("s").network())),
        "{link}"
    );
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping over udp");
    lab.ping(&b, a.ip, Duration::from_secs(10))
        .expect("ping back over udp");
    let gbps = lab.iperf(&b, &a, 2).expect("iperf3");
    assert!(
        gbps > 0.01,
        "TCP moves data over the udp backend: {gbps} Gbit/s"
    );
    eprintln!("udp backend, pod to pod: {gbps:.2} Gbit/s (iperf3, 2 s)");
}

const DUAL_VXLAN: &str = r#"{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"vxlan"}}"#;

#[test]
fn dual_stack_vxlan_carries_ipv4_and_ipv6_between_pods() {
    let mut lab = lab();
    let hosts = start(&mut lab, DUAL_VXLAN, 2, &["-ip-masq"]);
    let (h1, env1) = &hosts[0];
    let text = std::fs::read_to_string(lab.subnet_file(h1)).expect("subnet file");
    let v6 = env1.ipv6_subnet.expect("FLANNEL_IPV6_SUBNET");
    assert_eq!(
        text,
        format!(
            "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET={}\nFLANNEL_IPV6_NETWORK=2001:db8:f::/48\nFLANNEL_IPV6_SUBNET={v6}\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
            env1.subnet.expect("v4")
        )
    );
    // the key joins both subnets; the value carries PublicIPv6 and BackendV6Data
    let key = format!(
        "{}&{}",
        subnet(env1).replace('/', "-"),
        v6.trunc().to_string().replace('/', "-")
    );
    assert!(lab.lease_keys().expect("keys").contains(&key), "{key}");
    let value = lab.lease_value(&key).expect("get");
    assert!(
        value.contains(&format!("\"PublicIPv6\":\"{}\"", h1.ip6)),
        "{value}"
    );
    assert!(
        value.contains("\"BackendV6Data\":{\"VNI\":1,\"VtepMAC\":"),
        "{value}"
    );
    let links = String::from_utf8_lossy(
        &sh("ip", &["-n", &h1.ns, "link", "show", "flannel-v6.1"])
            .expect("v6 device")
            .stdout,
    )
    .into_owned();
    assert!(links.contains("mtu 1430"), "underlay 1500 - 70: {links}");

    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("IPv4 between pods");
    lab.ping(&a, b.ip6.expect("v6 pod"), Duration::from_secs(10))
        .expect("IPv6 between pods");
    lab.ping(&b, a.ip6.expect("v6 pod"), Duration::from_secs(10))
        .expect("IPv6 back");

    // ip6 masquerade rules next to the IPv4 ones
    let saved = String::from_utf8_lossy(
        &sh(
            "ip",
            &["netns", "exec", &h1.ns, "ip6tables-save", "-t", "nat"],
        )
        .expect("save")
        .stdout,
    )
    .into_owned();
    let rules: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A FLANNEL-POSTRTG "))
        .collect();
    assert_eq!(rules.len(), 6, "{saved}");
    assert!(saved.contains("! -d ff00::/8"), "{saved}");
}

#[test]
fn ipv6_only_vxlan() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"vxlan"}}"#,
        2,
        &[],
    );
    let (h1, env1) = &hosts[0];
    assert!(
        env1.network.is_none() && env1.subnet.is_none(),
        "no IPv4 lines"
    );
    let v6 = env1
        .ipv6_subnet
        .expect("v6")
        .trunc()
        .to_string()
        .replace('/', "-");
    assert!(lab
        .lease_keys()
        .expect("keys")
        .contains(&format!("0.0.0.0-0&{v6}")));
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip6.expect("v6"), Duration::from_secs(10))
        .expect("IPv6-only pods");
}

#[test]
fn dual_stack_host_gw_routes_both_families_via_peers() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"host-gw"}}"#,
        2,
        &[],
    );
    let (h1, _) = &hosts[0];
    let (h2, env2) = &hosts[1];
    let peer6 = env2.ipv6_subnet.expect("v6").trunc().to_string();
    // (once, under a loaded suite, this took over 10 s: the agents' logs
    // are in the failure to say why next time)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let route = loop {
        let out = sh("ip", &["-n", &h1.ns, "-6", "route", "show", &peer6]).expect("ip route");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !text.is_empty() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no IPv6 route to {peer6} on h1 after 20 s\nh1:\n{}\nh2:\n{}",
            lab.agent_log(h1),
            lab.agent_log(h2)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        route.contains(&format!("via {} dev eth0", h2.ip6)),
        "{route}"
    );
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("IPv4 over host-gw");
    lab.ping(&a, b.ip6.expect("v6"), Duration::from_secs(10))
        .expect("IPv6 over host-gw");
}

#[test]
fn vxlan_parameters_are_honoured_and_tcp_flows() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400,"GBP":true,"Learning":true}}"#,
        2,
        &[],
    );
    let (h1, env1) = &hosts[0];
    assert_eq!(env1.mtu, Some(1400), "Backend.MTU wins over underlay - 50");
    let dev = String::from_utf8_lossy(
        &sh("ip", &["-n", &h1.ns, "-d", "link", "show", "flannel.42"])
            .expect("flannel.42")
            .stdout,
    )
    .into_owned();
    for want in ["mtu 1400", "vxlan id 42", "dstport 4789", "gbp"] {
        assert!(dev.contains(want), "{want:?} in {dev}");
    }
    assert!(!dev.contains("nolearning"), "Learning: true: {dev}");
    let value = lab
        .lease_value(&subnet(env1).replace('/', "-"))
        .expect("get");
    assert!(value.contains("\"VNI\":42"), "{value}");
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10))
        .expect("ping over VNI 42 / port 4789");
    let gbps = lab.iperf(&b, &a, 1).expect("iperf3 over vxlan");
    assert!(gbps > 0.01, "TCP over vxlan: {gbps} Gbit/s");
}

#[test]
fn host_gw_carries_tcp() {
    let mut lab = lab();
    let hosts = start(
        &mut lab,
        r#"{"Network":"172.30.0.0/16","Backend":{"Type":"host-gw"}}"#,
        2,
        &[],
    );
    let a = lab.pod(&hosts[0].0, "a").expect("pod");
    let b = lab.pod(&hosts[1].0, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(10)).expect("ping");
    let gbps = lab.iperf(&b, &a, 1).expect("iperf3 over host-gw");
    assert!(gbps > 0.01, "TCP over host-gw: {gbps} Gbit/s");
}

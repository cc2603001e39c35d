use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

#[test]
fn severities_map_to_exit_codes() {
    let ok = ip_forward(Some("1"));
    let bad = ip_forward(Some("0"));
    assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
    assert_eq!(exit_code(&[ok.clone(), bad.clone()]), 2);
    assert_eq!(
        exit_code(&[
            ok,
            checksum_offload("flannel.1", Some("tx-checksum-ip-generic: on"))
        ]),
        1
    );
    assert!(render(&[bad]).contains("fix: sysctl -w net.ipv4.ip_forward=1"));
}

#[test]
fn forward_drop_needs_accepts() {
    let n = Some(net("172.30.0.0/16"));
    assert_eq!(
        forward_policy(Some(":FORWARD ACCEPT [0:0]\n"), n).severity,
        Severity::Ok
    );
    assert_eq!(
        forward_policy(Some(":FORWARD DROP [0:0]\n"), n).severity,
        Severity::Error
    );
    let chain =
        "-A FLANNEL-FWD -s 172.30.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n";
    let jump = "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n";
    let accepted = format!(":FORWARD DROP [0:0]\n{chain}{jump}");
    assert_eq!(forward_policy(Some(&accepted), n).severity, Severity::Ok);
    // the accepting chain is no use when nothing jumps to it
    let orphan = format!(":FORWARD DROP [0:0]\n{chain}");
    assert_eq!(forward_policy(Some(&orphan), n).severity, Severity::Error);
    let direct = ":FORWARD DROP [0:0]\n-A FORWARD -d 172.30.0.0/16 -j ACCEPT\n";
    assert_eq!(forward_policy(Some(direct), n).severity, Severity::Ok);
}

#[test]
fn docker_bridge_must_sit_in_the_subnet() {
    let s = Some(net("172.30.14.1/24"));
    let good = [net("172.30.14.1/24")];
    let bad = [net("172.17.0.1/16")];
    assert_eq!(
        docker_bridge(Some((&good, 1450)), s, Some(1450)).severity,
        Severity::Ok
    );
    assert_eq!(
        docker_bridge(Some((&bad, 1500)), s, Some(1450)).severity,
        Severity::Error
    );
    assert_eq!(
        docker_bridge(Some((&good, 1500)), s, Some(1450)).severity,
        Severity::Error
    );
    assert_eq!(docker_bridge(None, s, Some(1450)).severity, Severity::Ok);
}

#[test]
fn mtu_and_mac_and_files() {
    assert_eq!(
        mtu(
            Some(("flannel.1", 1450)),
            Some(("eth0", 1500)),
            50,
            Some(1450)
        )
        .severity,
        Severity::Ok
    );
    assert_eq!(
        mtu(Some(("flannel.1", 1500)), Some(("eth0", 1500)), 50, None).severity,
        Severity::Error
    );
    assert_eq!(
        mtu(
            Some(("flannel.1", 1400)),
            Some(("eth0", 1500)),
            50,
            Some(1450)
        )
        .severity,
        Severity::Error
    );
    assert_eq!(
        vtep_mac(Some("aa:bb:cc:dd:ee:ff"), Some("AA:BB:CC:DD:EE:FF")).severity,
        Severity::Ok
    );
    assert_eq!(
        vtep_mac(Some("aa:bb:cc:dd:ee:ff"), Some("aa:bb:cc:dd:ee:00")).severity,
        Severity::Error
    );
    assert_eq!(
        subnet_file("/x", Err("missing".into()), None, None, "etcd").severity,
        Severity::Error
    );
    assert_eq!(
        subnet_file(
            "/x",
            Ok(()),
            Some(net("172.30.1.1/24")),
            Some(false),
            "etcd"
        )
        .severity,
        Severity::Error
    );
    assert_eq!(
        etcd(Err("refused".into()), None, "/k").severity,
        Severity::Error
    );
    assert_eq!(
        etcd(Ok(()), Some(Err("field Network: bad".into())), "/k").severity,
        Severity::Error
    );
    assert_eq!(
        bridge_netfilter(None, &["cni0".into()]).severity,
        Severity::Warning
    );
    assert_eq!(bridge_netfilter(None, &[]).severity, Severity::Ok);
}

#[test]
fn rules_split_across_iptables_backends_are_named_by_tool() {
    let kube = "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -j KUBE-SVC-X\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n";
    let docker = "*filter\n:DOCKER - [0:0]\n-A FORWARD -j DOCKER\n-A DOCKER -j RETURN\n-A FLANNEL-FWD -s 10.0.0.0/16 -j ACCEPT\nCOMMIT\n";
    let f = iptables_backends(
        Some("legacy (123 rules in legacy, 4 in nf_tables)"),
        &[("legacy", kube.into()), ("nf_tables", docker.into())],
    );
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message
            .contains("legacy holds 3 rules (KUBE-* (kube-proxy): 2 chains)"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains(
            "nf_tables holds 3 rules (DOCKER* (docker): 1 chain, FLANNEL-* (flanneld): 1 chain)"
        ),
        "{}",
        f.message
    );
    let masq = "*nat\n-A POSTROUTING -s 10.0.0.0/16 -j MASQUERADE\nCOMMIT\n";
    let f = iptables_backends(None, &[("legacy", masq.into()), ("nf_tables", kube.into())]);
    assert!(
        f.message
            .contains("legacy holds 1 rule (1 rule in built-in chains)"),
        "{}",
        f.message
    );
    assert!(!f.message.contains('\n'));
    let one = iptables_backends(
        None,
        &[("legacy", String::new()), ("nf_tables", kube.into())],
    );
    assert_eq!(one.severity, Severity::Ok);
    assert!(
        one.message
            .contains("all 3 iptables rules are in nf_tables"),
        "{}",
        one.message
    );
    assert_eq!(
        iptables_backends(None, &[("legacy", String::new())]).severity,
        Severity::Ok
    );
    let none = iptables_backends(None, &[]);
    assert_eq!(none.severity, Severity::Ok);
    assert!(none.message.contains("use nftables"), "{}", none.message);
}

#[test]
fn ipsec_charon_installed_and_answering() {
    assert_eq!(
        ipsec_charon(Some("/usr/lib/ipsec/charon"), true).severity,
        Severity::Ok
    );
    let missing = ipsec_charon(None, false);
    assert_eq!(missing.severity, Severity::Error);
    assert!(missing
        .fix
        .as_deref()
        .is_some_and(|f| f.contains("strongswan-charon")));
    let idle = ipsec_charon(Some("/usr/lib/ipsec/charon"), false);
    assert_eq!(idle.severity, Severity::Warning);
    assert!(
        idle.message.contains("/usr/lib/ipsec/charon"),
        "{}",
        idle.message
    );
}

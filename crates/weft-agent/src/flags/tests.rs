use super::*;

fn parse(args: &[&str]) -> AgentArgs {
    let mut argv = vec!["flanneld"];
    argv.extend_from_slice(args);
    parse_flanneld(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn parse_err(args: &[&str]) -> String {
    let mut argv = vec!["flanneld"];
    argv.extend_from_slice(args);
    match parse_flanneld(argv) {
        Ok(a) => panic!("{args:?} accepted: {a:?}"),
        Err(e) => e.to_string(),
    }
}

/// The etcd endpoints the etcd source gets.
fn etcd_endpoints(a: &AgentArgs) -> Vec<String> {
    match a.options().expect("options").source {
        crate::options::SourceOptions::Etcd(e) => e.connect.endpoints,
        crate::options::SourceOptions::Kube(_) => panic!("etcd mode"),
    }
}

#[test]
fn defaults_match_flanneld() {
    let a = parse(&[]);
    assert_eq!(
        etcd_endpoints(&a),
        vec!["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
    );
    assert_eq!(a.etcd_prefix, "/coreos.com/network");
    assert_eq!(a.subnet_file, "/run/flannel/subnet.env");
    assert_eq!(a.subnet_lease_renew_margin, 60);
    assert!(!a.ip_masq);
    assert_eq!(a.iptables_resync, 5);
    assert!(a.iptables_forward_rules);
    assert_eq!(a.healthz_port, 0);
    assert!(a.iface.is_empty());
}

#[test]
fn every_go_flag_spelling() {
    for argv in [
        &["-etcd-prefix=/kube-centos/network"][..],
        &["--etcd-prefix=/kube-centos/network"],
        &["-etcd-prefix", "/kube-centos/network"],
        &["--etcd-prefix", "/kube-centos/network"],
    ] {
        assert_eq!(parse(argv).etcd_prefix, "/kube-centos/network", "{argv:?}");
    }
}

#[test]
fn the_articles_wrapper_command_line() {
    let a = parse(&[
        "-etcd-endpoints=http://192.0.2.10:2379",
        "-etcd-prefix=/kube-centos/network",
        "-iface",
        "eth1",
        "-iface=192.0.2.7",
        "-ip-masq",
        "-v=2",
    ]);
    assert_eq!(etcd_endpoints(&a), vec!["http://192.0.2.10:2379"]);
    assert_eq!(a.iface, vec!["eth1", "192.0.2.7"]);
    assert!(a.ip_masq);
    assert_eq!(a.v, 2);
}

#[test]
fn flannel_v0_28_flags() {
    let a = parse(&[
        "-ip-masq",
        "-ip-masq-fully-random-disable",
        "-ip-blackhole-route",
    ]);
    assert!(a.ip_masq_fully_random_disable && a.ip_blackhole_route);
    let o = a.options().expect("options");
    assert!(!o.firewall.fully_random && o.firewall.blackhole_route);
    let d = parse(&[]).options().expect("options");
    assert!(d.firewall.fully_random && !d.firewall.blackhole_route);
    // klog's flags are accepted
    let k = parse(&["-vmodule=main=2", "-log_backtrace_at=main.go:1"]);
    assert_eq!(k.vmodule.as_deref(), Some("main=2"));
}

#[test]
fn go_booleans() {
    assert!(parse(&["-ip-masq"]).ip_masq);
    assert!(parse(&["-ip-masq=true"]).ip_masq);
    assert!(parse(&["-ip-masq=1"]).ip_masq);
    assert!(!parse(&["-ip-masq=false"]).ip_masq);
    assert!(!parse(&["--iptables-forward-rules=F"]).iptables_forward_rules);
    assert!(parse_err(&["-ip-masq=yes"]).contains("ip-masq"));
    assert!(parse(&["-version"]).version);
    assert!(parse(&["-logtostderr=true", "-alsologtostderr"]).logtostderr == Some(true));
}

#[test]
fn bad_flags_are_named() {
    assert!(parse_err(&["-subnet-lease-renew-margin=0"]).contains("subnet-lease-renew-margin"));
    assert!(parse_err(&["-subnet-lease-renew-margin=1440"]).contains("subnet-lease-renew-margin"));
    assert!(parse_err(&["-healthz-port=99999"]).contains("healthz-port"));
    assert!(parse_err(&["-no-such-flag"]).contains("no-such-flag"));
    assert!(parse_err(&["-v=loud"]).contains("--v"));
}

#[test]
fn normalisation_leaves_other_arguments() {
    let out = normalize_go_flags([
        "-x", "-iface=a", "-h", "--iface", "b", "-v=2", "-5", "--", "-iface",
    ]);
    assert_eq!(
        out,
        vec![
            "-x",
            "--iface=a",
            "-h",
            "--iface",
            "b",
            "--v=2",
            "-5",
            "--",
            "-iface"
        ]
    );
}

#[test]
fn kubernetes_mode_flags_and_defaults_match_flanneld() {
    let a = parse(&[]);
    assert!(!a.kube.kube_subnet_mgr);
    assert_eq!(a.kube.kube_annotation_prefix, "flannel.alpha.coreos.com");
    assert_eq!(a.kube.net_config_path, "/etc/kube-flannel/net-conf.json");
    assert!(a.set_node_network_unavailable);
    assert_eq!(a.kube.kube_api_url, None);
    assert_eq!(a.kube.kubeconfig_file, None);
    let a = parse(&[
        "--kube-subnet-mgr",
        "-kube-api-url=https://198.18.0.1:6443",
        "-kubeconfig-file",
        "/etc/kubernetes/flannel.kubeconfig",
        "-kube-annotation-prefix=example.com/net",
        "-net-config-path=/etc/weft/net-conf.json",
        "-set-node-network-unavailable=false",
    ]);
    assert!(a.kube.kube_subnet_mgr);
    assert_eq!(
        a.kube.kube_api_url.as_deref(),
        Some("https://198.18.0.1:6443")
    );
    assert_eq!(
        a.kube.kubeconfig_file.as_deref(),
        Some("/etc/kubernetes/flannel.kubeconfig")
    );
    assert_eq!(a.kube.kube_annotation_prefix, "example.com/net");
    assert_eq!(a.kube.net_config_path, "/etc/weft/net-conf.json");
    assert!(!a.set_node_network_unavailable);
}

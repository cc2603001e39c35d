//! End to end: the wireguard backend (userspace here: this kernel has no
//! WireGuard module) on hosts in network namespaces with a real etcd,
//! `wg` from wireguard-tools reading the devices, and wireguard-go as a
//! peer configured the way flanneld configures its devices.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_core::subnet_file::SubnetEnv;
use weft_lab::{eventually, sh, Host, Lab};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const WG_NET: &str = r#"{"Network":"172.30.0.0/16","Backend":{"Type":"wireguard"}}"#;

fn lab() -> Lab {
    Lab::new("wwg", Path::new(WEFT)).expect("lab: these tests need root")
}

fn key_file(lab: &Lab, h: &Host) -> PathBuf {
    lab.dir().join(&h.name).join("wgkey")
}

fn socket_dir(lab: &Lab, h: &Host) -> PathBuf {
    lab.dir().join(&h.name).join("wg")
}

/// Starts weft's agent on `h` with its own key file and socket folder.
fn start_agent(lab: &mut Lab, h: &Host, extra: &[&str]) {
    let mut flags = vec![format!(
        "--wireguard-socket-dir={}",
        socket_dir(lab, h).display()
    )];
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let args = lab.agent_args(h, &flags).expect("args");
    let env = vec![(
        "WIREGUARD_KEY_FILE".to_string(),
        key_file(lab, h).display().to_string(),
    )];
    lab.start_agent_with(h, WEFT, &args, &env).expect("agent");
}

fn hosts(lab: &mut Lab, config: &str, n: u8) -> Vec<(Host, SubnetEnv)> {
    lab.cluster_started_by(config, n, 11, |lab, h| {
        start_agent(lab, h, &[]);
        Ok(())
    })
    .expect("cluster")
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wg <args…>` on `h` against weft's socket folder: wg looks for
/// sockets in /var/run/wireguard only, so the folder is mounted there in
/// a private mount namespace.
fn wg(lab: &Lab, h: &Host, args: &str) -> String {
    let script = format!(
        "mount -t tmpfs weft-wg /run && mkdir /run/wireguard && mount --bind {} /run/wireguard && wg {args}",
        socket_dir(lab, h).display()
    );
    text(
        sh(
            "ip",
            &["netns", "exec", &h.ns, "unshare", "-m", "sh", "-c", &script],
        )
        .unwrap_or_else(|e| panic!("wg {args} on {}: {e}", h.name)),
    )
}

/// `weft <args…>` in `h`'s namespace with the lab's etcd and `h`'s subnet file.
fn weft_on(lab: &Lab, h: &Host, args: &[&str]) -> String {
    let etcd = format!("--etcd-endpoints={}", lab.etcd_url().expect("etcd"));
    let file = format!("--subnet-file={}", lab.subnet_file(h).display());
    let mut a = vec!["netns", "exec", h.ns.as_str(), WEFT];
    a.extend_from_slice(args);
    a.push(&etcd);
    a.push(&file);
    let out = std::process::Command::new("ip")
        .args(&a)
        .output()
        .expect("weft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lease_key(env: &SubnetEnv) -> String {
    env.subnet
        .expect("subnet")
        .trunc()
        .to_string()
        .replace('/', "-")
}

/// The PublicKey in a host's lease.
fn published_key(lab: &Lab, env: &SubnetEnv) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&lab.lease_value(&lease_key(env)).expect("lease")).expect("json");
    v["BackendData"]["PublicKey"]
        .as_str()
        .expect("PublicKey")
        .to_string()
}

#[test]
fn three_hosts_encrypt_pod_traffic_and_follow_keys_and_leases() {
    let mut lab = lab();
    let hosts = hosts(&mut lab, WG_NET, 3);
    let (h1, env1) = &hosts[0];
    assert_eq!(env1.mtu, Some(1420), "underlay 1500 - 80");

    // the lease is flanneld's: BackendType wireguard, PublicKey and Port
    let value = lab.lease_value(&lease_key(env1)).expect("lease");
    let public = published_key(&lab, env1);
    assert_eq!(
        value,
        format!(
            r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"wireguard","BackendData":{{"PublicKey":"{public}","Port":51820}}}}"#,
            h1.ip
        )
    );
    // the key file: base64 of 32 bytes, 0400, and the lease's key is its public half
    let kf = key_file(&lab, h1);
    let mode = std::fs::metadata(&kf)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);
    let derived =
        text(sh("sh", &["-c", &format!("wg pubkey < {}", kf.display())]).expect("wg pubkey"));
    assert_eq!(derived.trim(), public);

    // the device as flanneld leaves it: /32 address, the network routed into it
    let addr = text(sh("ip", &["-n", &h1.ns, "addr", "show", "flannel-wg"]).expect("device"));
    let own = env1.subnet.expect("subnet").network();
    assert!(addr.contains(&format!("inet {own}/32")), "{addr}");
    assert!(addr.contains("mtu 1420"), "{addr}");
    let routes = text(sh("ip", &["-n", &h1.ns, "route", "show", "172.30.0.0/16"]).expect("route"));
    assert!(routes.contains("dev flannel-wg"), "{routes}");

    let pods: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, (h, _))| lab.pod(h, &format!("p{i}")).expect("pod"))
        .collect();
    for (i, a) in pods.iter().enumerate() {
        for b in pods.iter().skip(i + 1) {
            lab.ping(a, b.ip, Duration::from_secs(15)).expect("ping");
            lab.ping(b, a.ip, Duration::from_secs(15))
                .expect("ping back");
        }
    }

    // wg reads the userspace device over its socket
    let show = wg(&lab, h1, "show flannel-wg");
    assert!(show.contains("listening port: 51820"), "{show}");
    assert!(show.contains("private key: (hidden)"), "{show}");
    for (_, env) in &hosts[1..] {
        let k = published_key(&lab, env);
        assert!(show.contains(&format!("peer: {k}")), "{show}");
        assert!(
            show.contains(&format!("allowed ips: {}", env.subnet.expect("s").trunc())),
            "{show}"
        );
    }
    assert!(show.contains("latest handshake"), "{show}");

    // weft status and weft doctor say which WireGuard, and never a key
    let sock = format!("--wireguard-socket-dir={}", socket_dir(&lab, h1).display());
    let status = weft_on(&lab, h1, &["status", "--iface", "eth0", &sock]);
    assert!(
        status.contains("wireguard flannel-wg: userspace, port 51820, 2 peers, 2 with a handshake"),
        "{status}"
    );
    let doctor = weft_on(&lab, h1, &["doctor", "--output", "json", &sock]);
    let findings: serde_json::Value = serde_json::from_str(&doctor).expect("doctor json");
    let wg_finding = findings
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "wireguard")
        .unwrap_or_else(|| panic!("no wireguard finding: {doctor}"));
    assert_eq!(wg_finding["severity"], "ok", "{doctor}");
    assert!(
        wg_finding["message"]
            .as_str()
            .unwrap_or("")
            .contains("userspace WireGuard"),
        "{doctor}"
    );
    let secret = std::fs::read_to_string(key_file(&lab, h1)).expect("key");
    for text in [&status, &doctor, &lab.agent_log(h1)] {
        assert!(
            !text.contains(secret.trim()),
            "the private key leaks: {text}"
        );
    }

    // on the underlay: only WireGuard datagrams, no pod payload in clear
    let cap = weft_lab::Capture::start(&lab, h1, "eth0", "underlay").expect("tcpdump");
    weft_lab::marked_ping(&pods[0], &pods[1]).expect("marked ping");
    let gbps = lab.iperf(&pods[1], &pods[0], 2).expect("iperf3");
    assert!(gbps > 0.05, "TCP over wireguard: {gbps} Gbit/s");
    eprintln!("wireguard (userspace), pod to pod: {gbps:.2} Gbit/s (iperf3, 2 s)");
    cap.stop().assert_wireguard_only(100);

    // a restart keeps the key
    let (h2, env2) = &hosts[1];
    let before = published_key(&lab, env2);
    lab.stop_agent(h2, false);
    start_agent(&mut lab, h2, &[]);
    let env2b = lab
        .wait_subnet_env(h2, Duration::from_secs(20))
        .expect("subnet");
    assert_eq!(env2b.subnet, env2.subnet);
    assert_eq!(
        published_key(&lab, env2),
        before,
        "same key after a restart"
    );
    lab.ping(&pods[0], pods[1].ip, Duration::from_secs(15))
        .expect("ping after the restart");

    // a new key on h2 (key file removed): the others drop the old peer, take the new
    lab.stop_agent(h2, false);
    std::fs::remove_file(key_file(&lab, h2)).expect("remove key");
    start_agent(&mut lab, h2, &[]);
    let new = eventually(Duration::from_secs(20), "h2's new key in its lease", || {
        let k = published_key(&lab, env2);
        (k != before).then_some(k)
    });
    eventually(Duration::from_secs(20), "h1 follows h2's new key", || {
        let show = wg(&lab, h1, "show flannel-wg peers");
        (show.contains(&new) && !show.contains(&before)).then_some(())
    });
    lab.ping(&pods[0], pods[1].ip, Duration::from_secs(15))
        .expect("ping with h2's new key");

    // h3's lease deleted (its agent stopped): the peer goes from h1 and h2
    let (h3, env3) = &hosts[2];
    let k3 = published_key(&lab, env3);
    lab.stop_agent(h3, false);
    lab.etcdctl(&[
        "del",
        &format!("{}/subnets/{}", lab.etcd_prefix(), lease_key(env3)),
    ])
    .expect("del");
    for h in [h1, h2] {
        eventually(
            Duration::from_secs(20),
            "the peer of a deleted lease goes",
            || (!wg(&lab, h, "show flannel-wg peers").contains(&k3)).then_some(()),
        );
    }
}

#[test]
fn a_key_file_others_can_read_is_refused_naming_it() {
    let mut lab = lab();
    lab.start_etcd().expect("etcd");
    lab.put_config(WG_NET).expect("config");
    let h = lab.host("h1", 11).expect("host");
    let kf = key_file(&lab, &h);
    std::fs::write(&kf, "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").expect("key");
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    start_agent(&mut lab, &h, &[]);
    let code = lab
        .agent(&h)
        .expect("agent")
        .wait_exit(Duration::from_secs(20));
    assert!(
        code.is_some_and(|c| c != 0),
        "the agent refuses to run: {code:?}"
    );
    let log = lab.agent_log(&h);
    let line = format!("{} can be read by other users (mode 0644)", kf.display());
    assert!(log.contains(&line), "{log}");
    assert!(
        !log.contains("HIgo9"),
        "the key never reaches the log: {log}"
    );
    assert!(
        lab.lease_keys().expect("keys").is_empty(),
        "no lease taken with a refused key"
    );
}

#[test]
fn wireguard_go_configured_as_flanneld_would_is_a_peer_both_ways() {
    let mut lab = lab();
    let weft_hosts = hosts(&mut lab, WG_NET, 2);
    // h3: wireguard-go and wg, with a lease written as flanneld writes it
    let h3 = lab.host("h3", 13).expect("host");
    let (key, public) = weft_lab::wg_keypair(lab.dir(), "h3").expect("keys");
    let subnet: ipnet::Ipv4Net = "172.30.200.0/24".parse().expect("net");
    lab.etcdctl(&[
        "put",
        &format!("{}/subnets/172.30.200.0-24", lab.etcd_prefix()),
        &format!(
            r#"{{"PublicIP":"{}","PublicIPv6":null,"BackendType":"wireguard","BackendData":{{"PublicKey":"{public}","Port":51820}}}}"#,
            h3.ip
        ),
    ])
    .expect("h3's lease");
    lab.start_wireguard_go(&h3, &key, 51820, subnet, "172.30.0.0/16", 1420)
        .expect("wireguard-go");
    for (h, env) in &weft_hosts {
        let peer = weft_lab::WgPeerSpec {
            public_key: published_key(&lab, env),
            endpoint: format!("{}:51820", h.ip),
            allowed_ips: env.subnet.expect("s").trunc().to_string(),
        };
        lab.wireguard_go_peer(&h3, &peer).expect("wg set peer");
    }
    lab.write_subnet_env(
        &h3,
        &SubnetEnv::parse(
            "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.200.1/24\nFLANNEL_MTU=1420\nFLANNEL_IPMASQ=false\n",
        )
        .expect("env"),
    )
    .expect("subnet file");
    let p3 = lab.pod(&h3, "c").expect("pod on the wireguard-go host");
    for (i, (h, _)) in weft_hosts.iter().enumerate() {
        let p = lab.pod(h, &format!("w{i}")).expect("pod");
        lab.ping(&p, p3.ip, Duration::from_secs(15))
            .expect("weft → wireguard-go");
        lab.ping(&p3, p.ip, Duration::from_secs(15))
            .expect("wireguard-go → weft");
        let gbps = lab.iperf(&p3, &p, 1).expect("iperf3");
        assert!(gbps > 0.05, "TCP weft → wireguard-go: {gbps} Gbit/s");
    }
    // wireguard-go saw handshakes with both weft hosts
    let show = lab
        .wg_go(&h3, &["show", "flannel-wg", "latest-handshakes"])
        .expect("wg");
    assert_eq!(
        show.lines().filter(|l| !l.trim().ends_with("\t0")).count(),
        2,
        "{show}"
    );
}

#[test]
fn dual_stack_separate_mode_carries_ipv6_over_an_ipv6_underlay() {
    let mut lab = lab();
    let net = r#"{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"wireguard"}}"#;
    let hosts = hosts(&mut lab, net, 2);
    let (h1, env1) = &hosts[0];
    let (h2, env2) = &hosts[1];
    let v6 = env1.ipv6_subnet.expect("FLANNEL_IPV6_SUBNET");
    let key = format!(
        "{}&{}",
        lease_key(env1),
        v6.trunc().to_string().replace('/', "-")
    );
    let value = lab.lease_value(&key).expect("lease");
    let v: serde_json::Value = serde_json::from_str(&value).expect("json");
    assert_eq!(v["PublicIPv6"], h1.ip6.to_string(), "{value}");
    assert_eq!(v["BackendV6Data"]["Port"], 51821, "{value}");
    assert_eq!(
        v["BackendV6Data"]["PublicKey"], v["BackendData"]["PublicKey"],
        "{value}"
    );

    // one device per family; the IPv6 one has the /128 and the IPv6 network
    let addr = text(sh("ip", &["-n", &h1.ns, "addr", "show", "flannel-wg-v6"]).expect("v6 device"));
    assert!(
        addr.contains(&format!("inet6 {}/128", v6.network())),
        "{addr}"
    );
    let routes = text(
        sh(
            "ip",
            &["-n", &h1.ns, "-6", "route", "show", "2001:db8:f::/48"],
        )
        .expect("route"),
    );
    assert!(routes.contains("dev flannel-wg-v6"), "{routes}");

    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(15))
        .expect("IPv4 between pods");
    lab.ping(&a, b.ip6.expect("v6 pod"), Duration::from_secs(15))
        .expect("IPv6 between pods");
    lab.ping(&b, a.ip6.expect("v6 pod"), Duration::from_secs(15))
        .expect("IPv6 back");

    // the IPv6 peer is reached over the IPv6 underlay on ListenPortV6
    let show = wg(&lab, h1, "show flannel-wg-v6 endpoints");
    assert!(show.contains(&format!("[{}]:51821", h2.ip6)), "{show}");
    let show = wg(&lab, h1, "show flannel-wg endpoints");
    assert!(show.contains(&format!("{}:51820", h2.ip)), "{show}");
    let _ = env2;
}

#[test]
fn auto_mode_carries_both_families_on_one_device_with_a_psk() {
    let mut lab = lab();
    let psk = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    let net = format!(
        r#"{{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{{"Type":"wireguard","Mode":"auto","PSK":"{psk}","PersistentKeepaliveInterval":5}}}}"#
    );
    let hosts = hosts(&mut lab, &net, 2);
    let (h1, env1) = &hosts[0];
    let (h2, _) = &hosts[1];
    let links = text(sh("ip", &["-n", &h1.ns, "link", "show"]).expect("links"));
    assert!(links.contains("flannel-wg:"), "{links}");
    assert!(
        !links.contains("flannel-wg-v6"),
        "one device in auto mode: {links}"
    );
    let addr = text(sh("ip", &["-n", &h1.ns, "addr", "show", "flannel-wg"]).expect("device"));
    let v6 = env1.ipv6_subnet.expect("v6").network();
    assert!(addr.contains(&format!("inet6 {v6}/128")), "{addr}");
    assert!(
        addr.contains(&format!("inet {}/32", env1.subnet.expect("v4").network())),
        "{addr}"
    );

    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(15)).expect("IPv4");
    lab.ping(&a, b.ip6.expect("v6 pod"), Duration::from_secs(15))
        .expect("IPv6");
    lab.ping(&b, a.ip6.expect("v6 pod"), Duration::from_secs(15))
        .expect("IPv6 back");

    // one peer holding both subnets, over IPv4 (public on both ends), with the PSK
    let show = wg(&lab, h1, "show flannel-wg");
    assert!(
        show.contains(&format!("endpoint: {}:51820", h2.ip)),
        "{show}"
    );
    assert!(show.contains("preshared key: (hidden)"), "{show}");
    assert!(
        show.contains("persistent keepalive: every 5 seconds"),
        "{show}"
    );
    assert!(show.contains("2001:db8:f:"), "{show}");
    let sock = format!("--wireguard-socket-dir={}", socket_dir(&lab, h1).display());
    let status = weft_on(
        &lab,
        h1,
        &["status", "--iface", "eth0", "--output", "json", &sock],
    );
    for text in [&status, &lab.agent_log(h1), &show] {
        assert!(!text.contains(psk), "the PSK leaks: {text}");
    }
}

/// `Mode` ipv4 or ipv6 on a dual-stack network: one device for both
/// families, every peer reached over that underlay family, pods ping in
/// both families. Returns the endpoint line `wg` shows for h2.
fn single_device_mode(mode: &str) -> String {
    let mut lab = lab();
    let net = format!(
        r#"{{"Network":"172.30.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{{"Type":"wireguard","Mode":"{mode}"}}}}"#
    );
    let hosts = hosts(&mut lab, &net, 2);
    let (h1, _) = &hosts[0];
    let (h2, _) = &hosts[1];
    let links = text(sh("ip", &["-n", &h1.ns, "link", "show"]).expect("links"));
    assert!(links.contains("flannel-wg:"), "{mode}: {links}");
    assert!(
        !links.contains("flannel-wg-v6"),
        "{mode}: one device: {links}"
    );
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(h2, "b").expect("pod");
    lab.ping(&a, b.ip, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{mode}: IPv4 between pods: {e:#}"));
    lab.ping(&a, b.ip6.expect("v6 pod"), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{mode}: IPv6 between pods: {e:#}"));
    lab.ping(&b, a.ip6.expect("v6 pod"), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{mode}: IPv6 back: {e:#}"));
    let show = wg(&lab, h1, "show flannel-wg endpoints");
    show.lines()
        .find(|l| l.contains(':'))
        .unwrap_or_else(|| panic!("{mode}: no endpoint: {show}"))
        .to_string()
}

#[test]
fn ipv4_mode_carries_both_families_over_the_ipv4_underlay() {
    let endpoint = single_device_mode("ipv4");
    assert!(endpoint.ends_with("198.18.0.12:51820"), "{endpoint}");
}

#[test]
fn ipv6_mode_carries_both_families_over_the_ipv6_underlay() {
    let endpoint = single_device_mode("ipv6");
    assert!(endpoint.ends_with("[2001:db8:198::c]:51820"), "{endpoint}");
}

/// An IPv6-only network (`EnableIPv4: false`): the IPv6 device alone,
/// leases `0.0.0.0-0&<v6>`, pods ping over IPv6.
#[test]
fn ipv6_only_network_on_wireguard() {
    let mut lab = lab();
    let net = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:f::/48","Backend":{"Type":"wireguard"}}"#;
    let hosts = hosts(&mut lab, net, 2);
    let (h1, env1) = &hosts[0];
    let (h2, _) = &hosts[1];
    assert!(env1.subnet.is_none(), "no IPv4 subnet");
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
    let links = text(sh("ip", &["-n", &h1.ns, "link", "show"]).expect("links"));
    assert!(links.contains("flannel-wg-v6:"), "{links}");
    assert!(!links.contains("flannel-wg:"), "no IPv4 device: {links}");
    let a = lab.pod(h1, "a").expect("pod");
    let b = lab.pod(h2, "b").expect("pod");
    lab.ping(&a, b.ip6.expect("v6 pod"), Duration::from_secs(15))
        .expect("IPv6-only pods");
    let show = wg(&lab, h1, "show flannel-wg-v6 endpoints");
    assert!(show.contains(&format!("[{}]:51821", h2.ip6)), "{show}");
}

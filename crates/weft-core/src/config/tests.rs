use super::*;

fn ok(json: &str) -> NetConfig {
    NetConfig::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn err(json: &str) -> String {
    match NetConfig::parse(json) {
        Ok(c) => panic!("{json} accepted as {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn v4(c: &NetConfig) -> &SubnetPool {
    c.ipv4.as_ref().expect("ipv4 pool")
}

#[test]
fn article_config() {
    let c =
        ok(r#"{ "Network": "172.30.0.0/16", "SubnetLen": 24, "Backend": { "Type": "vxlan" } }"#);
    let p = v4(&c);
    assert_eq!(p.network().to_string(), "172.30.0.0/16");
    assert_eq!(p.subnet_len(), 24);
    assert_eq!(p.min().to_string(), "172.30.1.0");
    assert_eq!(p.max().to_string(), "172.30.255.0");
    assert_eq!(c.backend, BackendConfig::Vxlan(VxlanConfig::default()));
    assert!(c.ipv6.is_none());
}

#[test]
fn keys_are_case_insensitive_and_unknown_keys_ignored() {
    let c = ok(
        r#"{"network":"10.5.0.0/16","subnetlen":26,"BACKEND":{"type":"VXLAN","vni":42,"port":4789,"directrouting":true},"Whatever":1}"#,
    );
    assert_eq!(v4(&c).subnet_len(), 26);
    match c.backend {
        BackendConfig::Vxlan(v) => {
            assert_eq!(v.vni, 42);
            assert_eq!(v.port, 4789);
            assert!(v.direct_routing);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subnet_len_defaults() {
    assert_eq!(v4(&ok(r#"{"Network":"10.0.0.0/8"}"#)).subnet_len(), 24);
    assert_eq!(v4(&ok(r#"{"Network":"10.0.0.0/22"}"#)).subnet_len(), 24);
    assert_eq!(v4(&ok(r#"{"Network":"10.0.0.0/23"}"#)).subnet_len(), 25);
    assert_eq!(v4(&ok(r#"{"Network":"10.0.0.0/28"}"#)).subnet_len(), 30);
    assert!(err(r#"{"Network":"10.0.0.0/29"}"#).contains("Network"));
}

#[test]
fn missing_backend_is_udp() {
    let c = ok(r#"{"Network":"10.0.0.0/16"}"#);
    assert_eq!(c.backend, BackendConfig::Udp(UdpConfig { port: 8285 }));
    let c = ok(r#"{"Network":"10.0.0.0/16","Backend":{}}"#);
    assert_eq!(c.backend.type_name(), "udp");
    let c = ok(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"host-gw"}}"#);
    assert_eq!(c.backend, BackendConfig::HostGw);
}

#[test]
fn explicit_min_max() {
    let c = ok(
        r#"{"Network":"10.1.0.0/16","SubnetLen":28,"SubnetMin":"10.1.10.0","SubnetMax":"10.1.50.0"}"#,
    );
    let p = v4(&c);
    assert_eq!(p.min().to_string(), "10.1.10.0");
    assert_eq!(p.max().to_string(), "10.1.50.0");
    assert_eq!(p.capacity(), (0x3200 - 0x0a00) / 16 + 1);
}

#[test]
fn network_is_truncated() {
    let c = ok(r#"{"Network":"172.30.5.7/16"}"#);
    assert_eq!(v4(&c).network().to_string(), "172.30.0.0/16");
}

#[test]
fn bad_inputs_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("not json", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        ("{}", "field Network: missing"),
        (r#"{"Network":""}"#, "field Network"),
        (r#"{"Network":"172.30.0.0"}"#, "field Network"),
        (r#"{"Network":"fc00::/48"}"#, "field Network"),
        (r#"{"Network":17}"#, "field Network: must be a string"),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":"24"}"#,
            "field SubnetLen: must be a number",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":-1}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":24.5}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":16}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":17}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":31}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":33}"#,
            "field SubnetLen",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}"#,
            "field SubnetMin",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.0.5"}"#,
            "field SubnetMin",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMax":"11.0.0.0"}"#,
            "field SubnetMax",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.3.0"}"#,
            "field SubnetMax",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"x"}"#,
            "field SubnetMin",
        ),
        (
            r#"{"Network":"10.0.0.0/16","EnableIPv4":"yes"}"#,
            "field EnableIPv4",
        ),
        (
            r#"{"Network":"10.0.0.0/16","EnableIPv4":false}"#,
            "field EnableIPv4",
        ),
        (
            r#"{"Network":"10.0.0.0/16","EnableIPv6":true}"#,
            "field IPv6Network: missing",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":"vxlan"}"#,
            "field Backend: must be a JSON object",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":3}}"#,
            "field Backend.Type",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"geneve"}}"#,
            "field Backend.Type: \"geneve\" is not supported",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"tencent-vpc"}}"#,
            "field Backend.Type: \"tencent-vpc\" is a cloud vendor's backend",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"extension","SubnetAddCommand":"  "}}"#,
            "field Backend.SubnetAddCommand: holds only whitespace",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"extension","PreStartupCommand":["echo"]}}"#,
            "field Backend.PreStartupCommand: must be a string",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","PSK":"no pe!"}}"#,
            "field Backend.PSK: is not base64",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","PSK":"AAAA"}}"#,
            "field Backend.PSK: holds 3 bytes",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","Mode":"both"}}"#,
            "field Backend.Mode: \"both\" is not a mode",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","ListenPort":0}}"#,
            "field Backend.ListenPort",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","ListenPortV6":65536}}"#,
            "field Backend.ListenPortV6",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","MTU":600}}"#,
            "field Backend.MTU",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":"25s"}}"#,
            "field Backend.PersistentKeepaliveInterval",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#,
            "field Backend.VNI",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","VNI":"1"}}"#,
            "field Backend.VNI",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","Port":70000}}"#,
            "field Backend.Port",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","MTU":100}}"#,
            "field Backend.MTU",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"true"}}"#,
            "field Backend.DirectRouting",
        ),
        (
            r#"{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":-5}}"#,
            "field Backend.Port",
        ),
    ];
    for (json, want) in cases {
        let got = err(json);
        assert!(
            got.contains(want),
            "{json}: got {got:?}, want it to contain {want:?}"
        );
        assert!(!got.contains('\n'), "one-line error: {got:?}");
    }
}

#[test]
fn null_values_take_defaults() {
    let c =
        ok(r#"{"Network":"10.0.0.0/16","SubnetLen":null,"Backend":{"Type":"vxlan","VNI":null}}"#);
    assert_eq!(v4(&c).subnet_len(), 24);
    assert_eq!(c.backend, BackendConfig::Vxlan(VxlanConfig::default()));
}

#[test]
fn zero_port_means_default() {
    let c = ok(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","Port":0}}"#);
    match c.backend {
        BackendConfig::Vxlan(v) => assert_eq!(v.port, VXLAN_DEFAULT_PORT),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv6_and_dual_stack() {
    let c = ok(r#"{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#);
    let p6 = c.ipv6.as_ref().expect("v6");
    assert_eq!(p6.subnet_len(), 64);
    assert_eq!(p6.min().to_string(), "fc00:0:0:1::");
    let c = ok(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/120"}"#);
    assert!(c.ipv4.is_none());
    assert_eq!(c.ipv6.as_ref().expect("v6").subnet_len(), 122);
    assert!(err(
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}"#
    )
    .contains("IPv6SubnetLen"));
    assert!(
        err(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"10.0.0.0/8"}"#)
            .contains("IPv6Network")
    );
}

#[test]
fn enable_nftables() {
    assert!(!ok(r#"{"Network":"10.0.0.0/16"}"#).enable_nftables);
    assert!(ok(r#"{"Network":"10.0.0.0/16","EnableNFTables":true}"#).enable_nftables);
    assert!(err(r#"{"Network":"10.0.0.0/16","EnableNFTables":"yes"}"#).contains("EnableNFTables"));
}

#[test]
fn wireguard_defaults_and_fields() {
    use crate::config::{WgMode, WireguardConfig};
    let c = ok(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"wireguard"}}"#);
    assert_eq!(
        c.backend,
        BackendConfig::Wireguard(WireguardConfig::default())
    );
    assert_eq!(c.backend.type_name(), "wireguard");
    let c = ok(
        r#"{"Network":"10.0.0.0/16","Backend":{"type":"WireGuard","listenPort":5000,
        "ListenPortV6":5001,"MTU":1400,"psk":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
        "PersistentKeepaliveInterval":25,"Mode":"auto"}}"#,
    );
    let BackendConfig::Wireguard(w) = c.backend else {
        panic!("not wireguard")
    };
    assert_eq!(
        (w.listen_port, w.listen_port_v6, w.mtu, w.keepalive, w.mode),
        (5000, 5001, Some(1400), 25, WgMode::Auto)
    );
    assert!(w.psk.is_some());
    assert!(
        !format!("{w:?}").contains("HIgo9"),
        "the PSK never shows in Debug output"
    );
}

#[test]
fn extension_keys_as_flannel_reads_them() {
    let c = NetConfig::parse(
        r#"{"Network":"10.0.0.0/16","Backend":{"Type":"Extension",
            "prestartupcommand":"cat /etc/vtep",
            "PostStartupCommand":"",
            "SubnetAddCommand":"ip route add $SUBNET via $PUBLIC_IP"}}"#,
    )
    .expect("valid");
    let BackendConfig::Extension(e) = c.backend else {
        panic!("not extension: {:?}", c.backend);
    };
    assert_eq!(
        e.pre_startup.as_ref().map(|l| l.fields().to_vec()),
        Some(vec!["cat".to_string(), "/etc/vtep".to_string()])
    );
    assert_eq!(e.post_startup, None);
    assert_eq!(
        e.subnet_add.map(|l| l.to_string()).as_deref(),
        Some("ip route add $SUBNET via $PUBLIC_IP")
    );
    assert_eq!(e.subnet_remove, None);
}

#[test]
fn alloc_has_no_keys() {
    let c =
        NetConfig::parse(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"alloc"}}"#).expect("valid");
    assert_eq!(c.backend, BackendConfig::Alloc);
    assert_eq!(c.backend.type_name(), "alloc");
}

#[test]
fn ipip_keys() {
    let c = ok(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"ipip","directrouting":true}}"#);
    assert_eq!(
        c.backend,
        BackendConfig::Ipip(IpipConfig {
            direct_routing: true
        })
    );
    assert_eq!(
        ok(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"IPIP"}}"#).backend,
        BackendConfig::Ipip(IpipConfig::default())
    );
    assert!(
        err(r#"{"Network":"10.0.0.0/16","Backend":{"Type":"ipip","DirectRouting":1}}"#)
            .contains("field Backend.DirectRouting")
    );
}

fn ipsec_json(backend_keys: &str) -> String {
    format!(r#"{{"Network":"10.0.0.0/16","Backend":{{"Type":"ipsec"{backend_keys}}}}}"#)
}

#[test]
fn ipsec_keys_and_flanneld_defaults() {
    let psk = "k".repeat(96);
    let c = ok(&ipsec_json(&format!(r#","PSK":"{psk}""#)));
    let BackendConfig::Ipsec(cfg) = &c.backend else {
        panic!("{c:?}")
    };
    assert_eq!(cfg.psk.expose(), psk);
    assert!(!cfg.udp_encap);
    assert_eq!(cfg.esp_proposal, "aes128gcm16-sha256-prfsha256-ecp256");
    assert_eq!(c.backend.type_name(), "ipsec");
    assert!(!format!("{c:?}").contains(&psk), "the key never shows");
    let c = ok(&ipsec_json(&format!(
        r#","psk":"{psk}","udpencap":true,"ESPProposal":"aes256gcm16-sha384-modp3072""#
    )));
    let BackendConfig::Ipsec(cfg) = &c.backend else {
        panic!("{c:?}")
    };
    assert!(cfg.udp_encap);
    assert_eq!(cfg.esp_proposal, "aes256gcm16-sha384-modp3072");
}

#[test]
fn ipsec_refuses_what_flanneld_or_charon_would() {
    let short = err(&ipsec_json(&format!(r#","PSK":"{}""#, "k".repeat(95))));
    assert!(
        short.contains("field Backend.PSK: is too short: 95"),
        "{short}"
    );
    assert!(err(&ipsec_json("")).contains("field Backend.PSK"));
    let psk = "k".repeat(100);
    let ctrl = err(&ipsec_json(&format!(r#","PSK":"{psk}\n""#)));
    assert!(ctrl.contains("control characters"), "{ctrl}");
    let prop = err(&ipsec_json(&format!(
        r#","PSK":"{psk}","ESPProposal":"aes128 ; include /etc""#
    )));
    assert!(
        prop.contains("field Backend.ESPProposal") && prop.contains("not a strongSwan proposal"),
        "{prop}"
    );
    let encap = err(&ipsec_json(&format!(r#","PSK":"{psk}","UDPEncap":"yes""#)));
    assert!(encap.contains("field Backend.UDPEncap"), "{encap}");
}

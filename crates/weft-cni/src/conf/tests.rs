use super::*;

fn env() -> SubnetEnv {
    SubnetEnv::parse("FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.46.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
        .expect("article subnet file")
}

fn conf(json: &str) -> NetConf {
    NetConf::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn kube_flannel_conflist_entry_gives_upstreams_delegate() {
    let n = conf(
        r#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}"#,
    );
    let d = delegate_conf(&n, &env()).expect("delegate");
    // what upstream's plugin v1.1.2 saves (keys sorted as Go's encoder sorts them)
    let want: Value = serde_json::from_str(
        r#"{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":true,"ipam":{"ranges":[[{"subnet":"172.30.46.0/24"}]],"routes":[{"dst":"172.30.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}"#,
    )
    .expect("json");
    assert_eq!(d, want);
    assert_eq!(n.subnet_file, PathBuf::from(DEFAULT_SUBNET_FILE));
    assert_eq!(n.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn delegate_settings_win_and_ipam_extras_are_kept() {
    let n = conf(
        r#"{"cniVersion":"0.3.1","name":"n","type":"flannel","subnetFile":"/x/s.env","dataDir":"/x/d",
            "delegate":{"type":"ptp","ipMasq":false,"mtu":1400,"foo":"bar"},
            "ipam":{"dataDir":"/x/ipam","ranges":[[{"subnet":"1.2.3.0/24"}]],"routes":[{"dst":"10.0.0.0/8"}]},
            "runtimeConfig":{"portMappings":[]}}"#,
    );
    let d = delegate_conf(&n, &env()).expect("delegate");
    assert_eq!(d["type"], "ptp");
    assert_eq!(d["ipMasq"], false);
    assert_eq!(d["mtu"], 1400);
    assert_eq!(d["foo"], "bar");
    assert!(
        d.get("isGateway").is_none(),
        "isGateway only defaults for bridge"
    );
    assert_eq!(d["ipam"]["dataDir"], "/x/ipam");
    assert_eq!(
        d["ipam"]["ranges"],
        json!([[{"subnet": "172.30.46.0/24"}]]),
        "ranges always replaced"
    );
    assert_eq!(
        d["ipam"]["routes"],
        json!([{"dst": "10.0.0.0/8"}, {"dst": "172.30.0.0/16"}])
    );
    assert_eq!(d["runtimeConfig"], json!({"portMappings": []}));
    assert_eq!(n.subnet_file, PathBuf::from("/x/s.env"));
}

#[test]
fn agent_masquerading_turns_bridge_masquerading_off() {
    let mut e = env();
    e.ipmasq = Some(true);
    let d = delegate_conf(&conf(r#"{"cniVersion":"1.0.0","name":"n"}"#), &e).expect("delegate");
    assert_eq!(d["ipMasq"], false);
}

#[test]
fn bad_configs_get_the_right_codes() {
    let cases: &[(&str, u32, &str)] = &[
        ("{", code::DECODE, "error unmarshall network config"),
        ("[]", code::DECODE, "error unmarshall network config"),
        (r#"{"cniVersion":1}"#, code::DECODE, "cniVersion"),
        (
            r#"{"cniVersion":"1.0.0","delegate":"x"}"#,
            code::DECODE,
            "delegate",
        ),
        (
            r#"{"cniVersion":"0.2.0"}"#,
            code::INCOMPATIBLE_VERSION,
            "0.2.0",
        ),
        (r#"{"name":"n"}"#, code::INCOMPATIBLE_VERSION, "0.1.0"),
        (
            r#"{"cniVersion":"9.9.9"}"#,
            code::INCOMPATIBLE_VERSION,
            "9.9.9",
        ),
        (
            r#"{"cniVersion":"1.0.0","delegate":{"name":"x"}}"#,
            code::INVALID_CONFIG,
            "delegate.name",
        ),
        (
            r#"{"cniVersion":"1.0.0","delegate":{"ipam":{}}}"#,
            code::INVALID_CONFIG,
            "delegate.ipam",
        ),
    ];
    for (json, want_code, want_msg) in cases {
        let e = NetConf::parse(json.as_bytes()).expect_err(json);
        assert_eq!(e.code, *want_code, "{json}: {e}");
        assert!(e.msg.contains(want_msg), "{json}: {e}");
    }
    let n = conf(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"routes":"x"}}"#);
    assert_eq!(
        delegate_conf(&n, &env()).expect_err("routes").code,
        code::INVALID_CONFIG
    );
}

#[test]
fn incomplete_subnet_file_names_what_is_missing() {
    let e = SubnetEnv::parse("FLANNEL_SUBNET=172.30.46.1/24\n").expect("parse");
    let err =
        delegate_conf(&conf(r#"{"cniVersion":"1.0.0","name":"n"}"#), &e).expect_err("incomplete");
    assert_eq!(err.code, code::PLUGIN);
    assert!(
        err.msg
            .contains("FLANNEL_NETWORK, FLANNEL_MTU, FLANNEL_IPMASQ"),
        "{}",
        err.msg
    );
}

#[test]
fn error_json() {
    let e = CniError::new(code::DECODE, "error unmarshall network config: x");
    let v: Value = serde_json::from_slice(&e.to_json("0.4.0")).expect("json");
    assert_eq!(
        v,
        json!({"cniVersion": "0.4.0", "code": 6, "msg": "error unmarshall network config: x"})
    );
}

#[test]
fn check_routes_get_their_gateway() {
    let prev = json!({"ips": [{"address": "172.30.46.2/24", "gateway": "172.30.46.1"}],
        "routes": [{"dst": "172.30.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "172.30.46.1"}, {"dst": "10.0.0.0/8", "gw": "172.30.46.9"}]});
    let fixed = crate::plugin::with_route_gateways(prev);
    assert_eq!(
        fixed["routes"],
        json!([
            {"dst": "172.30.0.0/16", "gw": "172.30.46.1"},
            {"dst": "0.0.0.0/0", "gw": "172.30.46.1"},
            {"dst": "10.0.0.0/8", "gw": "172.30.46.9"}
        ])
    );
    let no_gw = crate::plugin::with_route_gateways(json!({"routes": [{"dst": "1.0.0.0/8"}]}));
    assert_eq!(no_gw["routes"], json!([{"dst": "1.0.0.0/8"}]));
}

//! The CNI plugin's stdin: `NetConf::parse`, `version_of`, and the delegate
//! config built from it with a fixed, complete subnet file.
//! Input: the stdin bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weft_cni::conf::{delegate_conf, version_of, NetConf};
use weft_core::subnet_file::SubnetEnv;

fn env() -> &'static SubnetEnv {
    static ENV: OnceLock<SubnetEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        SubnetEnv::parse(
            "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.14.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        )
        .expect("fixed subnet file")
    })
}

fuzz_target!(|data: &[u8]| {
    let version = version_of(data);
    let n = match NetConf::parse(data) {
        Ok(n) => n,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
            let _ = e.to_json(&version);
            return;
        }
    };
    assert_eq!(version, n.cni_version, "version_of disagrees with parse");
    // An incomplete subnet file is an error, never a panic.
    assert!(delegate_conf(&n, &SubnetEnv::default()).is_err());
    match delegate_conf(&n, env()) {
        Ok(d) => {
            assert_eq!(d["name"], n.name.as_str());
            assert_eq!(d["cniVersion"], n.cni_version.as_str());
            assert!(d.get("type").is_some() && d.get("mtu").is_some());
            let ipam = &d["ipam"];
            assert_eq!(
                ipam["ranges"],
                serde_json::json!([[{"subnet": "172.30.14.0/24"}]])
            );
            let routes = ipam["routes"].as_array().expect("routes is a list");
            assert_eq!(
                routes.last(),
                Some(&serde_json::json!({"dst": "172.30.0.0/16"}))
            );
            // The delegate config is written to disk and to the delegate's
            // stdin. (No equality check after re-parsing: serde_json's float
            // parsing is not exact without its float_roundtrip feature.)
            assert!(serde_json::to_vec(&d).is_ok());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
        }
    }
});

//! Lease creation against a real etcd in a network namespace: a subnet
//! one host holds is not free for another, whichever stack either key
//! names and wherever in the key the subnet stands.

use std::path::Path;

use weft_core::lease::{LeaseAttrs, LeaseKey};
use weft_etcd::{EtcdOptions, Registry};
use weft_lab::{in_netns, Lab};

fn key(text: &str) -> LeaseKey {
    text.parse().expect("a lease key")
}

#[test]
fn a_held_ipv4_subnet_is_not_free_behind_another_ipv6_subnet() {
    let mut lab = Lab::new("wcr", Path::new("/bin/false")).expect("lab (needs root)");
    lab.start_etcd().expect("etcd");
    let ns = lab.etcd_ns().expect("ns");
    let created = in_netns(&ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let options = EtcdOptions {
                    endpoints: vec!["http://127.0.0.1:2379".into()],
                    ..EtcdOptions::default()
                };
                let etcd = weft_etcd::connect(&options).await.expect("connect");
                let mut reg = Registry::new(etcd, "/coreos.com/network");
                let attrs: LeaseAttrs =
                    serde_json::from_str(r#"{"PublicIP":"198.18.0.11"}"#).expect("attrs");
                let mut created = Vec::new();
                for k in [
                    "172.30.62.0-24&2001:db8:f:1::-64",
                    // the same IPv4 subnet behind another IPv6 subnet
                    "172.30.62.0-24&2001:db8:f:1b::-64",
                    // the same IPv4 subnet alone
                    "172.30.62.0-24",
                    // another IPv4 subnet, alone, then a dual-stack key
                    // whose IPv4 subnet it holds
                    "172.30.63.0-24",
                    "172.30.63.0-24&2001:db8:f:2::-64",
                    // a free IPv4 subnet whose text starts like a held one
                    "172.30.6.0-24&2001:db8:f:3::-64",
                    // a held IPv6 subnet behind a free IPv4 subnet: given back
                    "172.30.7.0-24&2001:db8:f:3::-64",
                ] {
                    let got = reg.create(key(k), &attrs, 60).await.expect("create");
                    created.push((k, got.is_some()));
                }
                created
            })
    })
    .expect("in netns");
    assert_eq!(
        created,
        [
            ("172.30.62.0-24&2001:db8:f:1::-64", true),
            ("172.30.62.0-24&2001:db8:f:1b::-64", false),
            ("172.30.62.0-24", false),
            ("172.30.63.0-24", true),
            ("172.30.63.0-24&2001:db8:f:2::-64", false),
            ("172.30.6.0-24&2001:db8:f:3::-64", true),
            ("172.30.7.0-24&2001:db8:f:3::-64", false),
        ]
    );
    let keys = lab.lease_keys().expect("keys");
    assert!(
        !keys.iter().any(|k| k.starts_with("172.30.7.0-24")),
        "the lease given back is gone: {keys:?}"
    );
}

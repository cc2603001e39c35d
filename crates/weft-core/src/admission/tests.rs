use super::*;
use crate::lease::LeaseAttrs;

fn rules() -> Rules {
    Rules {
        v4: Some(FamilyRule {
            network: "172.30.0.0/16".parse().expect("net"),
            subnet_len: 24,
        }),
        v6: None,
    }
}

fn lease(key: &str, public: &str) -> Lease {
    Lease {
        key: key.parse().expect("key"),
        attrs: LeaseAttrs::parse(
            key,
            format!(r#"{{"PublicIP":"{public}","BackendType":"host-gw"}}"#).as_bytes(),
        )
        .expect("attrs"),
    }
}

fn own() -> LeaseKey {
    "172.30.1.0-24".parse().expect("own")
}

fn refused(v: Verdict) -> Refusal {
    match v {
        Verdict::Refused { refusal, .. } => refusal,
        Verdict::Admitted => panic!("admitted"),
    }
}

#[test]
fn a_lease_inside_the_network_with_the_cluster_length_is_admitted() {
    let mut a = Admission::new(rules(), own());
    assert_eq!(
        a.put(&lease("172.30.2.0-24", "198.18.0.12")),
        Verdict::Admitted
    );
    assert!(a.is_admitted(&"172.30.2.0-24".parse().expect("key")));
}

#[test]
fn hostile_subnets_are_refused_with_why() {
    let mut a = Admission::new(rules(), own());
    let r = refused(a.put(&lease("0.0.0.0-1", "198.18.0.12")));
    assert_eq!(r.reason(), "outside_network");
    assert_eq!(
        r.to_string(),
        "subnet 0.0.0.0/1 is not inside the network 172.30.0.0/16"
    );
    let r = refused(a.put(&lease("198.18.0.0-24", "198.18.0.12")));
    assert_eq!(r.reason(), "outside_network");
    let r = refused(a.put(&lease("172.30.0.0-16", "198.18.0.12")));
    assert_eq!(r.reason(), "subnet_length", "{r}");
    let r = refused(a.put(&lease("172.30.5.0-25", "198.18.0.12")));
    assert_eq!(
        r.to_string(),
        "subnet 172.30.5.0/25 is not a /24 (the cluster's subnet length)"
    );
    assert_eq!(a.refused_count(), 4);
}

#[test]
fn public_addresses_must_be_unicast_and_outside_the_overlay() {
    let mut a = Admission::new(rules(), own());
    for (ip, why) in [
        ("0.0.0.0", "is unspecified"),
        ("127.0.0.1", "is a loopback address"),
        ("224.0.0.22", "is a multicast address"),
        ("255.255.255.255", "is the broadcast address"),
        ("172.30.9.1", "is inside the overlay network"),
    ] {
        let r = refused(a.put(&lease("172.30.2.0-24", ip)));
        assert_eq!(r.to_string(), format!("PublicIP {ip} {why}"));
    }
    assert_eq!(
        a.put(&lease("172.30.2.0-24", "198.18.0.12")),
        Verdict::Admitted
    );
    assert_eq!(a.refused_count(), 0);
}

#[test]
fn own_and_taken_subnets_are_refused_and_a_waiting_lease_follows_the_holder() {
    let rules = Rules {
        v6: Some(FamilyRule {
            network: "fc00::/48".parse().expect("net"),
            subnet_len: 64,
        }),
        ..rules()
    };
    let own: LeaseKey = "172.30.1.0-24&fc00:0:0:1::-64".parse().expect("own");
    let mut a = Admission::new(rules, own);
    let r = refused(a.put(&lease("172.30.1.0-24&fc00:0:0:9::-64", "198.18.0.13")));
    assert_eq!(r.to_string(), "subnet 172.30.1.0/24 is this host's own");
    let first = lease("172.30.2.0-24&fc00:0:0:2::-64", "198.18.0.12");
    let second = lease("172.30.2.0-24&fc00:0:0:3::-64", "198.18.0.13");
    assert_eq!(a.put(&first), Verdict::Admitted);
    let r = refused(a.put(&second));
    assert_eq!(
        r.to_string(),
        "subnet 172.30.2.0/24 is already held by lease 172.30.2.0-24&fc00:0:0:2::-64"
    );
    // the holder goes: the waiting lease takes the subnet
    assert_eq!(a.remove(&first.key), vec![second.clone()]);
    assert!(a.is_admitted(&second.key));
}

#[test]
fn a_refusal_is_new_once_per_value_not_per_listing() {
    let mut a = Admission::new(rules(), own());
    let bad = lease("10.0.0.0-8", "198.18.0.12");
    assert!(matches!(a.put(&bad), Verdict::Refused { new: true, .. }));
    assert!(matches!(a.put(&bad), Verdict::Refused { new: false, .. }));
    let v = a.reset(std::slice::from_ref(&bad));
    assert!(matches!(v[0], Verdict::Refused { new: false, .. }), "{v:?}");
    // a changed value is told again
    let changed = lease("10.0.0.0-8", "198.18.0.99");
    assert!(matches!(
        a.put(&changed),
        Verdict::Refused { new: true, .. }
    ));
}

#[test]
fn a_listing_keeps_the_holder_admitted_before_it() {
    let mut a = Admission::new(
        Rules {
            v6: Some(FamilyRule {
                network: "fc00::/48".parse().expect("net"),
                subnet_len: 64,
            }),
            ..rules()
        },
        own(),
    );
    let late = lease("172.30.2.0-24&fc00:0:0:3::-64", "198.18.0.13");
    let early = lease("172.30.2.0-24&fc00:0:0:2::-64", "198.18.0.12");
    assert_eq!(a.put(&late), Verdict::Admitted);
    // in key order `early` comes first, but `late` held the subnet already
    let v = a.reset(&[early.clone(), late.clone()]);
    assert!(matches!(v[0], Verdict::Refused { .. }), "{v:?}");
    assert_eq!(v[1], Verdict::Admitted);
}

#[test]
fn a_changed_lease_that_turns_bad_gives_its_subnet_up() {
    let mut a = Admission::new(rules(), own());
    let good = lease("172.30.2.0-24", "198.18.0.12");
    assert_eq!(a.put(&good), Verdict::Admitted);
    let bad = lease("172.30.2.0-24", "0.0.0.0");
    assert!(matches!(a.put(&bad), Verdict::Refused { .. }));
    assert!(!a.is_admitted(&good.key));
    assert_eq!(a.put(&good), Verdict::Admitted);
}

#[test]
fn kubernetes_mode_takes_the_length_of_this_nodes_pod_range() {
    let pool = crate::subnet::SubnetPool::new("172.30.0.0/16".parse().expect("net"), 24);
    let own: LeaseKey = "172.30.1.0-25".parse().expect("own");
    let r = Rules::from_pools_and_own(Some(&pool), None, &own);
    assert_eq!(r.v4.map(|f| f.subnet_len), Some(25));
    let mut a = Admission::new(r, own);
    assert_eq!(
        a.put(&lease("172.30.1.128-25", "198.18.0.12")),
        Verdict::Admitted
    );
    assert!(matches!(
        a.put(&lease("172.30.2.0-24", "198.18.0.13")),
        Verdict::Refused { .. }
    ));
}

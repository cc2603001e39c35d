use super::*;

const P: &str = "flannel.alpha.coreos.com/";

fn names() -> AnnotationNames {
    AnnotationNames::new("flannel.alpha.coreos.com").expect("default prefix")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{P}{k}"), v.to_string()))
        .collect()
}

fn vxlan_attrs() -> LeaseAttrs {
    LeaseAttrs::vxlan(
        Ipv4Addr::new(198, 18, 0, 11),
        VxlanLeaseData {
            vni: 1,
            vtep_mac: "0e:4c:2f:10:aa:01".parse().expect("mac"),
        },
    )
}

#[test]
fn prefix_rules_are_flanneld_s() {
    let n = |p: &str| AnnotationNames::new(p).map(|a| a.public_ip);
    assert_eq!(
        n("flannel.alpha.coreos.com").as_deref(),
        Ok("flannel.alpha.coreos.com/public-ip")
    );
    assert_eq!(
        n("example.com/net").as_deref(),
        Ok("example.com/net-public-ip")
    );
    assert_eq!(
        n("example.com/net-").as_deref(),
        Ok("example.com/net-public-ip")
    );
    assert_eq!(n("example.com/").as_deref(), Ok("example.com/public-ip"));
    for bad in ["a/b/c", "nodots", "Example.com/x", "example.com/x y"] {
        let e = n(bad).expect_err(bad);
        assert!(e.contains("-kube-annotation-prefix"), "{e}");
    }
}

#[test]
fn vxlan_node_publishes_what_flanneld_writes() {
    let out = names().publish(&vxlan_attrs(), &BTreeMap::new());
    assert_eq!(
        out,
        map(&[
            ("backend-type", "vxlan"),
            ("backend-data", r#"{"VNI":1,"VtepMAC":"0e:4c:2f:10:aa:01"}"#),
            ("public-ip", "198.18.0.11"),
            ("kube-subnet-manager", "true"),
        ])
    );
}

#[test]
fn host_gw_and_udp_publish_null_backend_data() {
    let out = names().publish(
        &LeaseAttrs::host_gw(Ipv4Addr::new(198, 18, 0, 12)),
        &BTreeMap::new(),
    );
    assert_eq!(out[&format!("{P}backend-data")], "null");
    assert_eq!(out[&format!("{P}backend-type")], "host-gw");
    assert!(!out.contains_key(&format!("{P}backend-v6-data")));
    let out = names().publish(
        &LeaseAttrs::udp(Ipv4Addr::new(198, 18, 0, 12)),
        &BTreeMap::new(),
    );
    assert_eq!(out[&format!("{P}backend-type")], "");
    assert_eq!(out[&format!("{P}backend-data")], "null");
}

#[test]
fn dual_stack_publishes_both_families() {
    let mut a = LeaseAttrs::host_gw(Ipv4Addr::new(198, 18, 0, 12));
    a.public_ipv6 = Some("fd00:198:18::12".parse().expect("v6"));
    let out = names().publish(&a, &BTreeMap::new());
    assert_eq!(out[&format!("{P}backend-v6-data")], "null");
    assert_eq!(out[&format!("{P}public-ipv6")], "fd00:198:18::12");
}

#[test]
fn overwrite_replaces_the_published_address_and_patches_only_changes() {
    let n = names();
    let current = n.publish(&vxlan_attrs(), &BTreeMap::new());
    assert!(
        n.patch(&vxlan_attrs(), &current).is_empty(),
        "nothing changed"
    );
    let mut with = current.clone();
    with.insert(format!("{P}public-ip-overwrite"), "192.0.2.7".into());
    let patch = n.patch(&vxlan_attrs(), &with);
    assert_eq!(patch, map(&[("public-ip", "192.0.2.7")]));
}

#[test]
fn a_node_reads_back_as_the_lease_it_published() {
    let n = names();
    let anns = n.publish(&vxlan_attrs(), &BTreeMap::new());
    let cidrs = vec!["172.30.5.0/24".to_string()];
    let view = NodeView {
        name: "node5",
        annotations: &anns,
        pod_cidr: Some("172.30.5.0/24"),
        pod_cidrs: &cidrs,
    };
    let lease = n
        .lease_of(&view, true, false)
        .expect("valid")
        .expect("managed");
    assert_eq!(lease.key, "172.30.5.0-24".parse().expect("key"));
    assert_eq!(lease.attrs, vxlan_attrs());
    assert_eq!(
        n.stored_macs(&view).0,
        Some("0e:4c:2f:10:aa:01".parse().expect("mac"))
    );
}

#[test]
fn unmanaged_nodes_are_no_lease_and_bad_ones_name_the_annotation() {
    let n = names();
    let empty = BTreeMap::new();
    let view = NodeView {
        name: "bare",
        annotations: &empty,
        pod_cidr: None,
        pod_cidrs: &[],
    };
    // a Node with no annotations at all is fine (upstream v0.21.5 panicked)
    assert_eq!(n.lease_of(&view, true, false), Ok(None));
    let bad = map(&[("kube-subnet-manager", "true"), ("public-ip", "nope")]);
    let view = NodeView {
        annotations: &bad,
        pod_cidr: Some("172.30.6.0/24"),
        ..view
    };
    let e = n.lease_of(&view, true, false).expect_err("bad public-ip");
    assert!(e.contains("flannel.alpha.coreos.com/public-ip"), "{e}");
    let bad = map(&[
        ("kube-subnet-manager", "true"),
        ("public-ip", "198.18.0.1"),
        ("backend-data", "{"),
    ]);
    let view = NodeView {
        annotations: &bad,
        ..view
    };
    let e = n
        .lease_of(&view, true, false)
        .expect_err("bad backend-data");
    assert!(e.contains("backend-data"), "{e}");
}

#[test]
fn pod_cidrs_pick_one_range_per_family() {
    let list = vec![
        "fd00:10:244:5::/64".to_string(),
        "172.30.5.0/24".to_string(),
    ];
    let empty = BTreeMap::new();
    let view = NodeView {
        name: "n",
        annotations: &empty,
        pod_cidr: Some("fd00:10:244:5::/64"),
        pod_cidrs: &list,
    };
    let (v4, v6) = pod_cidrs(&view).expect("dual");
    assert_eq!(v4, Some("172.30.5.0/24".parse().expect("v4")));
    assert_eq!(v6, Some("fd00:10:244:5::/64".parse().expect("v6")));
    let three = vec![
        "172.30.5.0/24".to_string(),
        "172.30.6.0/24".to_string(),
        "fd00::/64".to_string(),
    ];
    assert!(pod_cidrs(&NodeView {
        pod_cidrs: &three,
        ..view
    })
    .is_err());
    let none = NodeView {
        pod_cidr: None,
        pod_cidrs: &[],
        ..view
    };
    assert_eq!(pod_cidrs(&none), Ok((None, None)));
    let bad = NodeView {
        pod_cidr: Some("x"),
        pod_cidrs: &[],
        ..view
    };
    assert!(pod_cidrs(&bad).expect_err("bad").contains("spec.podCIDRs"));
}

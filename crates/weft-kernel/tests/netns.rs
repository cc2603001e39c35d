//! The kernel edge against a real kernel, inside a fresh network namespace.

use std::net::IpAddr;
use std::path::Path;

use weft_core::plan::dataplane::diff;
use weft_core::plan::vxlan::VxlanPlanner;
use weft_core::plan::{DataPlane, Desired};
use weft_core::{LeaseAttrs, LeaseKey};
use weft_kernel::{Netlink, VxlanSpec};
use weft_lab::Lab;

fn lab() -> Lab {
    Lab::new("wtk", Path::new("/bin/false")).expect("lab (needs root)")
}

fn vxlan(nl: &mut Netlink) -> u32 {
    let spec = VxlanSpec {
        name: "flannel.1".into(),
        vni: 1,
        local: "198.18.0.11".parse().expect("ip"),
        port: 8472,
        underlay: weft_kernel::link_by_name(nl, "eth0")
            .expect("dump")
            .expect("eth0")
            .index,
        learning: false,
        gbp: false,
        mtu: 1450,
        mac: Some("02:00:00:00:00:01".parse().expect("mac")),
    };
    let l = weft_kernel::ensure_vxlan(nl, &spec).expect("vxlan");
    assert!(l.up);
    assert_eq!(l.mtu, 1450);
    assert_eq!(
        l.mac.map(|m| m.to_string()).as_deref(),
        Some("02:00:00:00:00:01")
    );
    // adopting it again changes nothing
    assert_eq!(
        weft_kernel::ensure_vxlan(nl, &spec).expect("again").index,
        l.index
    );
    l.index
}

fn desired(idx: u32, n: usize, nexthops: bool) -> Desired {
    let planner = VxlanPlanner {
        ifindex: idx,
        nexthops,
        direct: None,
        v6: false,
    };
    let mut d = Desired::default();
    for i in 0..n {
        let key: LeaseKey = format!("100.64.{}.0-24", i + 1).parse().expect("key");
        let attrs = LeaseAttrs::parse(
            "k",
            format!(r#"{{"PublicIP":"198.19.0.{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:00:00:{:02x}"}}}}"#, i + 1, i + 1).as_bytes(),
        )
        .expect("attrs");
        let e = planner.entries(&key, &attrs).expect("entries");
        d.upsert(e.route.dst, e);
    }
    d
}

fn round_trip(nexthops: bool) {
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let mut nl = lab.netlink(&h).expect("netlink");
    let idx = vxlan(&mut nl);
    assert!(
        weft_kernel::supports_nexthops(&mut nl),
        "this kernel has nexthop objects"
    );
    let d = desired(idx, 200, nexthops);
    let ops = diff(&DataPlane::default(), d.plane());
    let per_peer = if nexthops { 4 } else { 3 };
    assert_eq!(ops.len(), 200 * per_peer);
    let report = weft_kernel::apply(&mut nl, &ops).expect("apply");
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    assert_eq!(report.applied, 200 * per_peer);
    let back =
        weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(idx)).expect("read");
    assert_eq!(back.routes.len(), 200, "routes");
    assert_eq!(
        back.nexthops.len(),
        if nexthops { 200 } else { 0 },
        "nexthops"
    );
    assert_eq!(back.neighs.len(), 200, "neighbours");
    assert_eq!(back.fdb.len(), 200, "fdb");
    assert_eq!(&back, d.plane());
    assert!(diff(&back, d.plane()).is_empty());

    // remove everything again; deleting twice is fine
    let ops = diff(&back, &DataPlane::default());
    let report = weft_kernel::apply(&mut nl, &ops).expect("delete");
    assert!(report.failed.is_empty());
    let report = weft_kernel::apply(&mut nl, &ops).expect("delete again");
    assert!(
        report.failed.is_empty(),
        "deleting what is gone counts as done"
    );
    assert!(
        weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(idx))
            .expect("read")
            .is_empty()
    );
}

#[test]
fn apply_then_read_back_round_trips_with_gateway_routes() {
    round_trip(false);
}

#[test]
fn apply_then_read_back_round_trips_with_nexthop_objects() {
    round_trip(true);
}

#[test]
fn switching_route_forms_converges() {
    // routes written by flanneld (plain gateways) are taken over by
    // nexthop-object routes, and back, without leftovers
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let mut nl = lab.netlink(&h).expect("netlink");
    let idx = vxlan(&mut nl);
    for nexthops in [false, true, false] {
        let d = desired(idx, 20, nexthops);
        let current = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(idx))
            .expect("read");
        let report = weft_kernel::apply(&mut nl, &diff(&current, d.plane())).expect("apply");
        assert!(report.failed.is_empty(), "{:?}", report.failed.first());
        let back = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(idx))
            .expect("read");
        assert_eq!(&back, d.plane(), "nexthops={nexthops}");
    }
}

#[test]
fn refused_operations_are_reported_individually() {
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let mut nl = lab.netlink(&h).expect("netlink");
    let idx = vxlan(&mut nl);
    let d = desired(idx, 3, false);
    let mut ops = diff(&DataPlane::default(), d.plane());
    // a route through a device that does not exist
    let bad = weft_core::plan::RouteSpec {
        dst: "100.99.0.0/24".parse().expect("net"),
        via: weft_core::plan::RouteVia::Gateway(weft_core::plan::NextHop {
            gateway: "100.99.0.0".parse().expect("ip"),
            oif: 999_999,
            onlink: true,
        }),
    };
    ops.insert(2, weft_core::plan::Op::ReplaceRoute(bad));
    let report = weft_kernel::apply(&mut nl, &ops).expect("apply");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, weft_core::plan::Op::ReplaceRoute(bad));
    assert_eq!(report.applied, 9);
}

#[test]
fn address_and_interfaces() {
    let mut lab = lab();
    let h = lab.host("h1", 11).expect("host");
    let mut nl = lab.netlink(&h).expect("netlink");
    let idx = vxlan(&mut nl);
    weft_kernel::ensure_address(&mut nl, idx, "100.64.5.0/32".parse().expect("net")).expect("addr");
    weft_kernel::ensure_address(&mut nl, idx, "100.64.7.0/32".parse().expect("net"))
        .expect("readdr");
    let ifaces = weft_kernel::list_interfaces(&mut nl).expect("ifaces");
    let vx = ifaces
        .iter()
        .find(|i| i.index == idx)
        .expect("vxlan listed");
    let v4: Vec<String> = vx
        .addrs
        .iter()
        .filter(|a| a.addr().is_ipv4())
        .map(|a| a.to_string())
        .collect();
    assert_eq!(v4, vec!["100.64.7.0/32"], "the old address is replaced");
    let eth0 = ifaces.iter().find(|i| i.name == "eth0").expect("eth0");
    assert!(eth0.addrs.contains(&"198.18.0.11/24".parse().expect("net")));
    let probe: IpAddr = "198.18.0.99".parse().expect("ip");
    assert_eq!(
        weft_kernel::route_get_oif(&mut nl, probe)
            .expect("route get")
            .map(|r| r.0),
        Some(eth0.index)
    );
    assert_eq!(
        weft_kernel::default_route_oif(&mut nl, false).expect("dump"),
        None
    );
}

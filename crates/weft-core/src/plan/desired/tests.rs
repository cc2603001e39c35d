use std::net::IpAddr;

use super::*;
use crate::plan::dataplane::{diff, Op};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn neigh(ifindex: u32, ip: IpAddr, mac: MacAddr) -> NeighSpec {
    NeighSpec { ifindex, ip, mac }
}

fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

fn peer(third: u8, public_last: u8, m: MacAddr) -> (IpNet, PeerEntries) {
    let subnet: IpNet = format!("172.30.{third}.0/24").parse().expect("net");
    let gw = subnet.network();
    (
        subnet,
        PeerEntries {
            route: RouteSpec {
                dst: subnet,
                via: crate::plan::RouteVia::Nexthop(third as u32),
            },
            nexthop: Some(crate::plan::NexthopSpec {
                id: third as u32,
                hop: crate::plan::NextHop {
                    gateway: gw,
                    oif: 5,
                    onlink: true,
                },
            }),
            neigh: Some(neigh(5, gw, m)),
            fdb: Some(FdbSpec {
                ifindex: 5,
                mac: m,
                dst: ip(&format!("198.18.0.{public_last}")),
            }),
        },
    )
}

#[test]
fn full_diff_from_empty_adds_all_in_order() {
    let mut d = Desired::default();
    for i in 1..=3 {
        let (s, e) = peer(i, i, mac(i));
        d.upsert(s, e);
    }
    let ops = diff(&DataPlane::default(), d.plane());
    assert_eq!(ops.len(), 12);
    // FDB, neighbours and nexthops come before any route.
    let first_route = ops
        .iter()
        .position(|o| matches!(o, Op::ReplaceRoute(_)))
        .expect("route");
    assert_eq!(first_route, 9);
    assert!(ops[..first_route].iter().all(|o| matches!(
        o,
        Op::ReplaceFdb(_) | Op::ReplaceNeigh(_) | Op::ReplaceNexthop(_)
    )));
    // applying the ops reaches the desired state, and then nothing is left to do
    let mut cur = DataPlane::default();
    ops.iter().for_each(|o| cur.record(o));
    assert_eq!(&cur, d.plane());
    assert!(diff(&cur, d.plane()).is_empty());
}

#[test]
fn incremental_ops_track_the_full_diff() {
    let mut d = Desired::default();
    let mut kernel = DataPlane::default();
    type Step = Box<dyn Fn(&mut Desired) -> Vec<Op>>;
    let steps: Vec<(usize, Step)> = vec![
        (
            4,
            Box::new(|d| {
                let (s, e) = peer(1, 1, mac(1));
                d.upsert(s, e)
            }),
        ),
        (
            4,
            Box::new(|d| {
                let (s, e) = peer(2, 2, mac(2));
                d.upsert(s, e)
            }),
        ),
        (
            0,
            Box::new(|d| {
                let (s, e) = peer(2, 2, mac(2));
                d.upsert(s, e)
            }),
        ),
        // peer 1 gets a new MAC and public IP: neighbour replaced, FDB moved
        (
            3,
            Box::new(|d| {
                let (s, e) = peer(1, 9, mac(9));
                d.upsert(s, e)
            }),
        ),
        (
            4,
            Box::new(|d| d.remove("172.30.2.0/24".parse().expect("net"))),
        ),
        (
            0,
            Box::new(|d| d.remove("172.30.77.0/24".parse().expect("net"))),
        ),
    ];
    for (i, (want, step)) in steps.into_iter().enumerate() {
        let before = kernel.clone();
        let ops = step(&mut d);
        assert_eq!(ops.len(), want, "step {i}: {ops:?}");
        assert_eq!(
            ops.len(),
            diff(&before, d.plane()).len(),
            "step {i}: same as a full diff"
        );
        ops.iter().for_each(|o| kernel.record(o));
        assert_eq!(&kernel, d.plane(), "step {i}");
    }
    assert_eq!(d.peer_count(), 1);
}

#[test]
fn shared_mac_survives_until_last_claim_goes() {
    let mut d = Desired::default();
    let (s1, e1) = peer(1, 4, mac(4));
    let (s2, e2) = peer(2, 4, mac(4));
    d.upsert(s1, e1);
    d.upsert(s2, e2);
    assert_eq!(d.plane().fdb.len(), 1);
    let ops = d.remove(s1);
    assert!(
        ops.iter().all(|o| !matches!(o, Op::DeleteFdb(_))),
        "FDB still claimed: {ops:?}"
    );
    assert_eq!(d.plane().fdb.len(), 1, "still claimed by the second lease");
    let ops = d.remove(s2);
    assert!(ops.iter().any(|o| matches!(o, Op::DeleteFdb(_))));
    assert!(d.plane().is_empty());
}

#[test]
fn full_diff_deletes_strays() {
    let mut kernel = DataPlane::default();
    let (_, stray) = peer(50, 50, mac(50));
    kernel.record(&Op::ReplaceRoute(stray.route));
    kernel.record(&Op::ReplaceNexthop(stray.nexthop.expect("nh")));
    kernel.record(&Op::ReplaceNeigh(stray.neigh.expect("n")));
    kernel.record(&Op::ReplaceFdb(stray.fdb.expect("f")));
    let d = Desired::default();
    let ops = diff(&kernel, d.plane());
    assert!(
        matches!(ops[0], Op::DeleteRoute(_)),
        "routes go first: {ops:?}"
    );
    assert!(
        matches!(ops[1], Op::DeleteNexthop(_)),
        "then the nexthops they used: {ops:?}"
    );
    assert_eq!(ops.len(), 4);
}

#[test]
fn reset_replaces_everything() {
    let mut d = Desired::default();
    let (s, e) = peer(1, 1, mac(1));
    d.upsert(s, e);
    d.reset([peer(2, 2, mac(2)), peer(3, 3, mac(3))].into_iter());
    assert_eq!(d.peer_count(), 2);
    assert!(!d.contains(&s));
    assert_eq!(d.plane().len(), 8);
}

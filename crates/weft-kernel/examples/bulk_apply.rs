//! Times bulk programming of N peers' routes, neighbours and FDB entries
//! on a vxlan device in a scratch network namespace, one kind at a time.
//! Run as root: `cargo run --release -p weft-kernel --example bulk_apply -- 5000`

use std::path::Path;
use std::time::Instant;

use weft_core::plan::{FdbSpec, NeighSpec, NextHop, NexthopSpec, Op, RouteSpec, RouteVia};
use weft_core::MacAddr;
use weft_kernel::VxlanSpec;

fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let mut lab = weft_lab::Lab::new("wex", Path::new("/bin/false"))?;
    let h = lab.host("h1", 11)?;
    let mut nl = lab.netlink(&h)?;
    let eth0 =
        weft_kernel::link_by_name(&mut nl, "eth0")?.ok_or_else(|| anyhow::anyhow!("eth0"))?;
    let dev = weft_kernel::ensure_vxlan(
        &mut nl,
        &VxlanSpec {
            name: "flannel.1".into(),
            vni: 1,
            local: "198.18.0.11".parse()?,
            port: 8472,
            underlay: eth0.index,
            learning: false,
            gbp: false,
            mtu: 1450,
            mac: None,
        },
    )?;
    let ip = |i: u32, base: [u8; 2]| {
        std::net::Ipv4Addr::from(u32::from_be_bytes([base[0], base[1], 0, 0]) + (i << 6))
    };
    let mac =
        |i: u32| MacAddr::local_unicast([0, 0x42, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    let hop = |i: u32| NextHop {
        gateway: ip(i, [100, 64]).into(),
        oif: dev.index,
        onlink: true,
    };
    let dst = |i: u32, base: [u8; 2]| ipnet::IpNet::new(ip(i, base).into(), 26).unwrap_or_default();
    let routes: Vec<Op> = (1..=n)
        .map(|i| {
            Op::ReplaceRoute(RouteSpec {
                dst: dst(i, [100, 64]),
                via: RouteVia::Gateway(hop(i)),
            })
        })
        .collect();
    let nexthops: Vec<Op> = (1..=n)
        .map(|i| Op::ReplaceNexthop(NexthopSpec { id: i, hop: hop(i) }))
        .collect();
    let nh_routes: Vec<Op> = (1..=n)
        .map(|i| {
            Op::ReplaceRoute(RouteSpec {
                dst: dst(i, [100, 128]),
                via: RouteVia::Nexthop(i),
            })
        })
        .collect();
    let neighs: Vec<Op> = (1..=n)
        .map(|i| {
            Op::ReplaceNeigh(NeighSpec {
                ifindex: dev.index,
                ip: ip(i, [100, 64]).into(),
                mac: mac(i),
            })
        })
        .collect();
    let fdb: Vec<Op> = (1..=n)
        .map(|i| {
            Op::ReplaceFdb(FdbSpec {
                ifindex: dev.index,
                mac: mac(i),
                dst: ip(i, [198, 19]).into(),
            })
        })
        .collect();
    for (name, ops) in [
        ("fdb entries", &fdb),
        ("neighbours", &neighs),
        ("gateway routes", &routes),
        ("nexthop objects", &nexthops),
        ("nexthop routes", &nh_routes),
    ] {
        let t = Instant::now();
        let r = weft_kernel::apply(&mut nl, ops)?;
        println!(
            "{n} {name}: {:.1} ms ({} failed)",
            t.elapsed().as_secs_f64() * 1e3,
            r.failed.len()
        );
    }
    let t = Instant::now();
    let plane = weft_kernel::read_dataplane(&mut nl, &weft_kernel::Ownership::device(dev.index))?;
    println!(
        "read back {} entries: {:.1} ms",
        plane.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

//! Times partial syncs with N services already programmed (nft mode), in a
//! fresh network namespace: `cargo run --release -p weft-proxy --example
//! nft_latency -- 10000`. Needs root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use weft_lab::{in_netns, Lab};
use weft_proxy::plan::catalog::Catalog;
use weft_proxy::shell::sync::{ProxyMode, Syncer};
use weft_proxy::spec::{parse_object, ServiceName};

fn put(c: &mut Catalog, i: usize) -> ServiceName {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1);
    let svc = serde_json::json!({"kind":"Service","metadata":{"name":format!("svc-{i}"),"namespace":"bench"},
        "spec":{"clusterIP":ip.to_string(),"ports":[{"name":"http","port":80,"targetPort":8080}]}});
    let eps: Vec<serde_json::Value> = (0..10)
        .map(|j| {
            let a =
                Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i * 10 + j) as u32 + 2);
            serde_json::json!({"addresses":[a.to_string()]})
        })
        .collect();
    let slice = serde_json::json!({"kind":"EndpointSlice","metadata":{"name":format!("svc-{i}"),"namespace":"bench"},
        "endpoints":eps,"ports":[{"name":"http","port":8080}]});
    for v in [svc, slice] {
        c.put(parse_object(&v, "example").expect("valid"));
    }
    ServiceName::parse(&format!("bench/svc-{i}")).expect("name")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10000);
    let mut lab = Lab::new("wnl", Path::new("/bin/false")).expect("lab (root)");
    let ns = lab.netns("n").expect("netns");
    in_netns(&ns, || {
        let mut c = Catalog::default();
        for i in 0..n {
            put(&mut c, i);
        }
        let mut s = Syncer::new(
            ProxyMode::Nftables,
            weft_firewall::Iptables::plain(weft_firewall::Backend::Nft),
            Some("100.64.0.0/10".parse().expect("cidr")),
            None,
            &Default::default(),
        );
        let t = Instant::now();
        let r = s.full(c.plan_all("node1")).expect("full");
        println!(
            "full sync of {n}: {:?} (render {:?}, apply {:?})",
            t.elapsed(),
            r.render,
            r.apply
        );
        let mut times = Vec::new();
        for k in 0..10 {
            let id = put(&mut c, n + k);
            let t = Instant::now();
            let r = s
                .partial(&BTreeSet::from([id.clone()]), c.plan(&id, "node1"))
                .expect("partial");
            times.push((t.elapsed(), r.bytes));
        }
        for (t, b) in times {
            println!("add one: {t:?} ({b} bytes)");
        }
        if let Some(secs) = std::env::var("HOLD").ok().and_then(|s| s.parse().ok()) {
            println!("holding {ns} for {secs} s");
            std::thread::sleep(std::time::Duration::from_secs(secs));
        }
    })
    .expect("in netns");
}

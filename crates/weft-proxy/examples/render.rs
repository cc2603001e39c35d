//! Prints the full rule text for N services × E endpoints, for timing the
//! firewall tools by hand: `cargo run --release -p weft-proxy --example
//! render -- nft 10000 10 > rules.nft; ip netns exec X nft -f rules.nft`
//! (modes: nft, iptables, iptables-legacy).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use weft_proxy::plan::catalog::Catalog;
use weft_proxy::render::iptables::{IptablesRenderer, HOOKS};
use weft_proxy::render::nft::NftRenderer;
use weft_proxy::spec::parse_object;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("nft");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let e: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut c = Catalog::default();
    for i in 0..n {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1);
        let svc = serde_json::json!({"kind":"Service","metadata":{"name":format!("svc-{i}"),"namespace":"bench"},
            "spec":{"clusterIP":ip.to_string(),"ports":[{"name":"http","port":80,"targetPort":8080}]}});
        let eps: Vec<serde_json::Value> = (0..e)
            .map(|j| {
                let a = IpAddr::V4(Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i * e + j) as u32 + 2,
                ));
                // spread over 50 nodes, as the bench does; this is node1
                serde_json::json!({"addresses":[a.to_string()],"nodeName":format!("node{}", (i * e + j) % 50)})
            })
            .collect();
        let slice = serde_json::json!({"kind":"EndpointSlice","metadata":{"name":format!("svc-{i}"),"namespace":"bench"},
            "endpoints":eps,"ports":[{"name":"http","port":8080}]});
        for v in [svc, slice] {
            c.put(parse_object(&v, "example").expect("valid"));
        }
    }
    let plans = c.plan_all("node1");
    let cidr = Some("100.64.0.0/10".parse().expect("cidr"));
    let t = std::time::Instant::now();
    let text = if mode == "nft" {
        let r = NftRenderer::new(false, cidr);
        let ports = r.ports(&plans);
        r.full(&ports, &mut Default::default())
    } else {
        // `iptables-legacy`: one transaction, as on the legacy backend
        let r = IptablesRenderer::new(false, cidr, mode != "iptables-legacy");
        let ports: BTreeMap<_, _> = plans.iter().map(|p| (p.key.clone(), r.port(p))).collect();
        r.restore(&ports, &BTreeSet::new(), &HOOKS, true)
    };
    eprintln!("rendered {} bytes in {:?}", text.len(), t.elapsed());
    print!("{text}");
}

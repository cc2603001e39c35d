//! ctnetlink against the kernel, in a namespace of its own: entries
//! inserted as `conntrack -I` would, dumps filtered in the kernel, deletes.

use std::net::SocketAddr;
use std::path::Path;

use weft_kernel::{Conntrack, DumpFilter, Flow, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use weft_lab::Lab;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A client's flow to `service`, DNATed to `endpoint`.
fn flow(protocol: u8, client: &str, service: &str, endpoint: &str) -> Flow {
    Flow {
        protocol,
        orig_src: sa(client),
        orig_dst: sa(service),
        reply_src: sa(endpoint),
        reply_dst: sa(client),
    }
}

fn sorted(mut v: Vec<Flow>) -> Vec<Flow> {
    v.sort_by_key(|f| (f.orig_src, f.orig_dst, f.protocol));
    v
}

#[test]
fn filtered_dumps_return_only_their_service_and_deletes_remove_entries() {
    let mut lab = Lab::new("wct", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("ct").expect("netns");
    let mut ct =
        Conntrack::open_in_netns(Path::new(&format!("/run/netns/{ns}"))).expect("ctnetlink");
    let dns_a = flow(
        IPPROTO_UDP,
        "198.18.0.5:4000",
        "10.254.0.10:53",
        "100.64.1.2:53",
    );
    let dns_b = flow(
        IPPROTO_UDP,
        "198.18.0.6:4000",
        "10.254.0.10:53",
        "100.64.2.2:53",
    );
    let tcp = flow(
        IPPROTO_TCP,
        "198.18.0.5:4001",
        "10.254.0.10:53",
        "100.64.1.2:53",
    );
    let other = flow(
        IPPROTO_UDP,
        "198.18.0.5:4002",
        "10.254.0.11:53",
        "100.64.1.9:53",
    );
    let node_port = flow(
        IPPROTO_UDP,
        "198.18.0.7:5000",
        "198.18.0.11:30053",
        "100.64.1.2:53",
    );
    let sctp = flow(
        IPPROTO_SCTP,
        "198.18.0.5:4003",
        "10.254.0.12:9999",
        "100.64.1.4:9999",
    );
    let v6 = flow(
        IPPROTO_UDP,
        "[2001:db8::5]:4000",
        "[fd00:254::10]:53",
        "[fd00:64::2]:53",
    );
    let all = [dns_a, dns_b, tcp, other, node_port, sctp, v6];
    ct.insert(&all, 120).expect("insert");

    let udp = |dst_ip: Option<&str>, dst_port: Option<u16>| DumpFilter {
        ipv6: false,
        protocol: IPPROTO_UDP,
        dst_ip: dst_ip.map(|s| s.parse().expect("ip")),
        dst_port,
    };
    let service = ct.dump(&udp(Some("10.254.0.10"), Some(53))).expect("dump");
    assert_eq!(sorted(service), sorted(vec![dns_a, dns_b]));
    let by_port = ct.dump(&udp(None, Some(30053))).expect("dump");
    assert_eq!(by_port, vec![node_port]);
    let every_udp = ct.dump(&udp(None, None)).expect("dump");
    assert_eq!(
        sorted(every_udp),
        sorted(vec![dns_a, dns_b, other, node_port])
    );
    let sctp_dump = ct
        .dump(&DumpFilter {
            protocol: IPPROTO_SCTP,
            ..udp(None, None)
        })
        .expect("dump");
    assert_eq!(sctp_dump, vec![sctp]);
    let v6_dump = ct
        .dump(&DumpFilter {
            ipv6: true,
            ..udp(Some("fd00:254::10"), Some(53))
        })
        .expect("dump");
    assert_eq!(v6_dump, vec![v6]);

    let report = ct.delete(&[dns_b, v6]).expect("delete");
    assert_eq!((report.deleted, report.gone), (2, 0));
    let service = ct.dump(&udp(Some("10.254.0.10"), Some(53))).expect("dump");
    assert_eq!(service, vec![dns_a]);
    // deleting what is gone is counted, not an error
    let report = ct.delete(&[dns_b]).expect("delete again");
    assert_eq!((report.deleted, report.gone), (0, 1));
}

#[test]
fn thousands_of_entries_dump_and_delete_in_batches() {
    let mut lab = Lab::new("wcu", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("ct").expect("netns");
    let mut ct =
        Conntrack::open_in_netns(Path::new(&format!("/run/netns/{ns}"))).expect("ctnetlink");
    let flows: Vec<Flow> = (0..5000u32)
        .map(|i| {
            let client = format!("198.18.{}.{}:{}", 1 + i / 250, 1 + i % 250, 1024 + i % 1000);
            flow(IPPROTO_UDP, &client, "10.254.0.10:53", "100.64.1.2:53")
        })
        .collect();
    ct.insert(&flows, 120).expect("insert");
    let filter = DumpFilter {
        ipv6: false,
        protocol: IPPROTO_UDP,
        dst_ip: Some("10.254.0.10".parse().expect("ip")),
        dst_port: Some(53),
    };
    assert_eq!(ct.dump(&filter).expect("dump").len(), 5000);
    let report = ct.delete(&flows).expect("delete");
    assert_eq!(report.deleted, 5000);
    assert!(ct.dump(&filter).expect("dump").is_empty());
}

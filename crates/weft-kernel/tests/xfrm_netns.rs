//! The ipsec backend's kernel policies over XFRM netlink, in a namespace
//! of its own (policies need no ESP module; this machine's kernel has
//! XFRM without ESP): added as `ip xfrm policy` shows flanneld's, listed
//! back, replaced in place, deleted twice without error; policies of
//! another form (another request id, transport mode) are not listed.

use std::path::Path;

use weft_core::plan::ipsec::{Direction, Policy};
use weft_kernel::Xfrm;
use weft_lab::Lab;

fn policy(dir: Direction, src: &str, dst: &str, from: &str, to: &str) -> Policy {
    Policy {
        src: src.parse().expect("net"),
        dst: dst.parse().expect("net"),
        dir,
        tunnel_src: from.parse().expect("ip"),
        tunnel_dst: to.parse().expect("ip"),
    }
}

#[test]
fn policies_are_added_listed_replaced_and_deleted() {
    let mut lab = Lab::new("wxf", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("x").expect("netns");
    let mut x = Xfrm::open_in_netns(Path::new(&format!("/run/netns/{ns}"))).expect("xfrm socket");
    let (l, r) = ("172.30.1.0/24", "172.30.7.0/24");
    let (me, peer) = ("198.18.0.11", "198.18.0.12");
    let planned = [
        policy(Direction::Out, l, r, me, peer),
        policy(Direction::In, r, l, peer, me),
        policy(Direction::Fwd, r, l, peer, me),
    ];
    for p in &planned {
        x.put(p).expect("put");
    }
    // someone else's: another request id, and transport mode
    for extra in [
        "src 10.9.0.0/24 dst 10.9.1.0/24 dir out tmpl src 198.18.0.11 dst 198.18.0.20 proto esp reqid 12 mode tunnel",
        "src 10.9.0.0/24 dst 10.9.2.0/24 dir out tmpl proto esp reqid 11 mode transport",
    ] {
        let mut args = vec!["-n", ns.as_str(), "xfrm", "policy", "add"];
        args.extend(extra.split(' '));
        weft_lab::sh("ip", &args).expect("ip xfrm policy add");
    }
    let mut listed = x.policies().expect("list");
    listed.sort();
    let mut want = planned.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let shown = weft_lab::sh("ip", &["-n", &ns, "xfrm", "policy"]).expect("ip xfrm");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&format!(
            "src {l} dst {r} \n\tdir out priority 0 ptype main \n\ttmpl src {me} dst {peer}\n\t\tproto esp reqid 11 mode tunnel"
        )),
        "{text}"
    );
    // the same selector and direction with a new tunnel end: replaced
    let moved = policy(Direction::Out, l, r, me, "198.18.0.13");
    x.put(&moved).expect("replace");
    let listed = x.policies().expect("list");
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&moved));
    for p in [&moved, &planned[1], &planned[2]] {
        x.delete(p).expect("delete");
        x.delete(p).expect("deleting a deleted policy is no error");
    }
    assert!(x.policies().expect("list").is_empty());
    let left = weft_lab::sh("ip", &["-n", &ns, "xfrm", "policy"]).expect("ip xfrm");
    assert_eq!(
        String::from_utf8_lossy(&left.stdout)
            .matches("dir out")
            .count(),
        2
    );
}

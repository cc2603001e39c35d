//! The ipsec backend on a kernel with ESP. This machine's kernel has none,
//! so the test boots Debian 12's cloud kernel in qemu (as the ipip and
//! kernel WireGuard tests do) with two hosts on one veth link: weft in the
//! VM's root namespace, upstream flanneld v0.28.10 in a namespace `h2`
//! with its own `/run` (each starts its own charon, Debian's strongSwan
//! 5.9, on `/var/run/charon.vici`), one etcd, flannel's default
//! ESPProposal. A dummy `cni0` holding each host's subnet address stands
//! for the pods.
//!
//! Proven: the same subnet file (MTU 1500 - 77) and lease value; the same
//! kernel policies on both sides (out, in and fwd between the two subnets,
//! ESP tunnel between the public IPs, request id 11), and the same IKE
//! connection in each charon (as `swanctl --list-conns` prints it); the
//! two negotiate ESP SAs (AES-GCM) and pings between the subnets pass both
//! ways through them (the SAs' packet counters move); when flanneld's
//! lease goes, weft deletes its policies and unloads the connection.
//! `weft status` finds the kernel in sync, then a stale policy. A second
//! phase does it all again with `UDPEncap` (ESP in UDP 4500), after a
//! stale policy was left while weft was down: weft removes it at start
//! (flanneld keeps such policies), and leaves a policy outside its
//! network alone.

use std::path::Path;

use weft_lab::vm::{tagged, VmImage};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// The test's part of the VM's init script (see [`VmImage::boot`]);
/// `@PSK@` is replaced by the key.
const INIT: &str = r#"mkdir -p /run/netns /tmp/flannel
printf 'charon {\n filelog {\n  stderr {\n   default = 1\n  }\n }\n}\n' > /etc/strongswan.d/zz-test-log.conf
iproute2 netns add h2
iproute2 link add eth0 type veth peer name eth0 netns h2
iproute2 addr add 192.0.2.11/24 dev eth0 && iproute2 link set eth0 up
iproute2 -n h2 addr add 192.0.2.12/24 dev eth0
iproute2 -n h2 link set eth0 up && iproute2 -n h2 link set lo up
iproute2 route add default via 192.0.2.12
iproute2 -n h2 route add default via 192.0.2.11
iproute2 link add cni0 type dummy && iproute2 link set cni0 up
iproute2 -n h2 link add cni0 type dummy && iproute2 -n h2 link set cni0 up
export E=http://192.0.2.11:2379
etcd --data-dir /tmp/etcd --listen-client-urls $E --advertise-client-urls $E \
  --listen-peer-urls http://127.0.0.1:2380 > /tmp/etcd.log 2>&1 &
export ETCDCTL_API=3
i=0; until etcdctl --endpoints=$E endpoint health >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.2; done
# phase TAG PREFIX BACKEND-KEYS: both agents on one network config, the
# checks, then flanneld's lease removed and both stopped
phase() {
T=$1; export P=$2
etcdctl --endpoints=$E put $P/config "{\"Network\":\"172.30.0.0/16\",\"Backend\":{\"Type\":\"ipsec\",\"PSK\":\"@PSK@\"$3}}" >/dev/null
rm -f /tmp/flannel/*.env
weft agent -etcd-endpoints=$E -etcd-prefix=$P -iface=eth0 -subnet-file=/tmp/flannel/weft.env \
  -firewall=nftables -iptables-forward-rules=false > /tmp/weft-$T.log 2>&1 &
WPID=$!
iproute2 netns exec h2 sh -c 'mount -t tmpfs none /run && exec flanneld -etcd-endpoints=$E -etcd-prefix=$P -iface=eth0 -subnet-file=/tmp/flannel/flanneld.env -iptables-forward-rules=false' > /tmp/flanneld-$T.log 2>&1 &
FPID=$!
for f in weft flanneld; do
  i=0; until [ -f /tmp/flannel/$f.env ]; do i=$((i+1)); [ $i -gt 150 ] && break; sleep 0.2; done
  sed "s/^/WEFT-VM-$T-ENV-$f /" /tmp/flannel/$f.env
done
W=$(grep FLANNEL_SUBNET /tmp/flannel/weft.env | cut -d= -f2)
F=$(grep FLANNEL_SUBNET /tmp/flannel/flanneld.env | cut -d= -f2)
echo "WEFT-VM-$T-SUBNETS $W $F"
iproute2 addr flush dev cni0 && iproute2 addr add $W dev cni0
iproute2 -n h2 addr flush dev cni0 && iproute2 -n h2 addr add $F dev cni0
i=0; until [ "$(iproute2 xfrm state | grep -c '^src')" -ge 2 ] && [ "$(iproute2 -n h2 xfrm state | grep -c '^src')" -ge 2 ]; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.2; done
iproute2 xfrm policy | sed "s/^/WEFT-VM-$T-POLICY-weft /"
iproute2 -n h2 xfrm policy | sed "s/^/WEFT-VM-$T-POLICY-flanneld /"
iproute2 xfrm state | sed "s/^/WEFT-VM-$T-STATE-weft /"
swanctl --list-conns | sed "s/^/WEFT-VM-$T-CONN-weft /"
nsenter -t $FPID -m swanctl --list-conns | sed "s/^/WEFT-VM-$T-CONN-flanneld /"
# both charons initiate, so a second CHILD_SA pair may still be replacing
# the first: the pings are counted once one has gone through each way
i=0; until ping -c 1 -W 1 -I ${W%/*} ${F%/*} >/dev/null 2>&1 && iproute2 netns exec h2 ping -c 1 -W 1 -I ${F%/*} ${W%/*} >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 10 ] && break; done
# and the duplicate pair, if any, is gone (a packet sent on an SA being
# deleted is lost): the SA counts of both hosts unchanged for 2 s
sas() { echo "$(iproute2 xfrm state | grep -c '^src') $(iproute2 -n h2 xfrm state | grep -c '^src')"; }
i=0; same=0; last=$(sas); while [ $same -lt 4 ] && [ $i -lt 40 ]; do sleep 0.5; now=$(sas); if [ "$now" = "$last" ]; then same=$((same+1)); else same=0; last=$now; fi; i=$((i+1)); done
ping -c 3 -W 2 -I ${W%/*} ${F%/*} | grep transmitted | sed "s/^/WEFT-VM-$T-PING-weft /"
iproute2 netns exec h2 ping -c 3 -W 2 -I ${F%/*} ${W%/*} | grep transmitted | sed "s/^/WEFT-VM-$T-PING-flanneld /"
STATUS="weft status --etcd-endpoints=$E --etcd-prefix=$P --subnet-file=/tmp/flannel/weft.env --iface eth0 -o json"
$STATUS | tr -d ' \n' | grep -o '"dataplane":{[^}]*}' | sed "s/^/WEFT-VM-$T-STATUS /"
iproute2 xfrm policy add src 172.30.250.0/24 dst 172.30.251.0/24 dir out tmpl src 192.0.2.11 dst 192.0.2.97 proto esp reqid 11 mode tunnel
$STATUS | tr -d ' \n' | grep -o '"dataplane":{[^}]*}' | sed "s/^/WEFT-VM-$T-STATUS-DRIFT /"
iproute2 xfrm policy del src 172.30.250.0/24 dst 172.30.251.0/24 dir out
weft doctor --etcd-endpoints=$E --etcd-prefix=$P --subnet-file=/tmp/flannel/weft.env | grep ipsec-charon | sed "s/^/WEFT-VM-$T-DOCTOR /"
iproute2 -s xfrm state | grep -E '[0-9]+\(bytes\), [0-9]+\(packets\)' | sed "s/^/WEFT-VM-$T-SA-COUNT /"
etcdctl --endpoints=$E get --prefix $P/subnets/ | sed "s/^/WEFT-VM-$T-LEASE /"
kill $FPID; sleep 1
etcdctl --endpoints=$E del $P/subnets/$(echo $F | sed 's/1\//0-/') >/dev/null
i=0; while iproute2 xfrm policy | grep -q '^src 172[.]30[.]'; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
echo "WEFT-VM-$T-POLICIES-AFTER $(iproute2 xfrm policy | grep -c '^src 172[.]30[.]')"
sleep 1
echo "WEFT-VM-$T-CONNS-AFTER $(swanctl --list-conns | grep -c IKEv2)"
kill $WPID; wait $WPID
# weft's charon goes with it
i=0; while swanctl --stats >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.2; done
echo "WEFT-VM-$T-CHARON-AFTER $(swanctl --stats >/dev/null 2>&1 && echo running || echo gone)"
grep -v '^[0-9]' /tmp/weft-$T.log | sed "s/^/WEFT-VM-$T-LOG-weft /"
grep '^[0-9]' /tmp/weft-$T.log | tail -15 | sed "s/^/WEFT-VM-$T-LOG-charon /"
tail -15 /tmp/flanneld-$T.log | sed "s/^/WEFT-VM-$T-LOG-flanneld /"
}
phase ESP /coreos.com/network ""
# a tunnel of a host that went while weft was down, and one that is not weft's
iproute2 xfrm policy add src 172.30.200.0/24 dst 172.30.201.0/24 dir out tmpl src 192.0.2.11 dst 192.0.2.99 proto esp reqid 11 mode tunnel
iproute2 xfrm policy add src 10.9.0.0/24 dst 10.9.1.0/24 dir out tmpl src 192.0.2.11 dst 192.0.2.98 proto esp reqid 11 mode tunnel
phase UDP /encap/network ',"UDPEncap":true'
iproute2 xfrm policy | grep -c 'dst 192.0.2.9[89]' | sed 's/^/WEFT-VM-FOREIGN-LEFT /'
"#;

/// A pre-shared key of flanneld's minimal length and more.
const PSK: &str = "weft-test-psk-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456789";

#[test]
fn ipsec_beside_flanneld_v0_28_on_a_kernel_with_esp() {
    let flanneld = weft_lab::upstream_flanneld()
        .expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let image = VmImage::new().expect("the VM's kernel (scripts/vm-kernel.sh)");
    image.install(Path::new(WEFT), "weft").expect("weft");
    image.install(&flanneld, "flanneld").expect("flanneld");
    for p in ["etcd", "etcdctl", "swanctl"] {
        image.install_found(p, p).expect(p);
    }
    image.install_found("ip", "iproute2").expect("ip");
    for dir in ["/usr/lib/ipsec", "/etc/strongswan.d", "/etc/swanctl"] {
        image
            .install_tree(Path::new(dir))
            .unwrap_or_else(|e| panic!("{dir} (scripts/deps.sh installs strongSwan): {e:#}"));
    }
    image
        .install_tree(Path::new("/etc/strongswan.conf"))
        .expect("strongswan.conf");
    let lines = image
        .boot(&INIT.replace("@PSK@", PSK), 2048)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let all = lines.join("\n");
    assert!(!all.contains("insmod"), "modules loaded:\n{all}");
    check_phase(&lines, "ESP", 1423, None);
    check_phase(
        &lines,
        "UDP",
        1415,
        Some("encap type espinudp sport 4500 dport 4500"),
    );
    assert_eq!(
        tagged(&lines, "WEFT-VM-FOREIGN-LEFT"),
        vec!["1"],
        "at start weft removed the stale policy in its network, kept the other:\n{all}"
    );
}

/// The checks of one phase (see INIT) whose pods' MTU is `mtu` and whose
/// SAs show `encap`, if given.
fn check_phase(lines: &[String], phase: &str, mtu: u32, encap: Option<&str>) {
    let all = lines.join("\n");
    let get = |what: &str| tagged(lines, &format!("WEFT-VM-{phase}-{what}"));
    // the same subnet file but the subnet
    let env = |who: &str| -> Vec<String> {
        get(&format!("ENV-{who}"))
            .into_iter()
            .filter(|l| !l.starts_with("FLANNEL_SUBNET="))
            .map(str::to_string)
            .collect()
    };
    assert!(
        env("weft").contains(&format!("FLANNEL_MTU={mtu}")),
        "{phase}: MTU {mtu}:\n{all}"
    );
    assert_eq!(
        env("weft"),
        env("flanneld"),
        "{phase}: subnet files:\n{all}"
    );
    let subnets = get("SUBNETS");
    let nets: Vec<String> = subnets
        .first()
        .unwrap_or_else(|| panic!("{phase}: no subnets:\n{all}"))
        .split(' ')
        .map(|s| s.replace(".1/", ".0/"))
        .collect();
    let [w, f] = &nets[..] else {
        panic!("{phase}: two subnets:\n{all}")
    };
    // each side's view with its own names: LOCAL/REMOTE subnet, ME/PEER IP
    let normal = |who: &str, text: &str| {
        let (mine, theirs, me, peer) = match who {
            "weft" => (w, f, "192.0.2.11", "192.0.2.12"),
            _ => (f, w, "192.0.2.12", "192.0.2.11"),
        };
        text.replace(mine.as_str(), "LOCAL")
            .replace(theirs.as_str(), "REMOTE")
            .replace(me, "ME")
            .replace(peer, "PEER")
    };
    // every policy between cluster subnets, and those of this phase's pair
    let policies = |who: &str| {
        let lines = get(&format!("POLICY-{who}"));
        let mut blocks: Vec<String> = lines
            .join("\n")
            .split("\nsrc ")
            .filter(|b| b.contains("reqid 11") && b.contains("172.30."))
            .map(|b| normal(who, b.trim_start_matches("src ")))
            .collect();
        blocks.sort();
        let total = blocks.len();
        blocks.retain(|b| b.contains("LOCAL") && b.contains("REMOTE"));
        (total, blocks)
    };
    let (weft_all, weft) = policies("weft");
    let (flanneld_all, flanneld) = policies("flanneld");
    assert_eq!(weft.len(), 3, "{phase}: out, in, fwd:\n{all}");
    assert_eq!(weft, flanneld, "{phase}: policies:\n{all}");
    // flanneld keeps the policies of a lease that went while it was down
    println!("{phase}: policies between cluster subnets: weft {weft_all}, flanneld {flanneld_all}");
    assert_eq!(weft_all, 3, "{phase}: weft holds no stale policy:\n{all}");
    let conns = |who: &str| normal(who, &get(&format!("CONN-{who}")).join("\n"));
    assert!(
        conns("weft").contains("ME-LOCAL-REMOTE-PEER"),
        "{phase}: connection:\n{all}"
    );
    assert_eq!(
        conns("weft"),
        conns("flanneld"),
        "{phase}: IKE connections:\n{all}"
    );
    let states = get("STATE-weft").join("\n");
    for want in [
        "proto esp",
        "reqid 11 mode tunnel",
        "aead rfc4106(gcm(aes))",
    ]
    .into_iter()
    .chain(encap)
    {
        assert!(states.contains(want), "{phase}: SAs with {want}:\n{all}");
    }
    for who in ["weft", "flanneld"] {
        let ping = get(&format!("PING-{who}"));
        assert!(
            ping.first()
                .is_some_and(|p| p.contains("3 packets received")),
            "{phase}: {who}'s pod pings the other's through ESP:\n{all}"
        );
    }
    let carried: u64 = get("SA-COUNT")
        .iter()
        .filter_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix("(packets)")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        carried >= 12,
        "{phase}: the SAs carried the pings ({carried}):\n{all}"
    );
    // weft status compares the kernel's policies with the plan
    let status = get("STATUS").join("");
    assert!(
        status.contains(r#""in_sync":true"#),
        "{phase}: status:\n{all}"
    );
    let drift = get("STATUS-DRIFT").join("");
    assert!(
        drift.contains(r#""in_sync":false"#) && drift.contains("172.30.250.0/24->172.30.251.0/24"),
        "{phase}: status shows a stale policy:\n{all}"
    );
    assert!(
        get("DOCTOR")
            .first()
            .is_some_and(|d| d.contains("ok] ipsec-charon: charon answers")),
        "{phase}: weft doctor finds charon:\n{all}"
    );
    let leases: Vec<String> = get("LEASE")
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| l.replace("192.0.2.11", "IP").replace("192.0.2.12", "IP"))
        .collect();
    assert_eq!(
        leases,
        vec![r#"{"PublicIP":"IP","PublicIPv6":null,"BackendType":"ipsec"}"#; 2],
        "{phase}: lease values:\n{all}"
    );
    for (what, want) in [
        ("POLICIES-AFTER", "0"),
        ("CONNS-AFTER", "0"),
        ("CHARON-AFTER", "gone"),
    ] {
        assert_eq!(
            get(what),
            vec![want],
            "{phase}: {what} once flanneld's lease is gone:\n{all}"
        );
    }
}

//! The ipip backend on a kernel that has ipip. This machine's kernel has
//! none, so the test boots Debian 12's cloud kernel in qemu (as the kernel
//! WireGuard test does) with two hosts on one veth link: weft in the VM's
//! root namespace, upstream flanneld v0.28.10 in a namespace `h2`, one
//! etcd. Proven: weft's `flannel.ipip` is flanneld's (an ipip tunnel from
//! the underlay address to any remote, protocol any, TTL inherited, no
//! path MTU discovery, MTU - 20, the subnet's first address as /32), each side routes the other's subnet through it via
//! the other's public IP on-link, packets between the two tunnel
//! addresses cross in both directions (the devices' counters move), the
//! lease values are the same, and weft unroutes a lease that goes away.

use std::path::Path;

use weft_lab::vm::{tagged, VmImage};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// The test's part of the VM's init script (see [`VmImage::boot`]).
const INIT: &str = r#"mkdir -p /run/netns /run/flannel
iproute2 netns add h2
iproute2 link add eth0 type veth peer name eth0 netns h2
iproute2 addr add 192.0.2.11/24 dev eth0 && iproute2 link set eth0 up
iproute2 -n h2 addr add 192.0.2.12/24 dev eth0
iproute2 -n h2 link set eth0 up && iproute2 -n h2 link set lo up
E=http://192.0.2.11:2379
etcd --data-dir /tmp/etcd --listen-client-urls $E --advertise-client-urls $E \
  --listen-peer-urls http://127.0.0.1:2380 > /tmp/etcd.log 2>&1 &
export ETCDCTL_API=3
i=0; until etcdctl --endpoints=$E endpoint health >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.2; done
etcdctl --endpoints=$E put /coreos.com/network/config '{"Network":"172.30.0.0/16","Backend":{"Type":"ipip"}}' >/dev/null
weft agent -etcd-endpoints=$E -iface=eth0 -subnet-file=/run/flannel/weft.env \
  -firewall=nftables -iptables-forward-rules=false > /tmp/weft.log 2>&1 &
iproute2 netns exec h2 flanneld -etcd-endpoints=$E -iface=eth0 -subnet-file=/run/flannel/flanneld.env \
  -iptables-forward-rules=false > /tmp/flanneld.log 2>&1 &
FPID=$!
for f in weft flanneld; do
  i=0; until [ -f /run/flannel/$f.env ]; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.2; done
  sed "s/^/WEFT-VM-ENV-$f /" /run/flannel/$f.env
done
W=$(iproute2 -4 -o addr show flannel.ipip | awk '{print $4}' | cut -d/ -f1)
F=$(iproute2 -n h2 -4 -o addr show flannel.ipip | awk '{print $4}' | cut -d/ -f1)
echo "WEFT-VM-ADDRS $W $F"
i=0; until iproute2 route show root 172.30.0.0/16 | grep -q flannel.ipip; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
i=0; until iproute2 -n h2 route show root 172.30.0.0/16 | grep -q flannel.ipip; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
iproute2 -d -o link show flannel.ipip | sed 's/^/WEFT-VM-LINK-weft /'
iproute2 -n h2 -d -o link show flannel.ipip | sed 's/^/WEFT-VM-LINK-flanneld /'
iproute2 route show root 172.30.0.0/16 | sed 's/^/WEFT-VM-ROUTE-weft /'
iproute2 -n h2 route show root 172.30.0.0/16 | sed 's/^/WEFT-VM-ROUTE-flanneld /'
ping -c 3 -W 2 -I $W $F | grep transmitted | sed 's/^/WEFT-VM-PING-weft /'
iproute2 netns exec h2 ping -c 3 -W 2 -I $F $W | grep transmitted | sed 's/^/WEFT-VM-PING-flanneld /'
echo "WEFT-VM-COUNT-weft $(cat /sys/class/net/flannel.ipip/statistics/rx_packets) $(cat /sys/class/net/flannel.ipip/statistics/tx_packets)"
etcdctl --endpoints=$E get --prefix /coreos.com/network/subnets/ | sed 's/^/WEFT-VM-LEASE /'
kill $FPID; sleep 1
FS=$(grep FLANNEL_SUBNET /run/flannel/flanneld.env | cut -d= -f2)
FK=$(echo $FS | sed 's/1\//0-/')
etcdctl --endpoints=$E del /coreos.com/network/subnets/$FK >/dev/null
i=0; while iproute2 route show root 172.30.0.0/16 | grep -q flannel.ipip; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
echo "WEFT-VM-ROUTES-AFTER $(iproute2 route show root 172.30.0.0/16 | grep -c flannel.ipip)"
sed 's/^/WEFT-VM-LOG-weft /' /tmp/weft.log
tail -20 /tmp/flanneld.log | sed 's/^/WEFT-VM-LOG-flanneld /'
"#;

#[test]
fn ipip_beside_flanneld_v0_28_on_a_kernel_with_ipip() {
    let flanneld = weft_lab::upstream_flanneld()
        .expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let image = VmImage::new().expect("the VM's kernel (scripts/vm-kernel.sh)");
    image.install(Path::new(WEFT), "weft").expect("weft");
    image.install(&flanneld, "flanneld").expect("flanneld");
    for p in ["etcd", "etcdctl"] {
        image.install_found(p, p).expect(p);
    }
    image.install_found("ip", "iproute2").expect("ip");
    let lines = image.boot(INIT, 2048).unwrap_or_else(|e| panic!("{e:#}"));
    let all = lines.join("\n");
    assert!(!all.contains("insmod"), "modules loaded:\n{all}");
    let get = |tag: &str| tagged(&lines, tag);
    let one = |tag: &str| {
        get(tag)
            .first()
            .map(|s| s.to_string())
            .unwrap_or_else(|| panic!("no {tag}:\n{all}"))
    };

    // the same subnet file but the subnet: MTU 1500 - 20
    let env = |who: &str| -> Vec<String> {
        get(&format!("WEFT-VM-ENV-{who}"))
            .iter()
            .filter(|l| !l.starts_with("FLANNEL_SUBNET="))
            .map(|l| l.to_string())
            .collect()
    };
    assert!(
        env("weft").contains(&"FLANNEL_MTU=1480".to_string()),
        "{all}"
    );
    assert_eq!(env("weft"), env("flanneld"), "subnet files:\n{all}");

    // the devices: ipip, local = the host's address, any remote, MTU 1480
    for (who, local) in [("weft", "192.0.2.11"), ("flanneld", "192.0.2.12")] {
        let link = one(&format!("WEFT-VM-LINK-{who}"));
        for want in [
            "mtu 1480".to_string(),
            format!("ipip any remote any local {local} ttl inherit nopmtudisc"),
        ] {
            assert!(link.contains(&want), "{who}: {want} in {link}");
        }
    }
    // routes: the other's subnet via its public IP on the tunnel, on-link
    let addrs = one("WEFT-VM-ADDRS");
    let (w, f) = addrs.split_once(' ').expect("two addresses");
    let route_to = |who: &str, subnet_of: &str, via: &str| {
        let net = format!("{}0/24", subnet_of.trim_end_matches(char::is_numeric));
        let routes = get(&format!("WEFT-VM-ROUTE-{who}"));
        assert!(
            routes.iter().any(|r| r.starts_with(&net)
                && r.contains(&format!("via {via} dev flannel.ipip"))
                && r.contains("onlink")),
            "{who} routes {net} via {via}:\n{all}"
        );
    };
    route_to("weft", f, "192.0.2.12");
    route_to("flanneld", w, "192.0.2.11");
    for who in ["weft", "flanneld"] {
        let ping = one(&format!("WEFT-VM-PING-{who}"));
        assert!(
            ping.contains("3 packets received"),
            "{who} pings the other through the tunnel: {ping}\n{all}"
        );
    }
    let counts = one("WEFT-VM-COUNT-weft");
    let moved: Vec<u64> = counts
        .split(' ')
        .map(|n| n.parse().expect("count"))
        .collect();
    assert!(
        moved.iter().all(|n| *n >= 6),
        "flannel.ipip carried both ways: {counts}"
    );
    // lease values: the same shape on both sides
    let leases = get("WEFT-VM-LEASE");
    let values: Vec<String> = leases
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| l.replace("192.0.2.11", "IP").replace("192.0.2.12", "IP"))
        .collect();
    assert_eq!(values.len(), 2, "{all}");
    assert_eq!(values[0], values[1], "lease values:\n{all}");
    assert_eq!(
        values[0],
        r#"{"PublicIP":"IP","PublicIPv6":null,"BackendType":"ipip"}"#
    );
    assert_eq!(
        get("WEFT-VM-ROUTES-AFTER"),
        vec!["0"],
        "weft unroutes the removed lease:\n{all}"
    );
}

//! The wireguard backend on a kernel that has WireGuard. This machine's
//! kernel has none, so the test boots Debian 12's cloud kernel (which has
//! the module) in qemu with an initramfs holding weft, etcd, `wg` and
//! busybox, and runs the agent there on the VM's own network: `auto`
//! must pick the kernel, and `wg` (wireguard-tools, reading the kernel
//! over netlink) must find the device configured as flanneld configures
//! it: this host's key and port 51820, a peer per remote lease, removed
//! with its lease. The kernel and qemu come from `scripts/vm-kernel.sh`.

use std::path::Path;
use std::process::Command;

use weft_lab::vm::{tagged, VmImage};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// The test's part of the VM's init script (see [`VmImage::boot`]).
const INIT: &str = r#"ip link add eth0 type dummy && ip addr add 192.0.2.10/24 dev eth0 && ip link set eth0 up
etcd --data-dir /tmp/etcd --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  > /tmp/etcd.log 2>&1 &
export ETCDCTL_API=3
i=0; until etcdctl endpoint health >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.2; done
etcdctl put /coreos.com/network/config '{"Network":"172.30.0.0/16","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":25}}' >/dev/null
etcdctl put /coreos.com/network/subnets/172.30.77.0-24 '{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"PEERKEY","Port":51820}}' >/dev/null
WIREGUARD_KEY_FILE=/run/flannel/wgkey weft agent -etcd-endpoints=http://127.0.0.1:2379 -iface=eth0 \
  -subnet-file=/run/flannel/subnet.env -firewall=nftables -iptables-forward-rules=false > /tmp/agent.log 2>&1 &
i=0; until [ -f /run/flannel/subnet.env ]; do i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.2; done
i=0; until wg show flannel-wg peers 2>/dev/null | grep -q .; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
iproute2 -d -o link show flannel-wg | sed 's/^/WEFT-VM-KIND /' 
echo "WEFT-VM-PUB $(wg pubkey < /run/flannel/wgkey)"
echo "WEFT-VM-MODE $(stat -c %a /run/flannel/wgkey)"
wg show flannel-wg dump | sed 's/^/WEFT-VM-DUMP /'
ip -4 addr show flannel-wg | sed 's/^/WEFT-VM-ADDR /'
ip route show 172.30.0.0/16 | sed 's/^/WEFT-VM-ROUTE /'
etcdctl del /coreos.com/network/subnets/172.30.77.0-24 >/dev/null
i=0; while wg show flannel-wg peers | grep -q .; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done
echo "WEFT-VM-PEERS-AFTER $(wg show flannel-wg peers | wc -l)"
sed 's/^/WEFT-VM-LOG /' /tmp/agent.log
"#;

#[test]
fn auto_picks_kernel_wireguard_and_configures_it_as_flanneld_does() {
    let image = VmImage::new().expect("the VM's kernel (scripts/vm-kernel.sh)");
    image.install(Path::new(WEFT), "weft").expect("weft");
    for p in ["wg", "etcd", "etcdctl"] {
        image.install_found(p, p).expect(p);
    }
    // iproute2's ip (busybox's has no -d), under a name busybox leaves alone
    image.install_found("ip", "iproute2").expect("ip");
    let out = Command::new("sh")
        .args(["-c", "wg genkey | wg pubkey"])
        .output()
        .expect("wg");
    let peer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lines = image
        .boot(&INIT.replace("PEERKEY", &peer), 1024)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let all = lines.join("\n");
    assert!(!all.contains("insmod"), "modules loaded:\n{all}");
    let get = |tag: &str| tagged(&lines, tag);
    assert!(
        get("WEFT-VM-KIND")
            .iter()
            .any(|l| l.contains(" wireguard ")),
        "a kernel WireGuard device:\n{all}"
    );
    assert_eq!(get("WEFT-VM-MODE"), vec!["400"], "{all}");
    let public = get("WEFT-VM-PUB")[0];
    // wg's dump: the device line, then one line per peer (tab-separated)
    let dump = get("WEFT-VM-DUMP");
    assert_eq!(dump.len(), 2, "device and one peer:\n{all}");
    let dev: Vec<&str> = dump[0].split('\t').collect();
    assert_eq!(dev[1], public, "the key file's key:\n{all}");
    assert_eq!(dev[2], "51820", "{all}");
    let p: Vec<&str> = dump[1].split('\t').collect();
    assert_eq!(p[0], peer, "{all}");
    assert_eq!(p[1], "(none)", "no PSK:\n{all}");
    assert_eq!(p[2], "192.0.2.77:51820", "{all}");
    assert_eq!(p[3], "172.30.77.0/24", "{all}");
    assert_eq!(p[7], "25", "PersistentKeepaliveInterval:\n{all}");
    assert!(
        get("WEFT-VM-ADDR").iter().any(|l| l.contains("/32")),
        "the lease's first address as /32:\n{all}"
    );
    assert!(
        get("WEFT-VM-ROUTE")
            .iter()
            .any(|l| l.contains("dev flannel-wg")),
        "{all}"
    );
    assert_eq!(
        get("WEFT-VM-PEERS-AFTER"),
        vec!["0"],
        "peer removed with its lease:\n{all}"
    );
    let log = get("WEFT-VM-LOG").join("\n");
    assert!(log.contains("WireGuard device up (kernel)"), "{log}");
}

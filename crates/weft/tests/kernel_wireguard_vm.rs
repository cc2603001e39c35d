//! The wireguard backend on a kernel that has WireGuard. This machine's
//! kernel has none, so the test boots Debian 12's cloud kernel (which has
//! the module) in qemu with an initramfs holding weft, etcd, `wg` and
//! busybox, and runs the agent there on the VM's own network: `auto`
//! must pick the kernel, and `wg` (wireguard-tools, reading the kernel
//! over netlink) must find the device configured as flanneld configures
//! it: this host's key and port 51820, a peer per remote lease, removed
//! with its lease. The kernel and qemu come from `scripts/vm-kernel.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies a program and the shared libraries it loads into `root`.
fn install(root: &Path, program: &Path, name: &str) {
    std::fs::copy(program, root.join("bin").join(name))
        .unwrap_or_else(|e| panic!("copying {}: {e}", program.display()));
    let ldd = Command::new("ldd").arg(program).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = path {
            let to = root.join(lib.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(to.parent().expect("dir")).expect("lib dir");
            std::fs::copy(&lib, &to).unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
        }
    }
}

fn which(name: &str) -> PathBuf {
    PathBuf::from(run(Command::new("sh").args(["-c", &format!("command -v {name}")])).trim())
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc none /proc; mount -t sysfs none /sys; mount -t devtmpfs none /dev
mount -t tmpfs none /run; mount -t tmpfs none /tmp
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "WEFT-VM insmod $m failed"; done
ip link set lo up
ip link add eth0 type dummy && ip addr add 192.0.2.10/24 dev eth0 && ip link set eth0 up
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
echo WEFT-VM-DONE
poweroff -f
"#;

#[test]
fn auto_picks_kernel_wireguard_and_configures_it_as_flanneld_does() {
    let out = run(&mut Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/vm-kernel.sh"
    )));
    let kernel = PathBuf::from(out.trim());
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    for d in ["bin", "proc", "sys", "dev", "run", "tmp", "modules"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox (Debian's busybox-static)");
    install(&root, Path::new(WEFT), "weft");
    for p in ["wg", "etcd", "etcdctl"] {
        install(&root, &which(p), p);
    }
    // iproute2's ip (busybox's has no -d), under a name busybox leaves alone
    install(&root, &which("ip"), "iproute2");
    for e in std::fs::read_dir(kernel.join("modules")).expect("modules") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), root.join("modules").join(e.file_name())).expect("module");
    }
    let peer = run(Command::new("sh").args(["-c", "wg genkey | wg pubkey"]));
    let peer = peer.trim();
    let init = root.join("init");
    std::fs::write(&init, INIT.replace("PEERKEY", peer)).expect("init");
    run(Command::new("chmod").arg("755").arg(&init));
    let initrd = dir.path().join("initrd.cpio");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . | cpio -o -H newc --quiet > {}",
        root.display(),
        initrd.display()
    )));
    let console = run(Command::new("timeout")
        .args(["300", "qemu-system-x86_64"])
        .args([
            "-m",
            "1024",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
            &kernel.join("vmlinuz").display().to_string(),
            "-initrd",
            &initrd.display().to_string(),
            "-append",
            "console=ttyS0 panic=-1 quiet",
        ]));
    // (the firmware's escape sequences may precede the first line)
    let lines: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("WEFT-VM").map(|at| &l[at..]))
        .collect();
    let all = lines.join("\n");
    assert!(
        all.contains("WEFT-VM-DONE"),
        "the VM ran to the end:\n{console}"
    );
    assert!(!all.contains("insmod"), "modules loaded:\n{all}");
    let get = |tag: &str| {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(tag))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
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

//! The configuration files of one lab node's kubelet and containerd: pure
//! text from the node's own paths and ports, so several nodes share one
//! machine without sharing a file, socket or cgroup.

use std::net::Ipv4Addr;
use std::path::Path;

/// The cluster's DNS Service address (in the article's Service range).
pub const CLUSTER_DNS: &str = "10.254.0.10";

/// containerd 2.x (config version 3) for one node: its own root, state and
/// sockets, the CRI plugin with the pinned sandbox image, the node's CNI
/// folders (the standard paths, private to the node's mount namespace)
/// and runc by path, cgroupfs driver (cgroup v1 here). `restrict_oom`
/// keeps containers' OOM scores no lower than containerd's own (for a
/// machine whose capability bounding set lacks CAP_SYS_RESOURCE, where
/// the sandbox's -998 cannot be written).
pub fn containerd_toml(
    dir: &Path,
    socket: &Path,
    runc: &Path,
    pause_image: &str,
    restrict_oom: bool,
) -> String {
    let d = dir.display();
    format!(
        r#"version = 3
root = "{d}/root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "{d}/opt"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "{pause_image}"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    restrict_oom_score_adj = {restrict_oom}
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/opt/cni/bin"]
      conf_dir = "/etc/cni/net.d"
      max_conf_num = 1
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          SystemdCgroup = false
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
"#,
        sock = socket.display(),
        runc = runc.display(),
    )
}

/// What a node's kubelet needs to know of itself.
pub struct KubeletSetup<'a> {
    pub node_ip: Ipv4Addr,
    pub runtime_socket: &'a Path,
    pub client_ca: &'a Path,
    /// The node's own cgroup parent (cgroupfs driver, cgroup v1).
    pub cgroup_root: &'a str,
    pub resolv_conf: &'a Path,
}

/// A KubeletConfiguration for one node.
pub fn kubelet_yaml(s: &KubeletSetup) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup}
failCgroupV1: false
failSwapOn: false
clusterDNS: [{dns}]
clusterDomain: cluster.local
resolvConf: {resolv}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
"#,
        ip = s.node_ip,
        ca = s.client_ca.display(),
        sock = s.runtime_socket.display(),
        cgroup = s.cgroup_root,
        dns = CLUSTER_DNS,
        resolv = s.resolv_conf.display(),
    )
}

/// Whether this process may lower OOM scores (CAP_SYS_RESOURCE, bit 24,
/// in its capability bounding set).
pub fn may_lower_oom_scores() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_paths_and_cgroup() {
        let a = kubelet_yaml(&KubeletSetup {
            node_ip: Ipv4Addr::new(198, 18, 0, 21),
            runtime_socket: Path::new("/tmp/lab/n1/containerd.sock"),
            client_ca: Path::new("/tmp/lab/ca.pem"),
            cgroup_root: "/weft-lab-x-n1",
            resolv_conf: Path::new("/tmp/lab/resolv.conf"),
        });
        assert!(a.contains("cgroupRoot: /weft-lab-x-n1"));
        assert!(a.contains("failCgroupV1: false"));
        assert!(a.contains("unix:///tmp/lab/n1/containerd.sock"));
        let c = containerd_toml(
            Path::new("/tmp/lab/n1/containerd"),
            Path::new("/tmp/lab/n1/containerd.sock"),
            Path::new("/cache/runc"),
            "registry.k8s.io/pause:3.10.2",
            true,
        );
        assert!(c.contains(r#"root = "/tmp/lab/n1/containerd/root""#));
        assert!(c.contains(r#"sandbox = "registry.k8s.io/pause:3.10.2""#));
        assert!(c.contains(r#"BinaryName = "/cache/runc""#));
        assert!(c.contains("restrict_oom_score_adj = true"));
    }
}

//! One Kubernetes node of the lab: a host namespace (its network) plus a
//! mount namespace and a UTS namespace (hostname = node name) of its own,
//! held by a small process, in which the node's kubelet, containerd,
//! shims and weft run. Inside it `/run` is a fresh tmpfs and `/etc`,
//! `/opt` and `/var/lib` are overlays whose upper layers live in the lab
//! directory, so each node has its own
//! `/run/flannel`, `/etc/cni/net.d`, `/opt/cni/bin`, `/var/lib/cni` and
//! runtime sockets, as a real machine has, and nothing lands on this one.
//! The node's cgroup parent is `/<lab prefix>-<node>` in every cgroup v1
//! hierarchy. Stopping the node kills, by PID, every process in its mount
//! namespace or its cgroups, then removes the cgroups; its mounts go with
//! the namespace.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::{Host, Lab};
use crate::process::{tail, Proc};

const CGROUP_FS: &str = "/sys/fs/cgroup";
/// The cgroup v1 hierarchies this machine mounts (and the kubelet uses).
const HIERARCHIES: [&str; 9] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
];

pub struct KubeNode {
    pub host: Host,
    pub dir: PathBuf,
    /// `/<lab prefix>-<node>`: the kubelet's cgroupRoot.
    pub cgroup_root: String,
    /// Programs started in the node, stopped last-started first.
    procs: Vec<Proc>,
    holder: Option<Proc>,
}

impl KubeNode {
    /// Adds host `name` at `octet` to the lab and gives it its own mount
    /// namespace and cgroup parent.
    pub fn create(lab: &mut Lab, name: &str, octet: u8) -> Result<KubeNode> {
        let host = lab.host(name, octet)?;
        let dir = lab.dir().join(name).join("node");
        for d in [
            "etc-up", "etc-work", "opt-up", "opt-work", "lib-up", "lib-work",
        ] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let cgroup_root = format!("/{}-{name}", lab.prefix);
        make_cgroups(&cgroup_root)?;
        let mut node = KubeNode {
            host,
            dir,
            cgroup_root,
            procs: Vec::new(),
            holder: None,
        };
        node.hold_mount_namespace()?;
        Ok(node)
    }

    fn hold_mount_namespace(&mut self) -> Result<()> {
        let d = self.dir.display();
        let name = &self.host.name;
        let script = format!(
            "set -e
hostname {name}
mount -t tmpfs -o mode=755 weft-node /run
mkdir -p /run/flannel /run/netns /run/lock
mount -t overlay weft-node -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work /etc
mount -t overlay weft-node -o lowerdir=/opt,upperdir={d}/opt-up,workdir={d}/opt-work /opt
mount -t overlay weft-node -o lowerdir=/var/lib,upperdir={d}/lib-up,workdir={d}/lib-work /var/lib
mkdir -p /etc/cni/net.d /opt/cni/bin
touch /run/weft-node-ready
exec sleep infinity"
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.host.ns))
            .args([
                "--",
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "slave",
                "--",
            ])
            .args(["sh", "-c", &script]);
        let holder = Proc::spawn_command(
            &format!("node {}", self.host.name),
            self.dir.join("node.log"),
            cmd,
        )?;
        self.holder = Some(holder);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.path("/run/weft-node-ready").exists() {
            if let Some(h) = self.holder.as_mut() {
                if let Some(code) = h.exit_code() {
                    bail!(
                        "node {}: setting up its mount namespace failed ({code}): {}",
                        self.host.name,
                        h.log_tail(5)
                    );
                }
            }
            if Instant::now() > end {
                bail!(
                    "node {}: its mount namespace was not ready in 10 s",
                    self.host.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.host.name
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().and_then(Proc::pid).unwrap_or(0)
    }

    /// `path` as the node sees it (through the holder's root).
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.holder_pid()))
    }

    /// A command that runs `program args…` inside the node (its network,
    /// mount and UTS namespaces: a host-network pod's hostname is the
    /// node's name, as on a machine).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.holder_pid()))
            .args(["--mount", "--uts", "--net", "--", program])
            .args(args);
        cmd
    }

    /// Runs `program args…` in the node to completion; its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program, args)
            .output()
            .with_context(|| format!("running {program} on {}", self.host.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} on {}: {}",
                args.join(" "),
                self.host.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `program args…` in the node as `what` (log `<what>.log` in
    /// the node's folder), with extra environment.
    pub fn spawn(
        &mut self,
        what: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<()> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.command(program, &refs);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let p = Proc::spawn_command(&format!("{what}@{}", self.host.name), self.log(what), cmd)?;
        self.procs.push(p);
        Ok(())
    }

    /// Stops program `what` started in the node (SIGTERM, then SIGKILL),
    /// as deleting its DaemonSet would; false if it was not running.
    pub fn stop_program(&mut self, what: &str) -> bool {
        let name = format!("{what}@{}", self.host.name);
        let Some(i) = self.procs.iter().position(|p| p.name == name) else {
            return false;
        };
        let mut p = self.procs.remove(i);
        p.stop(Duration::from_secs(5));
        true
    }

    /// The PID of program `what` started in the node.
    pub fn pid(&self, what: &str) -> Option<u32> {
        let name = format!("{what}@{}", self.host.name);
        self.procs
            .iter()
            .find(|p| p.name == name)
            .and_then(Proc::pid)
    }

    pub fn log(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}.log"))
    }

    pub fn log_tail(&self, what: &str, lines: usize) -> String {
        tail(&self.log(what), lines)
    }

    /// Whether every program started in the node still runs; the first
    /// that exited otherwise, with its log's end.
    pub fn check_running(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(code) = p.exit_code() {
                bail!(
                    "node {}: {} exited with {code} (log {}):\n{}",
                    self.host.name,
                    p.name,
                    p.log.display(),
                    p.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// Stops everything in the node: its programs (SIGTERM, then
    /// SIGKILL), then by PID whatever is left in its mount namespace or
    /// cgroups (shims, containers), then the cgroups and the namespace.
    pub fn stop(&mut self) {
        for mut p in self.procs.drain(..).rev() {
            p.stop(Duration::from_secs(3));
        }
        // the node's own mount namespace only: never ours (a holder that
        // died before unsharing would otherwise name every process here)
        let ours = mount_ns_of(std::process::id());
        let mnt = mount_ns_of(self.holder_pid()).filter(|ns| Some(*ns) != ours);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = pids_in_cgroups(&self.cgroup_root);
            if let Some(ns) = mnt {
                left.extend(pids_in_mount_ns(ns, self.holder_pid()));
            }
            if left.is_empty() || Instant::now() > end {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut h) = self.holder.take() {
            h.kill_now();
        }
        crate::cgroups::remove_tree(&self.cgroup_root);
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `root` in every hierarchy, cpuset's cpus and mems copied from the top.
fn make_cgroups(root: &str) -> Result<()> {
    for h in HIERARCHIES {
        let base = Path::new(CGROUP_FS).join(h);
        if !base.exists() {
            bail!("cgroup v1 hierarchy {} is not mounted", base.display());
        }
        let dir = base.join(root.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if h == "cpuset" {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(base.join(f))?;
                std::fs::write(dir.join(f), v.trim())
                    .with_context(|| format!("writing {}", dir.join(f).display()))?;
            }
        }
    }
    Ok(())
}

/// Every PID in `root`'s pids hierarchy and below.
fn pids_in_cgroups(root: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(CGROUP_FS)
        .join("pids")
        .join(root.trim_start_matches('/'))];
    while let Some(dir) = stack.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// The inode of process `pid`'s mount namespace.
fn mount_ns_of(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// Every process in mount namespace `ns` other than `holder`.
fn pids_in_mount_ns(ns: u64, holder: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != holder && mount_ns_of(pid) == Some(ns))
        .collect()
}

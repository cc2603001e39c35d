//! Leftover kubelet QoS cgroups: the article's second problem.
//!
//! kubelet (with `--cgroups-per-qos`, the default) puts pods under a
//! `kubepods` cgroup with one child per QoS class. With the systemd cgroup
//! driver these are transient slice units, `kubepods.slice`,
//! `kubepods-burstable.slice` and `kubepods-besteffort.slice`. When kubelet
//! is restarted while its pods live on, those units and cgroups stay behind
//! and the new kubelet fails with `failed to create top level Burstable QOS
//! cgroup : Unit kubepods-burstable.slice already exists`. The article
//! rebooted; stopping the leftover slices (after the containers in them)
//! is enough.
//!
//! [`scan`] reads the cgroup tree and the process table below a root
//! directory (`/` in production, a prepared tree in tests): which kubepods
//! cgroups exist in which hierarchy, how many pods and processes they still
//! hold, and whether a kubelet runs. [`finding`] judges it.

use std::collections::BTreeSet;
use std::path::Path;

use crate::doctor::{Finding, Severity};

const CHECK: &str = "kubepods-leftovers";
/// The QoS slices kubelet's systemd driver creates, parent last.
const SLICES: [&str; 3] = [
    "kubepods-burstable.slice",
    "kubepods-besteffort.slice",
    "kubepods.slice",
];

/// What the cgroup tree and process table say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubepodsScan {
    /// Whether any cgroup hierarchy was found under the root.
    pub cgroups_readable: bool,
    /// QoS slice units present (systemd driver), names from [`SLICES`].
    pub slices: Vec<&'static str>,
    /// A cgroupfs-driver `kubepods` cgroup exists.
    pub cgroupfs: bool,
    /// Pod cgroups below them (`pod<uid>` / `kubepods-…-pod<uid>.slice`).
    pub pods: usize,
    /// Processes still inside them.
    pub processes: usize,
    /// A process named `kubelet` runs.
    pub kubelet_running: bool,
}

/// Reads the cgroup hierarchies under `root/sys/fs/cgroup` (v2 directly,
/// v1 one directory per controller) and `root/proc/*/comm`.
pub fn scan(root: &Path) -> KubepodsScan {
    let mut s = KubepodsScan::default();
    let base = root.join("sys/fs/cgroup");
    let mut hierarchies = vec![base.clone()];
    if let Ok(entries) = std::fs::read_dir(&base) {
        s.cgroups_readable = true;
        hierarchies.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    let mut pod_dirs = BTreeSet::new();
    let mut processes = BTreeSet::new();
    for h in &hierarchies {
        let sliced = h.join("kubepods.slice");
        if sliced.is_dir() {
            for name in SLICES {
                let dir = if name == "kubepods.slice" {
                    sliced.clone()
                } else {
                    sliced.join(name)
                };
                if dir.is_dir() && !s.slices.contains(&name) {
                    s.slices.push(name);
                }
            }
            count(&sliced, &mut pod_dirs, &mut processes);
        }
        let plain = h.join("kubepods");
        if plain.is_dir() {
            s.cgroupfs = true;
            count(&plain, &mut pod_dirs, &mut processes);
        }
    }
    s.slices.sort_by_key(|n| SLICES.iter().position(|x| x == n));
    s.pods = pod_dirs.len();
    s.processes = processes.len();
    s.kubelet_running = std::fs::read_dir(root.join("proc"))
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "kubelet")
            })
        })
        .unwrap_or(false);
    s
}

/// Walks a kubepods cgroup: pod cgroups by name and processes by PID in
/// every `cgroup.procs` (sets: v1 hierarchies list the same pods and
/// processes once each).
fn count(dir: &Path, pods: &mut BTreeSet<String>, processes: &mut BTreeSet<String>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        processes.extend(
            procs
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let pod = name
            .strip_suffix(".slice")
            .and_then(|n| n.rsplit_once("-pod"))
            .map(|(_, uid)| uid.to_string())
            .or_else(|| name.strip_prefix("pod").map(str::to_string));
        if let Some(uid) = pod {
            pods.insert(uid);
        }
        count(&e.path(), pods, processes);
    }
}

/// The verdict: QoS slices with no kubelet running are what makes the next
/// kubelet start fail.
pub fn finding(s: &KubepodsScan) -> Finding {
    if !s.cgroups_readable {
        return Finding::skip(CHECK, "no cgroup tree to read");
    }
    if s.slices.is_empty() && !s.cgroupfs {
        return Finding::ok(CHECK, "no kubelet QoS cgroups");
    }
    if s.kubelet_running {
        return Finding::ok(CHECK, "kubelet is running and owns the kubepods cgroups");
    }
    if s.slices.is_empty() {
        return Finding::ok(
            CHECK,
            format!(
                "kubelet is not running; its cgroupfs kubepods cgroups remain ({}), which the next kubelet reuses",
                holding(s)
            ),
        );
    }
    let units = s.slices.join(" ");
    let mut fix = String::new();
    if s.processes > 0 {
        fix.push_str("stop the old pods' containers first (docker ps --filter name=k8s_; docker rm -f …), then ");
    }
    fix.push_str(&format!(
        "instead of rebooting: systemctl stop {units}; systemctl reset-failed; systemctl start kubelet"
    ));
    Finding {
        check: CHECK,
        severity: Severity::Warning,
        message: format!(
            "kubelet is not running but its QoS slices remain ({units}; {}): kubelet will fail to start with \"Unit kubepods-burstable.slice already exists\"",
            holding(s)
        ),
        fix: Some(fix),
    }
}

fn holding(s: &KubepodsScan) -> String {
    let pods = match s.pods {
        1 => "1 pod".to_string(),
        n => format!("{n} pods"),
    };
    let procs = match s.processes {
        0 => "no processes".to_string(),
        1 => "1 process".to_string(),
        n => format!("{n} processes"),
    };
    format!("{pods}, {procs}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(t.path().join("proc/1")).expect("writing the tree");
        fs::write(t.path().join("proc/1/comm"), "systemd\n").expect("writing the tree");
        t
    }

    fn mkdir(root: &Path, rel: &str) {
        fs::create_dir_all(root.join(rel)).expect("writing the tree");
    }

    #[test]
    fn leftover_slices_without_kubelet_are_the_article_failure() {
        let t = tree();
        let r = t.path();
        for h in ["systemd", "memory"] {
            mkdir(r, &format!("sys/fs/cgroup/{h}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"));
            mkdir(
                r,
                &format!("sys/fs/cgroup/{h}/kubepods.slice/kubepods-besteffort.slice"),
            );
        }
        let s = scan(r);
        assert_eq!(
            s.slices,
            vec![
                "kubepods-burstable.slice",
                "kubepods-besteffort.slice",
                "kubepods.slice"
            ]
        );
        assert_eq!((s.pods, s.processes, s.kubelet_running), (1, 0, false));
        let f = finding(&s);
        assert_eq!(f.severity, Severity::Warning);
        assert!(
            f.message
                .contains("Unit kubepods-burstable.slice already exists"),
            "{}",
            f.message
        );
        assert!(f.message.contains("1 pod, no processes"), "{}", f.message);
        let fix = f.fix.expect("a fix");
        assert!(fix.starts_with("instead of rebooting: systemctl stop kubepods-burstable.slice kubepods-besteffort.slice kubepods.slice;"), "{fix}");
    }

    #[test]
    fn processes_still_inside_are_stopped_first() {
        let t = tree();
        let r = t.path();
        let pod = "sys/fs/cgroup/unified/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab.slice";
        mkdir(r, pod);
        fs::write(r.join(pod).join("cgroup.procs"), "4242\n4243\n").expect("writing the tree");
        let f = finding(&scan(r));
        assert!(f.message.contains("1 pod, 2 processes"), "{}", f.message);
        assert!(f
            .fix
            .expect("a fix")
            .starts_with("stop the old pods' containers first"));
    }

    #[test]
    fn a_running_kubelet_owns_them_and_cgroupfs_leftovers_are_reused() {
        let t = tree();
        let r = t.path();
        mkdir(r, "sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice");
        mkdir(r, "proc/77");
        fs::write(r.join("proc/77/comm"), "kubelet\n").expect("writing the tree");
        assert_eq!(finding(&scan(r)).severity, Severity::Ok);

        let t = tree();
        mkdir(t.path(), "sys/fs/cgroup/cpu/kubepods/burstable/pod99");
        let f = finding(&scan(t.path()));
        assert_eq!(f.severity, Severity::Ok);
        assert!(f.message.contains("1 pod"), "{}", f.message);

        let t = tree();
        mkdir(t.path(), "sys/fs/cgroup/cpu");
        assert_eq!(finding(&scan(t.path())).message, "no kubelet QoS cgroups");
        assert_eq!(
            finding(&scan(&t.path().join("nowhere"))).severity,
            Severity::Skipped
        );
    }
}

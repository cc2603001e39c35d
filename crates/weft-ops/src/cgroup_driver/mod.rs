//! Do kubelet and docker use the same cgroup driver?
//!
//! When they differ, kubelet refuses to start (`misconfiguration: kubelet
//! cgroup driver: "cgroupfs" is different from docker cgroup driver:
//! "systemd"`) or pods fail with errors such as `kubepods-burstable.slice
//! already exists`. [`check`] reads both sides' configuration from files
//! below a root directory (`/` in production, a temporary tree in tests) and
//! says where each driver came from and how to line them up. It spawns
//! nothing: a caller that can run `docker info --format '{{.CgroupDriver}}'`
//! passes its output in.
//!
//! Docker, highest precedence first:
//! 1. `docker info` output, when given (what the running daemon uses);
//! 2. `--exec-opt native.cgroupdriver=...` on the last `ExecStart=` of the
//!    drop-ins `/etc/systemd/system/docker.service.d/*.conf` (name order);
//! 3. the same flag in `/etc/sysconfig/docker` (`OPTIONS=...`);
//! 4. `exec-opts` in `/etc/docker/daemon.json`;
//! 5. docker's default when docker is installed but sets no driver:
//!    `cgroupfs` on cgroup v1, `systemd` on cgroup v2 (dockerd picks systemd
//!    on the unified hierarchy when systemd is init, which this check
//!    assumes).
//!
//! Docker counts as installed when `docker info` output is given, or any
//! of its configuration files, a `docker.service` unit or `/usr/bin/dockerd`
//! exists.
//!
//! Kubelet, highest precedence first (a flag wins over the config file):
//! 1. `--cgroup-driver=...` in `/etc/kubernetes/kubelet` (`KUBELET_ARGS=`),
//!    `/etc/sysconfig/kubelet`, `/etc/default/kubelet`,
//!    `/var/lib/kubelet/kubeadm-flags.env`, then the drop-ins
//!    `kubelet.service.d/*.conf` under `/etc/systemd/system`,
//!    `/usr/lib/systemd/system` and `/lib/systemd/system`;
//! 2. `cgroupDriver:` in the KubeletConfiguration named by `--config=` in
//!    those files (read below the root), else in
//!    `/var/lib/kubelet/config.yaml`; `cgroupfs` when that file exists
//!    without the field (the KubeletConfiguration default);
//! 3. `cgroupfs`, kubelet's built-in default, when kubelet is installed but
//!    configures nothing.
//!
//! If kubelet is pointed at a CRI endpoint that is not docker's
//! (`--container-runtime-endpoint` or `containerRuntimeEndpoint`, e.g.
//! containerd), docker's driver does not concern it and the verdict is
//! [`Verdict::NotApplicable`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use docker::docker_side;
use files::Files;
use kubelet::kubelet_side;

/// A cgroup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl CgroupDriver {
    /// `systemd` or `cgroupfs` (surrounding spaces ignored, as docker does).
    pub fn parse(text: &str) -> Option<CgroupDriver> {
        match text.trim() {
            "systemd" => Some(CgroupDriver::Systemd),
            "cgroupfs" => Some(CgroupDriver::Cgroupfs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        }
    }
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a driver setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The file as the host sees it (`/etc/docker/daemon.json`), or `None`
    /// for `docker info` and built-in defaults.
    pub file: Option<String>,
    /// How the file or the default says it, e.g.
    /// `exec-opts native.cgroupdriver=systemd`.
    pub how: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{} in {file}", self.how),
            None => f.write_str(&self.how),
        }
    }
}

/// One side's driver and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected {
    pub driver: CgroupDriver,
    pub source: Source,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Mismatch,
    /// kubelet or docker is absent, or kubelet does not use docker.
    NotApplicable,
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverReport {
    pub kubelet: Option<Detected>,
    pub docker: Option<Detected>,
    pub verdict: Verdict,
    /// One line describing the verdict.
    pub summary: String,
    /// For a mismatch: what to change, e.g. `set kubelet
    /// --cgroup-driver=systemd (in /etc/kubernetes/kubelet) or docker
    /// exec-opts native.cgroupdriver=cgroupfs (in /etc/docker/daemon.json),
    /// then restart both`.
    pub fix: Option<String>,
    /// Further observations: conflicting settings, a daemon running with a
    /// driver its files no longer say, a `--config` that does not exist.
    pub notes: Vec<String>,
}

impl DriverReport {
    /// Human-readable lines: each side, the verdict, the fix and the notes.
    pub fn render(&self) -> String {
        let side = |detected: &Option<Detected>| match detected {
            Some(d) => format!("{} ({})", d.driver, d.source),
            None => "not found".to_string(),
        };
        let verdict = match self.verdict {
            Verdict::Match => "match",
            Verdict::Mismatch => "MISMATCH",
            Verdict::NotApplicable => "not applicable",
        };
        let mut out = format!(
            "kubelet: {}\ndocker:  {}\nverdict: {verdict}: {}\n",
            side(&self.kubelet),
            side(&self.docker),
            self.summary
        );
        if let Some(fix) = &self.fix {
            out.push_str(&format!("fix:     {fix}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("note:    {note}\n"));
        }
        out
    }
}

/// Why the check could not be made. One line naming the file (as read,
/// below the root) and the field.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },
}

/// Compares kubelet's and docker's cgroup drivers as configured below
/// `root`. `docker_info` is the output of `docker info --format
/// '{{.CgroupDriver}}'` when the caller could run it; `cgroup_v2` says
/// whether the host uses the unified hierarchy (it decides docker's
/// default).
pub fn check(
    root: &Path,
    docker_info: Option<&str>,
    cgroup_v2: bool,
) -> Result<DriverReport, CheckError> {
    let files = Files { root };
    let mut notes = Vec::new();
    let docker = docker_side(&files, docker_info, cgroup_v2, &mut notes)?;
    let kubelet = kubelet_side(&files, &mut notes)?;

    let (verdict, summary, fix) = match (&kubelet.detected, &docker.detected) {
        (Some(_), _) if kubelet.runtime_endpoint.is_some() => (
            Verdict::NotApplicable,
            format!(
                "kubelet uses the container runtime at {}, not docker: compare its cgroup \
                 driver with that runtime's instead",
                kubelet.runtime_endpoint.as_deref().unwrap_or_default()
            ),
            None,
        ),
        (Some(k), Some(d)) if k.driver == d.driver => (
            Verdict::Match,
            format!("kubelet and docker both use the {} cgroup driver", k.driver),
            None,
        ),
        (Some(k), Some(d)) => (
            Verdict::Mismatch,
            format!(
                "kubelet uses {} but docker uses {}; kubelet reports \"misconfiguration: \
                 kubelet cgroup driver: \\\"{}\\\" is different from docker cgroup driver: \
                 \\\"{}\\\"\"",
                k.driver, d.driver, k.driver, d.driver
            ),
            Some(format!(
                "set {} or {}, then restart both",
                kubelet.fix_for(d.driver),
                docker.fix_for(k.driver)
            )),
        ),
        (None, None) => (
            Verdict::NotApplicable,
            "neither kubelet nor docker is installed".to_string(),
            None,
        ),
        (None, Some(_)) => (
            Verdict::NotApplicable,
            "kubelet is not installed".to_string(),
            None,
        ),
        (Some(_), None) => (
            Verdict::NotApplicable,
            "docker is not installed".to_string(),
            None,
        ),
    };
    if let (Some(k), Some(pending)) = (&kubelet.detected, docker.pending) {
        if verdict != Verdict::NotApplicable && k.driver != pending {
            notes.push(format!(
                "after a restart docker would use {pending}, which differs from kubelet's {}",
                k.driver
            ));
        }
    }
    Ok(DriverReport {
        kubelet: kubelet.detected,
        docker: docker.detected,
        verdict,
        summary,
        fix,
        notes,
    })
}

mod docker;
mod files;
mod kubelet;
#[cfg(test)]
mod tests;

//! Where the pinned upstream test peers are: the folders
//! `scripts/upstream.sh` builds once per machine (Go module proxy sources,
//! cached outside the repository).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The folder of upstream set `set`: `$env` when set (`scripts/test.sh`
/// sets it), else what `scripts/upstream.sh SET` prints (building the set
/// the first time).
fn upstream(set: &str, env: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(env) {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/upstream.sh");
    let out = std::process::Command::new(&script)
        .arg(set)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {set} failed (the upstream test peers are needed): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The folder holding kube-apiserver, kube-proxy and kubectl
/// (`WEFT_UPSTREAM_KUBERNETES`).
pub fn upstream_kubernetes() -> Result<PathBuf> {
    upstream("kubernetes", "WEFT_UPSTREAM_KUBERNETES")
}

/// The folder of the rest of a real cluster: kubelet,
/// kube-controller-manager, kube-scheduler, containerd, runc, the
/// reference CNI plugins, CoreDNS, pause and agnhost
/// (`WEFT_UPSTREAM_CLUSTER`).
pub fn upstream_cluster() -> Result<PathBuf> {
    upstream("cluster", "WEFT_UPSTREAM_CLUSTER")
}

/// Upstream flanneld, the binary: the main peer, v0.28.10
/// (`WEFT_UPSTREAM_FLANNEL` names its folder).
pub fn upstream_flanneld() -> Result<PathBuf> {
    Ok(upstream("flannel", "WEFT_UPSTREAM_FLANNEL")?.join("flannel"))
}

/// The older flanneld v0.26.7, for the lease shapes it writes
/// (`WEFT_UPSTREAM_FLANNEL_V026` names its folder).
pub fn upstream_flanneld_v026() -> Result<PathBuf> {
    Ok(upstream("flannel-v0.26", "WEFT_UPSTREAM_FLANNEL_V026")?.join("flannel"))
}

/// Upstream flannel's CNI plugin, the binary (`WEFT_UPSTREAM_FLANNEL_CNI`
/// names its folder).
pub fn upstream_flannel_cni() -> Result<PathBuf> {
    Ok(upstream("flannel-cni", "WEFT_UPSTREAM_FLANNEL_CNI")?.join("flannel"))
}

/// What `program flag` prints as its version (first line of stdout, else
/// of stderr: flanneld prints it there), or `?`.
pub fn program_version(program: &Path, flag: &str) -> String {
    let Ok(out) = std::process::Command::new(program).arg(flag).output() else {
        return "?".into();
    };
    let first = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        text.lines().next().unwrap_or("").trim().to_string()
    };
    let line = first(&out.stdout);
    if line.is_empty() {
        let line = first(&out.stderr);
        if line.is_empty() {
            return "?".into();
        }
        return line;
    }
    line
}

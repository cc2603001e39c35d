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
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_yaml::Value as YamlValue;

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

const DAEMON_JSON: &str = "etc/docker/daemon.json";
const DOCKER_SYSCONFIG: &str = "etc/sysconfig/docker";
const DOCKER_DROPINS: &str = "etc/systemd/system/docker.service.d";
const DOCKER_MARKERS: [&str; 5] = [
    "etc/systemd/system/docker.service",
    "lib/systemd/system/docker.service",
    "usr/lib/systemd/system/docker.service",
    "usr/bin/dockerd",
    "usr/local/bin/dockerd",
];

/// kubelet's flag files, highest precedence first.
const KUBELET_FLAG_FILES: [&str; 4] = [
    "etc/kubernetes/kubelet",
    "etc/sysconfig/kubelet",
    "etc/default/kubelet",
    "var/lib/kubelet/kubeadm-flags.env",
];
const KUBELET_DROPINS: [&str; 3] = [
    "etc/systemd/system/kubelet.service.d",
    "usr/lib/systemd/system/kubelet.service.d",
    "lib/systemd/system/kubelet.service.d",
];
const KUBELET_CONFIG: &str = "var/lib/kubelet/config.yaml";
const KUBELET_MARKERS: [&str; 6] = [
    "etc/systemd/system/kubelet.service",
    "lib/systemd/system/kubelet.service",
    "usr/lib/systemd/system/kubelet.service",
    "usr/bin/kubelet",
    "usr/local/bin/kubelet",
    "etc/kubernetes/kubelet.conf",
];

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

/// File access confined to the root.
struct Files<'a> {
    root: &'a Path,
}

impl Files<'_> {
    fn full(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn exists(&self, rel: &str) -> bool {
        self.full(rel).exists()
    }

    /// The file's text, `None` when it does not exist.
    fn read(&self, rel: &str) -> Result<Option<String>, CheckError> {
        let path = self.full(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckError::Read { path, source }),
        }
    }

    /// `*.conf` files of a drop-in directory, in name order (systemd's).
    fn dropins(&self, dir: &str) -> Result<Vec<String>, CheckError> {
        let path = self.full(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CheckError::Read { path, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CheckError::Read {
                path: path.clone(),
                source,
            })?;
            if let Some(name) = entry.file_name().to_str() {
                if name.ends_with(".conf") {
                    names.push(format!("{dir}/{name}"));
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn invalid(&self, rel: &str, problem: String) -> CheckError {
        CheckError::Invalid {
            origin: self.full(rel).display().to_string(),
            problem,
        }
    }
}

/// `/rel`: how the host names a file below the root.
fn host_path(rel: &str) -> String {
    format!("/{rel}")
}

/// A path from a configuration file, made relative to the root; `..` never
/// climbs above it.
fn below_root(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

/// Lines of a shell-style environment file or a systemd unit with comments
/// dropped and backslash continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The words of a line with quotes removed and `NAME=` assignment prefixes
/// peeled off (`KUBELET_ARGS="--a=b --c"` gives `--a=b`, `--c`).
fn words(line: &str) -> Vec<String> {
    let unquoted: String = line
        .chars()
        .map(|c| if c == '"' || c == '\'' { ' ' } else { c })
        .collect();
    let mut out = Vec::new();
    for word in unquoted.split_whitespace() {
        let mut word = word;
        while !word.starts_with('-') {
            match word.split_once('=') {
                Some((name, rest)) if is_identifier(name) => word = rest,
                _ => break,
            }
        }
        if !word.is_empty() {
            out.push(word.to_string());
        }
    }
    out
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every value of `--flag value` / `--flag=value` among `words`, in order.
fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    let long = format!("--{flag}");
    let with_eq = format!("--{flag}=");
    let mut values = Vec::new();
    let mut iter = words.iter();
    while let Some(word) = iter.next() {
        if *word == long {
            if let Some(value) = iter.next() {
                values.push(value.clone());
            }
        } else if let Some(value) = word.strip_prefix(&with_eq) {
            values.push(value.to_string());
        }
    }
    values
}

/// The last value of `--flag` in a whole file (the last one wins on a
/// command line).
fn last_flag_in(text: &str, flag: &str) -> Option<String> {
    logical_lines(text)
        .iter()
        .flat_map(|line| flag_values(&words(line), flag))
        .last()
}

/// The value of docker's `native.cgroupdriver` among exec-opts (`key=value`
/// strings; docker compares the key case-insensitively). The last wins.
fn cgroupdriver_opt<'a>(opts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    opts.into_iter()
        .filter_map(|opt| opt.split_once('='))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("native.cgroupdriver"))
        .map(|(_, value)| value.trim().to_string())
        .last()
}

fn driver_or_error(
    files: &Files<'_>,
    rel: &str,
    field: &str,
    value: &str,
) -> Result<CgroupDriver, CheckError> {
    CgroupDriver::parse(value).ok_or_else(|| {
        files.invalid(
            rel,
            format!("{field}: unknown cgroup driver {value:?} (expected systemd or cgroupfs)"),
        )
    })
}

struct DockerSide {
    detected: Option<Detected>,
    /// The driver docker's files set when the running daemon (docker info)
    /// uses another one: what a restart of docker would switch to.
    pending: Option<CgroupDriver>,
    /// Where docker's setting lives or should go: (host path, is a flag).
    configured_in: (String, bool),
}

impl DockerSide {
    fn fix_for(&self, driver: CgroupDriver) -> String {
        let (file, flag) = &self.configured_in;
        if *flag {
            format!("docker --exec-opt native.cgroupdriver={driver} (in {file})")
        } else {
            format!("docker exec-opts native.cgroupdriver={driver} (in {file})")
        }
    }
}

fn docker_side(
    files: &Files<'_>,
    docker_info: Option<&str>,
    cgroup_v2: bool,
    notes: &mut Vec<String>,
) -> Result<DockerSide, CheckError> {
    let mut installed = DOCKER_MARKERS.iter().any(|m| files.exists(m));

    // Settings from files, highest precedence first: (rel path, driver, how, is a flag).
    let mut configured: Vec<(String, CgroupDriver, String, bool)> = Vec::new();

    let dropins = files.dropins(DOCKER_DROPINS)?;
    installed |= files.exists(DOCKER_DROPINS);
    let mut exec_start: Option<(String, String)> = None;
    for rel in &dropins {
        let Some(text) = files.read(rel)? else {
            continue;
        };
        for line in logical_lines(&text) {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                // An empty ExecStart= clears the list; the last one set runs.
                exec_start = if command.trim().is_empty() {
                    None
                } else {
                    Some((rel.clone(), command.to_string()))
                };
            }
        }
    }
    if let Some((rel, command)) = exec_start {
        let opts = flag_values(&words(&command), "exec-opt");
        if let Some(value) = cgroupdriver_opt(opts.iter().map(String::as_str)) {
            let driver = driver_or_error(
                files,
                &rel,
                "ExecStart --exec-opt native.cgroupdriver",
                &value,
            )?;
            configured.push((
                rel,
                driver,
                format!("--exec-opt native.cgroupdriver={driver} on ExecStart"),
                true,
            ));
        }
    }

    if let Some(text) = files.read(DOCKER_SYSCONFIG)? {
        installed = true;
        let opts: Vec<String> = logical_lines(&text)
            .iter()
            .flat_map(|line| flag_values(&words(line), "exec-opt"))
            .collect();
        if let Some(value) = cgroupdriver_opt(opts.iter().map(String::as_str)) {
            let driver = driver_or_error(
                files,
                DOCKER_SYSCONFIG,
                "--exec-opt native.cgroupdriver",
                &value,
            )?;
            configured.push((
                DOCKER_SYSCONFIG.to_string(),
                driver,
                format!("--exec-opt native.cgroupdriver={driver} flag"),
                true,
            ));
        }
    }

    let mut json_setting = None;
    if let Some(text) = files.read(DAEMON_JSON)? {
        installed = true;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| files.invalid(DAEMON_JSON, format!("invalid JSON: {e}")))?;
        let object = json
            .as_object()
            .ok_or_else(|| files.invalid(DAEMON_JSON, "expected a JSON object".into()))?;
        if let Some(opts) = object.get("exec-opts") {
            let not_strings =
                || files.invalid(DAEMON_JSON, "exec-opts: expected a list of strings".into());
            let opts = opts.as_array().ok_or_else(not_strings)?;
            let opts: Vec<&str> = opts
                .iter()
                .map(|o| o.as_str().ok_or_else(not_strings))
                .collect::<Result<_, _>>()?;
            if let Some(value) = cgroupdriver_opt(opts) {
                let driver =
                    driver_or_error(files, DAEMON_JSON, "exec-opts native.cgroupdriver", &value)?;
                json_setting = Some(driver);
                configured.push((
                    DAEMON_JSON.to_string(),
                    driver,
                    format!("exec-opts native.cgroupdriver={driver}"),
                    false,
                ));
            }
        }
    }

    if json_setting.is_some() && configured.iter().any(|c| c.3) {
        notes.push(format!(
            "docker's native.cgroupdriver is set both as a flag ({}) and in {}: dockerd refuses \
             to start when a directive is given in both places",
            host_path(&configured[0].0),
            host_path(DAEMON_JSON)
        ));
    }

    let configured_in = configured
        .first()
        .map_or((host_path(DAEMON_JSON), false), |c| (host_path(&c.0), c.3));

    let info = docker_info.map(str::trim).filter(|s| !s.is_empty());
    let mut pending = None;
    let detected = if let Some(info) = info {
        let driver = CgroupDriver::parse(info).ok_or_else(|| CheckError::Invalid {
            origin: "docker info".into(),
            problem: format!(
                "CgroupDriver: unknown cgroup driver {info:?} (expected systemd or cgroupfs)"
            ),
        })?;
        if let Some((rel, file_driver, _, _)) = configured.first() {
            if *file_driver != driver {
                pending = Some(*file_driver);
                notes.push(format!(
                    "docker is running with {driver} but {} sets {file_driver}: restart docker \
                     to apply it",
                    host_path(rel)
                ));
            }
        }
        Some(Detected {
            driver,
            source: Source {
                file: None,
                how: "docker info".into(),
            },
        })
    } else if let Some((rel, driver, how, _)) = configured.into_iter().next() {
        Some(Detected {
            driver,
            source: Source {
                file: Some(host_path(&rel)),
                how,
            },
        })
    } else if installed {
        let (driver, version) = if cgroup_v2 {
            (CgroupDriver::Systemd, "v2")
        } else {
            (CgroupDriver::Cgroupfs, "v1")
        };
        Some(Detected {
            driver,
            source: Source {
                file: None,
                how: format!("docker's default on cgroup {version} (no native.cgroupdriver set)"),
            },
        })
    } else {
        None
    };
    Ok(DockerSide {
        detected,
        pending,
        configured_in,
    })
}

struct KubeletSide {
    detected: Option<Detected>,
    /// Where the setting lives or should go: (host path, as a flag).
    configured_in: Option<(String, bool)>,
    /// A CRI endpoint that is not docker's, when kubelet is given one.
    runtime_endpoint: Option<String>,
}

impl KubeletSide {
    fn fix_for(&self, driver: CgroupDriver) -> String {
        match &self.configured_in {
            Some((file, true)) => format!("kubelet --cgroup-driver={driver} (in {file})"),
            Some((file, false)) => format!("kubelet cgroupDriver: {driver} (in {file})"),
            None => format!("kubelet --cgroup-driver={driver}"),
        }
    }
}

fn kubelet_side(files: &Files<'_>, notes: &mut Vec<String>) -> Result<KubeletSide, CheckError> {
    let mut installed = KUBELET_MARKERS.iter().any(|m| files.exists(m));
    let mut flag_files: Vec<String> = Vec::new();
    for rel in KUBELET_FLAG_FILES {
        flag_files.push(rel.to_string());
    }
    for dir in KUBELET_DROPINS {
        installed |= files.exists(dir);
        flag_files.extend(files.dropins(dir)?);
    }

    // (rel, value) per flag, highest precedence first.
    let mut driver_flags: Vec<(String, String)> = Vec::new();
    let mut config_flags: Vec<(String, String)> = Vec::new();
    let mut endpoint_flags: Vec<String> = Vec::new();
    let mut first_existing: Option<String> = None;
    for rel in &flag_files {
        let Some(text) = files.read(rel)? else {
            continue;
        };
        installed = true;
        if first_existing.is_none() && KUBELET_FLAG_FILES.contains(&rel.as_str()) {
            first_existing = Some(rel.clone());
        }
        if let Some(value) = last_flag_in(&text, "cgroup-driver") {
            driver_flags.push((rel.clone(), value));
        }
        if let Some(value) = last_flag_in(&text, "config") {
            config_flags.push((rel.clone(), value));
        }
        if let Some(value) = last_flag_in(&text, "container-runtime-endpoint") {
            endpoint_flags.push(value);
        }
    }

    // The configuration file: the one --config names, else kubeadm's.
    let mut config: Option<(String, YamlValue)> = None;
    let config_rel = match config_flags.first() {
        Some((flag_rel, path)) => {
            let rel = below_root(path);
            if !files.exists(&rel) {
                notes.push(format!(
                    "kubelet --config in {} names {path}, which does not exist",
                    host_path(flag_rel)
                ));
            }
            rel
        }
        None => KUBELET_CONFIG.to_string(),
    };
    if let Some(text) = files.read(&config_rel)? {
        installed = true;
        let value: YamlValue = serde_yaml::from_str(&text).map_err(|e| {
            files.invalid(
                &config_rel,
                format!("invalid YAML: {}", one_line(&e.to_string())),
            )
        })?;
        if !(value.is_mapping() || value.is_null()) {
            return Err(files.invalid(&config_rel, "expected a KubeletConfiguration object".into()));
        }
        config = Some((config_rel, value));
    }
    let config_string = |key: &str| -> Result<Option<String>, CheckError> {
        let Some((rel, value)) = &config else {
            return Ok(None);
        };
        match value.get(key) {
            None | Some(YamlValue::Null) => Ok(None),
            Some(YamlValue::String(s)) if s.is_empty() => Ok(None),
            Some(YamlValue::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(files.invalid(rel, format!("{key}: expected a string"))),
        }
    };

    let runtime_endpoint = match endpoint_flags.into_iter().next() {
        Some(endpoint) => Some(endpoint),
        None => config_string("containerRuntimeEndpoint")?,
    }
    .filter(|endpoint| !endpoint.contains("docker"));

    for (rel, value) in driver_flags.iter().skip(1) {
        if value != &driver_flags[0].1 {
            notes.push(format!(
                "kubelet --cgroup-driver is {} in {} but {value} in {}; using the former",
                driver_flags[0].1,
                host_path(&driver_flags[0].0),
                host_path(rel)
            ));
        }
    }

    let (detected, configured_in) = if let Some((rel, value)) = driver_flags.first() {
        let driver = driver_or_error(files, rel, "--cgroup-driver", value)?;
        if let (Some((config_rel, _)), Some(config_value)) =
            (&config, config_string("cgroupDriver")?)
        {
            if CgroupDriver::parse(&config_value) != Some(driver) {
                notes.push(format!(
                    "kubelet's --cgroup-driver={driver} in {} overrides cgroupDriver: {config_value} in {}",
                    host_path(rel),
                    host_path(config_rel)
                ));
            }
        }
        (
            Some(Detected {
                driver,
                source: Source {
                    file: Some(host_path(rel)),
                    how: format!("--cgroup-driver={driver} flag"),
                },
            }),
            Some((host_path(rel), true)),
        )
    } else if let Some((rel, _)) = &config {
        let (driver, how) = match config_string("cgroupDriver")? {
            Some(value) => {
                let driver = driver_or_error(files, rel, "cgroupDriver", &value)?;
                (driver, format!("cgroupDriver: {driver}"))
            }
            None => (
                CgroupDriver::Cgroupfs,
                "KubeletConfiguration default (no cgroupDriver)".to_string(),
            ),
        };
        (
            Some(Detected {
                driver,
                source: Source {
                    file: Some(host_path(rel)),
                    how,
                },
            }),
            Some((host_path(rel), false)),
        )
    } else if installed {
        (
            Some(Detected {
                driver: CgroupDriver::Cgroupfs,
                source: Source {
                    file: None,
                    how: "kubelet's built-in default (no --cgroup-driver, no config file)".into(),
                },
            }),
            first_existing.map(|rel| (host_path(&rel), true)),
        )
    } else {
        (None, None)
    };
    Ok(KubeletSide {
        detected,
        configured_in,
        runtime_endpoint,
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Tree {
            match tempfile::tempdir() {
                Ok(dir) => Tree(dir),
                Err(e) => panic!("tempdir: {e}"),
            }
        }

        fn write(&self, rel: &str, text: &str) -> &Tree {
            let path = self.0.path().join(rel);
            if let Some(parent) = path.parent() {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    panic!("mkdir {}: {e}", parent.display());
                }
            }
            if let Err(e) = std::fs::write(&path, text) {
                panic!("write {}: {e}", path.display());
            }
            self
        }

        fn check(&self, info: Option<&str>, v2: bool) -> DriverReport {
            match check(self.0.path(), info, v2) {
                Ok(report) => report,
                Err(e) => panic!("check failed: {e}"),
            }
        }

        fn error(&self) -> String {
            match check(self.0.path(), None, false) {
                Ok(report) => panic!("expected an error, got {report:?}"),
                Err(e) => e.to_string(),
            }
        }
    }

    fn driver(side: &Option<Detected>) -> Option<CgroupDriver> {
        side.as_ref().map(|d| d.driver)
    }

    fn source(side: &Option<Detected>) -> String {
        side.as_ref()
            .map(|d| d.source.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn mismatch_daemon_json_vs_kubelet_flag() {
        let tree = Tree::new();
        tree.write(
            "etc/docker/daemon.json",
            r#"{"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "json-file"}"#,
        )
        .write(
            "etc/kubernetes/kubelet",
            "# kubelet options\nKUBELET_ARGS=\"--hostname-override=node1 \\\n  --cgroup-driver=cgroupfs --fail-swap-on=false\"\n",
        );
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
        assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
        assert_eq!(
            source(&report.docker),
            "exec-opts native.cgroupdriver=systemd in /etc/docker/daemon.json"
        );
        assert_eq!(
            source(&report.kubelet),
            "--cgroup-driver=cgroupfs flag in /etc/kubernetes/kubelet"
        );
        assert_eq!(
            report.fix.as_deref(),
            Some(
                "set kubelet --cgroup-driver=systemd (in /etc/kubernetes/kubelet) or docker \
                 exec-opts native.cgroupdriver=cgroupfs (in /etc/docker/daemon.json), then \
                 restart both"
            )
        );
        assert!(
            report.summary.contains(
                r#"kubelet cgroup driver: \"cgroupfs\" is different from docker cgroup driver: \"systemd\""#
            ),
            "{}",
            report.summary
        );
        let text = report.render();
        assert!(text.contains("verdict: MISMATCH"), "{text}");
        assert!(text.contains("fix:     set kubelet"), "{text}");
    }

    #[test]
    fn match_via_config_yaml() {
        let tree = Tree::new();
        tree.write(
            "var/lib/kubelet/config.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
        )
        .write("etc/docker/daemon.json", r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#);
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Match, "{report:?}");
        assert_eq!(
            source(&report.kubelet),
            "cgroupDriver: systemd in /var/lib/kubelet/config.yaml"
        );
        assert_eq!(report.fix, None);
        assert_eq!(
            report.summary,
            "kubelet and docker both use the systemd cgroup driver"
        );
    }

    #[test]
    fn config_without_field_defaults_to_cgroupfs_and_flag_wins() {
        let tree = Tree::new();
        tree.write(
            "var/lib/kubelet/config.yaml",
            "kind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\n",
        )
        .write("etc/docker/daemon.json", "{}");
        let report = tree.check(None, true);
        assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
        assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert_eq!(
            report.fix.as_deref(),
            Some(
                "set kubelet cgroupDriver: systemd (in /var/lib/kubelet/config.yaml) or docker \
                 exec-opts native.cgroupdriver=cgroupfs (in /etc/docker/daemon.json), then \
                 restart both"
            )
        );

        tree.write(
            "var/lib/kubelet/kubeadm-flags.env",
            "KUBELET_KUBEADM_ARGS=\"--cgroup-driver=systemd --network-plugin=cni\"\n",
        );
        let report = tree.check(None, true);
        assert_eq!(report.verdict, Verdict::Match);
        assert_eq!(
            source(&report.kubelet),
            "--cgroup-driver=systemd flag in /var/lib/kubelet/kubeadm-flags.env"
        );
    }

    #[test]
    fn docker_default_depends_on_cgroup_version() {
        let tree = Tree::new();
        tree.write(
            "usr/lib/systemd/system/docker.service",
            "[Service]\nExecStart=/usr/bin/dockerd\n",
        )
        .write(
            "etc/default/kubelet",
            "KUBELET_EXTRA_ARGS=--cgroup-driver systemd\n",
        );
        let v1 = tree.check(None, false);
        assert_eq!(driver(&v1.docker), Some(CgroupDriver::Cgroupfs));
        assert_eq!(v1.verdict, Verdict::Mismatch);
        assert_eq!(
            source(&v1.docker),
            "docker's default on cgroup v1 (no native.cgroupdriver set)"
        );
        let v2 = tree.check(None, true);
        assert_eq!(driver(&v2.docker), Some(CgroupDriver::Systemd));
        assert_eq!(v2.verdict, Verdict::Match);
        assert_eq!(driver(&v2.kubelet), Some(CgroupDriver::Systemd));
    }

    #[test]
    fn kubelet_default_when_installed_without_settings() {
        let tree = Tree::new();
        tree.write("usr/bin/kubelet", "").write(
            "etc/docker/daemon.json",
            r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#,
        );
        let report = tree.check(None, false);
        assert_eq!(driver(&report.kubelet), Some(CgroupDriver::Cgroupfs));
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert!(
            report
                .fix
                .as_deref()
                .unwrap_or_default()
                .starts_with("set kubelet --cgroup-driver=systemd or docker"),
            "{:?}",
            report.fix
        );
    }

    #[test]
    fn dropin_exec_start_and_sysconfig() {
        let tree = Tree::new();
        tree.write(
            "etc/systemd/system/docker.service.d/10-base.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --exec-opt native.cgroupdriver=cgroupfs\n",
        )
        .write(
            "etc/systemd/system/docker.service.d/20-override.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// \\\n  --exec-opt=native.cgroupdriver=systemd\n",
        )
        .write("etc/sysconfig/docker", "OPTIONS='--selinux-enabled --exec-opt native.cgroupdriver=cgroupfs'\n")
        .write("etc/sysconfig/kubelet", "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n");
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Match, "{report:?}");
        assert_eq!(
            source(&report.docker),
            "--exec-opt native.cgroupdriver=systemd on ExecStart in \
             /etc/systemd/system/docker.service.d/20-override.conf"
        );

        // Without the drop-ins the sysconfig OPTIONS decide, and the fix names the flag file.
        let tree = Tree::new();
        tree.write(
            "etc/sysconfig/docker",
            "# docker\nOPTIONS='--selinux-enabled --exec-opt native.cgroupdriver=cgroupfs'\n",
        )
        .write(
            "etc/sysconfig/kubelet",
            "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
        );
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert_eq!(
            report.fix.as_deref(),
            Some(
                "set kubelet --cgroup-driver=cgroupfs (in /etc/sysconfig/kubelet) or docker \
                 --exec-opt native.cgroupdriver=systemd (in /etc/sysconfig/docker), then restart both"
            )
        );
    }

    #[test]
    fn config_indirection() {
        let tree = Tree::new();
        tree.write(
            "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "[Service]\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/etc/kubernetes/kubelet-config.yaml\"\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_CONFIG_ARGS\n",
        )
        .write("etc/kubernetes/kubelet-config.yaml", "kind: KubeletConfiguration\ncgroupDriver: systemd\n")
        // not the one kubelet reads
        .write("var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n")
        .write("etc/docker/daemon.json", r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#);
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Match, "{report:?}");
        assert_eq!(
            source(&report.kubelet),
            "cgroupDriver: systemd in /etc/kubernetes/kubelet-config.yaml"
        );

        // --config given with a separate value and `..` stays below the root
        let tree = Tree::new();
        tree.write(
            "etc/kubernetes/kubelet",
            "KUBELET_ARGS=\"--config ../../../cfg/k.yaml\"\n",
        )
        .write("cfg/k.yaml", "cgroupDriver: cgroupfs\n")
        .write("etc/docker/daemon.json", "{}");
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::Match, "{report:?}");
        assert_eq!(
            source(&report.kubelet),
            "cgroupDriver: cgroupfs in /cfg/k.yaml"
        );
    }

    #[test]
    fn docker_info_wins_and_notes_stale_config() {
        let tree = Tree::new();
        tree.write(
            "etc/docker/daemon.json",
            r#"{"exec-opts":["native.cgroupdriver=systemd"]}"#,
        )
        .write(
            "etc/kubernetes/kubelet",
            "KUBELET_ARGS=--cgroup-driver=systemd\n",
        );
        let report = tree.check(Some("cgroupfs\n"), false);
        assert_eq!(report.verdict, Verdict::Mismatch);
        assert_eq!(source(&report.docker), "docker info");
        assert_eq!(
            report.notes,
            ["docker is running with cgroupfs but /etc/docker/daemon.json sets systemd: restart docker to apply it"]
        );

        // Running cgroupfs like kubelet, but a restart would switch docker to systemd.
        tree.write(
            "etc/kubernetes/kubelet",
            "KUBELET_ARGS=--cgroup-driver=cgroupfs\n",
        );
        let report = tree.check(Some("cgroupfs"), false);
        assert_eq!(report.verdict, Verdict::Match);
        assert_eq!(
            report.notes.last().map(String::as_str),
            Some("after a restart docker would use systemd, which differs from kubelet's cgroupfs")
        );
    }

    #[test]
    fn absent_sides_are_not_applicable() {
        let tree = Tree::new();
        let report = tree.check(None, true);
        assert_eq!(report.verdict, Verdict::NotApplicable);
        assert_eq!(report.summary, "neither kubelet nor docker is installed");
        assert!(report.kubelet.is_none() && report.docker.is_none());

        tree.write(
            "etc/default/kubelet",
            "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
        );
        let report = tree.check(None, true);
        assert_eq!(report.verdict, Verdict::NotApplicable);
        assert_eq!(report.summary, "docker is not installed");

        let tree = Tree::new();
        let report = tree.check(Some("systemd"), false);
        assert_eq!(report.summary, "kubelet is not installed");
        assert_eq!(driver(&report.docker), Some(CgroupDriver::Systemd));
    }

    #[test]
    fn kubelet_on_containerd_is_not_applicable() {
        let tree = Tree::new();
        tree.write(
            "var/lib/kubelet/kubeadm-flags.env",
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock\"\n",
        )
        .write("var/lib/kubelet/config.yaml", "cgroupDriver: systemd\n")
        .write("etc/docker/daemon.json", "{}");
        let report = tree.check(None, false);
        assert_eq!(report.verdict, Verdict::NotApplicable);
        assert!(
            report.summary.contains("containerd.sock"),
            "{}",
            report.summary
        );
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let tree = Tree::new();
        tree.write(
            "etc/docker/daemon.json",
            "{\"exec-opts\": [\"native.cgroupdriver=systemd\",}",
        );
        let err = tree.error();
        let path = tree.0.path().join("etc/docker/daemon.json");
        assert!(
            err.starts_with(&format!("{}: invalid JSON: ", path.display())),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");

        tree.write(
            "etc/docker/daemon.json",
            r#"{"exec-opts": "native.cgroupdriver=systemd"}"#,
        );
        assert_eq!(
            tree.error(),
            format!("{}: exec-opts: expected a list of strings", path.display())
        );

        tree.write(
            "etc/docker/daemon.json",
            r#"{"exec-opts": ["native.cgroupdriver=system"]}"#,
        );
        assert_eq!(
            tree.error(),
            format!(
                "{}: exec-opts native.cgroupdriver: unknown cgroup driver \"system\" (expected systemd or cgroupfs)",
                path.display()
            )
        );

        let tree = Tree::new();
        tree.write("var/lib/kubelet/config.yaml", "cgroupDriver: [systemd\n");
        let err = tree.error();
        let path = tree.0.path().join("var/lib/kubelet/config.yaml");
        assert!(
            err.starts_with(&format!("{}: invalid YAML: ", path.display())),
            "{err}"
        );

        tree.write("var/lib/kubelet/config.yaml", "cgroupDriver: 3\n");
        assert_eq!(
            tree.error(),
            format!("{}: cgroupDriver: expected a string", path.display())
        );

        let err = match check(Tree::new().0.path(), Some("none"), false) {
            Ok(r) => panic!("{r:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err,
            "docker info: CgroupDriver: unknown cgroup driver \"none\" (expected systemd or cgroupfs)"
        );
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            words(r#"KUBELET_ARGS="--a=b  --c 'd'" ExecStart=/usr/bin/x"#),
            ["--a=b", "--c", "d", "/usr/bin/x"]
        );
        assert_eq!(
            words("Environment=\"KUBELET_CONFIG_ARGS=--config=/x.yaml\""),
            ["--config=/x.yaml"]
        );
        assert_eq!(below_root("/a/../../b/./c"), "b/c");
        assert_eq!(
            last_flag_in(
                "# --cgroup-driver=systemd\nX=--cgroup-driver=cgroupfs\n",
                "cgroup-driver"
            )
            .as_deref(),
            Some("cgroupfs")
        );
    }
}

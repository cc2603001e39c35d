//! Docker's side: the running daemon's driver (`docker info`), else the
//! flag on the drop-ins' `ExecStart=`, else `/etc/sysconfig/docker`, else
//! `daemon.json`'s `exec-opts`, else docker's default for the cgroup
//! version.

use super::files::{
    cgroupdriver_opt, driver_or_error, flag_values, host_path, logical_lines, words, Files,
};
use super::{CgroupDriver, CheckError, Detected, Source};

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

pub(super) struct DockerSide {
    pub(super) detected: Option<Detected>,
    /// The driver docker's files set when the running daemon (docker info)
    /// uses another one: what a restart of docker would switch to.
    pub(super) pending: Option<CgroupDriver>,
    /// Where docker's setting lives or should go: (host path, is a flag).
    pub(super) configured_in: (String, bool),
}

impl DockerSide {
    pub(super) fn fix_for(&self, driver: CgroupDriver) -> String {
        let (file, flag) = &self.configured_in;
        if *flag {
            format!("docker --exec-opt native.cgroupdriver={driver} (in {file})")
        } else {
            format!("docker exec-opts native.cgroupdriver={driver} (in {file})")
        }
    }
}

/// One file's driver setting.
struct Setting {
    rel: String,
    driver: CgroupDriver,
    how: String,
    /// Given as a dockerd flag (not in daemon.json).
    flag: bool,
}

pub(super) fn docker_side(
    files: &Files<'_>,
    docker_info: Option<&str>,
    cgroup_v2: bool,
    notes: &mut Vec<String>,
) -> Result<DockerSide, CheckError> {
    let installed = DOCKER_MARKERS.iter().any(|m| files.exists(m))
        || files.exists(DOCKER_DROPINS)
        || files.exists(DOCKER_SYSCONFIG)
        || files.exists(DAEMON_JSON);
    // highest precedence first
    let configured: Vec<Setting> = [
        dropin_setting(files)?,
        sysconfig_setting(files)?,
        daemon_json_setting(files)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let in_json = configured.iter().any(|c| !c.flag);
    if in_json && configured.iter().any(|c| c.flag) {
        notes.push(format!(
            "docker's native.cgroupdriver is set both as a flag ({}) and in {}: dockerd refuses \
             to start when a directive is given in both places",
            host_path(&configured[0].rel),
            host_path(DAEMON_JSON)
        ));
    }
    let configured_in = configured
        .first()
        .map_or((host_path(DAEMON_JSON), false), |c| {
            (host_path(&c.rel), c.flag)
        });
    let info = docker_info.map(str::trim).filter(|s| !s.is_empty());
    let mut pending = None;
    let detected = if let Some(info) = info {
        let running = running_driver(info)?;
        if let Some(c) = configured.first().filter(|c| c.driver != running.driver) {
            pending = Some(c.driver);
            notes.push(format!(
                "docker is running with {} but {} sets {}: restart docker to apply it",
                running.driver,
                host_path(&c.rel),
                c.driver
            ));
        }
        Some(running)
    } else if let Some(c) = configured.into_iter().next() {
        Some(Detected {
            driver: c.driver,
            source: Source {
                file: Some(host_path(&c.rel)),
                how: c.how,
            },
        })
    } else {
        installed.then(|| default_driver(cgroup_v2))
    };
    Ok(DockerSide {
        detected,
        pending,
        configured_in,
    })
}

/// What `docker info` says the running daemon uses.
fn running_driver(info: &str) -> Result<Detected, CheckError> {
    let driver = CgroupDriver::parse(info).ok_or_else(|| CheckError::Invalid {
        origin: "docker info".into(),
        problem: format!(
            "CgroupDriver: unknown cgroup driver {info:?} (expected systemd or cgroupfs)"
        ),
    })?;
    Ok(Detected {
        driver,
        source: Source {
            file: None,
            how: "docker info".into(),
        },
    })
}

/// dockerd's choice when nothing sets one.
fn default_driver(cgroup_v2: bool) -> Detected {
    let (driver, version) = if cgroup_v2 {
        (CgroupDriver::Systemd, "v2")
    } else {
        (CgroupDriver::Cgroupfs, "v1")
    };
    Detected {
        driver,
        source: Source {
            file: None,
            how: format!("docker's default on cgroup {version} (no native.cgroupdriver set)"),
        },
    }
}

/// `--exec-opt native.cgroupdriver=` on the last `ExecStart=` of the
/// drop-ins (an empty `ExecStart=` clears the list; the last one runs).
fn dropin_setting(files: &Files<'_>) -> Result<Option<Setting>, CheckError> {
    let mut exec_start: Option<(String, String)> = None;
    for rel in &files.dropins(DOCKER_DROPINS)? {
        let Some(text) = files.read(rel)? else {
            continue;
        };
        for line in logical_lines(&text) {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                exec_start = (!command.trim().is_empty()).then(|| (rel.clone(), command.into()));
            }
        }
    }
    let Some((rel, command)) = exec_start else {
        return Ok(None);
    };
    let opts = flag_values(&words(&command), "exec-opt");
    let Some(value) = cgroupdriver_opt(opts.iter().map(String::as_str)) else {
        return Ok(None);
    };
    let driver = driver_or_error(
        files,
        &rel,
        "ExecStart --exec-opt native.cgroupdriver",
        &value,
    )?;
    Ok(Some(Setting {
        rel,
        driver,
        how: format!("--exec-opt native.cgroupdriver={driver} on ExecStart"),
        flag: true,
    }))
}

/// The flag in `/etc/sysconfig/docker` (`OPTIONS=...`).
fn sysconfig_setting(files: &Files<'_>) -> Result<Option<Setting>, CheckError> {
    let Some(text) = files.read(DOCKER_SYSCONFIG)? else {
        return Ok(None);
    };
    let opts: Vec<String> = logical_lines(&text)
        .iter()
        .flat_map(|line| flag_values(&words(line), "exec-opt"))
        .collect();
    let Some(value) = cgroupdriver_opt(opts.iter().map(String::as_str)) else {
        return Ok(None);
    };
    let driver = driver_or_error(
        files,
        DOCKER_SYSCONFIG,
        "--exec-opt native.cgroupdriver",
        &value,
    )?;
    Ok(Some(Setting {
        rel: DOCKER_SYSCONFIG.into(),
        driver,
        how: format!("--exec-opt native.cgroupdriver={driver} flag"),
        flag: true,
    }))
}

/// `exec-opts` in `/etc/docker/daemon.json`.
fn daemon_json_setting(files: &Files<'_>) -> Result<Option<Setting>, CheckError> {
    let Some(text) = files.read(DAEMON_JSON)? else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| files.invalid(DAEMON_JSON, format!("invalid JSON: {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| files.invalid(DAEMON_JSON, "expected a JSON object".into()))?;
    let Some(opts) = object.get("exec-opts") else {
        return Ok(None);
    };
    let not_strings = || files.invalid(DAEMON_JSON, "exec-opts: expected a list of strings".into());
    let opts: Vec<&str> = opts
        .as_array()
        .ok_or_else(not_strings)?
        .iter()
        .map(|o| o.as_str().ok_or_else(not_strings))
        .collect::<Result<_, _>>()?;
    let Some(value) = cgroupdriver_opt(opts) else {
        return Ok(None);
    };
    let driver = driver_or_error(files, DAEMON_JSON, "exec-opts native.cgroupdriver", &value)?;
    Ok(Some(Setting {
        rel: DAEMON_JSON.into(),
        driver,
        how: format!("exec-opts native.cgroupdriver={driver}"),
        flag: false,
    }))
}

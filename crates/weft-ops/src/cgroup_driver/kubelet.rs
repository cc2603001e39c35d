//! Kubelet's side: `--cgroup-driver` in its flag files and drop-ins, else
//! `cgroupDriver` in its KubeletConfiguration, else kubelet's default; and
//! whether kubelet talks to docker at all.

use serde_yaml::Value as YamlValue;

use super::files::{below_root, driver_or_error, host_path, last_flag_in, one_line, Files};
use super::{CgroupDriver, CheckError, Detected, Source};

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

pub(super) struct KubeletSide {
    pub(super) detected: Option<Detected>,
    /// Where the setting lives or should go: (host path, as a flag).
    pub(super) configured_in: Option<(String, bool)>,
    /// A CRI endpoint that is not docker's, when kubelet is given one.
    pub(super) runtime_endpoint: Option<String>,
}

impl KubeletSide {
    pub(super) fn fix_for(&self, driver: CgroupDriver) -> String {
        match &self.configured_in {
            Some((file, true)) => format!("kubelet --cgroup-driver={driver} (in {file})"),
            Some((file, false)) => format!("kubelet cgroupDriver: {driver} (in {file})"),
            None => format!("kubelet --cgroup-driver={driver}"),
        }
    }
}

/// The flags kubelet's files give, each `(file, value)`, highest
/// precedence first.
#[derive(Default)]
struct Flags {
    installed: bool,
    driver: Vec<(String, String)>,
    config: Vec<(String, String)>,
    endpoint: Vec<String>,
    /// The first flag file that exists (where a flag would go).
    first_existing: Option<String>,
}

fn read_flags(files: &Files<'_>) -> Result<Flags, CheckError> {
    let mut f = Flags {
        installed: KUBELET_MARKERS.iter().any(|m| files.exists(m)),
        ..Flags::default()
    };
    let mut flag_files: Vec<String> = KUBELET_FLAG_FILES.iter().map(|s| s.to_string()).collect();
    for dir in KUBELET_DROPINS {
        f.installed |= files.exists(dir);
        flag_files.extend(files.dropins(dir)?);
    }
    for rel in &flag_files {
        let Some(text) = files.read(rel)? else {
            continue;
        };
        f.installed = true;
        if f.first_existing.is_none() && KUBELET_FLAG_FILES.contains(&rel.as_str()) {
            f.first_existing = Some(rel.clone());
        }
        if let Some(value) = last_flag_in(&text, "cgroup-driver") {
            f.driver.push((rel.clone(), value));
        }
        if let Some(value) = last_flag_in(&text, "config") {
            f.config.push((rel.clone(), value));
        }
        if let Some(value) = last_flag_in(&text, "container-runtime-endpoint") {
            f.endpoint.push(value);
        }
    }
    Ok(f)
}

/// The KubeletConfiguration: the file `--config` names, else kubeadm's.
struct Config {
    rel: String,
    value: YamlValue,
}

fn read_config(
    files: &Files<'_>,
    flags: &Flags,
    notes: &mut Vec<String>,
) -> Result<Option<Config>, CheckError> {
    let rel = match flags.config.first() {
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
    let Some(text) = files.read(&rel)? else {
        return Ok(None);
    };
    let value: YamlValue = serde_yaml::from_str(&text)
        .map_err(|e| files.invalid(&rel, format!("invalid YAML: {}", one_line(&e.to_string()))))?;
    if !(value.is_mapping() || value.is_null()) {
        return Err(files.invalid(&rel, "expected a KubeletConfiguration object".into()));
    }
    Ok(Some(Config { rel, value }))
}

impl Config {
    /// A string field; empty counts as unset.
    fn string(&self, files: &Files<'_>, key: &str) -> Result<Option<String>, CheckError> {
        match self.value.get(key) {
            None | Some(YamlValue::Null) => Ok(None),
            Some(YamlValue::String(s)) if s.is_empty() => Ok(None),
            Some(YamlValue::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(files.invalid(&self.rel, format!("{key}: expected a string"))),
        }
    }
}

fn config_string(
    files: &Files<'_>,
    config: &Option<Config>,
    key: &str,
) -> Result<Option<String>, CheckError> {
    config.as_ref().map_or(Ok(None), |c| c.string(files, key))
}

pub(super) fn kubelet_side(
    files: &Files<'_>,
    notes: &mut Vec<String>,
) -> Result<KubeletSide, CheckError> {
    let flags = read_flags(files)?;
    let config = read_config(files, &flags, notes)?;
    let installed = flags.installed || config.is_some();
    let runtime_endpoint = match flags.endpoint.first() {
        Some(endpoint) => Some(endpoint.clone()),
        None => config_string(files, &config, "containerRuntimeEndpoint")?,
    }
    .filter(|endpoint| !endpoint.contains("docker"));
    if let Some((first_rel, first)) = flags.driver.first() {
        for (rel, value) in flags.driver.iter().skip(1).filter(|(_, v)| v != first) {
            notes.push(format!(
                "kubelet --cgroup-driver is {first} in {} but {value} in {}; using the former",
                host_path(first_rel),
                host_path(rel)
            ));
        }
    }
    let (detected, configured_in) = if let Some((rel, value)) = flags.driver.first() {
        let driver = driver_or_error(files, rel, "--cgroup-driver", value)?;
        if let (Some(c), Some(config_value)) =
            (&config, config_string(files, &config, "cgroupDriver")?)
        {
            if CgroupDriver::parse(&config_value) != Some(driver) {
                notes.push(format!(
                    "kubelet's --cgroup-driver={driver} in {} overrides cgroupDriver: {config_value} in {}",
                    host_path(rel),
                    host_path(&c.rel)
                ));
            }
        }
        let how = format!("--cgroup-driver={driver} flag");
        (
            detected(driver, Some(rel), how),
            Some((host_path(rel), true)),
        )
    } else if let Some(c) = &config {
        let (driver, how) = match c.string(files, "cgroupDriver")? {
            Some(value) => {
                let driver = driver_or_error(files, &c.rel, "cgroupDriver", &value)?;
                (driver, format!("cgroupDriver: {driver}"))
            }
            None => (
                CgroupDriver::Cgroupfs,
                "KubeletConfiguration default (no cgroupDriver)".to_string(),
            ),
        };
        (
            detected(driver, Some(&c.rel), how),
            Some((host_path(&c.rel), false)),
        )
    } else if installed {
        let how = "kubelet's built-in default (no --cgroup-driver, no config file)";
        (
            detected(CgroupDriver::Cgroupfs, None, how.into()),
            flags.first_existing.map(|rel| (host_path(&rel), true)),
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

fn detected(driver: CgroupDriver, rel: Option<&str>, how: String) -> Option<Detected> {
    Some(Detected {
        driver,
        source: Source {
            file: rel.map(host_path),
            how,
        },
    })
}

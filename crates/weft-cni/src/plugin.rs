//! The plugin's commands: ADD, DEL, CHECK, VERSION.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use weft_core::subnet_file::SubnetEnv;

use crate::conf::{delegate_conf, NetConf};
use crate::error::{code, CniError};
use crate::SUPPORTED_VERSIONS;

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub command: Option<String>,
    pub container_id: Option<String>,
    /// CNI_PATH: where delegate plugins are looked up.
    pub path: Option<String>,
}

impl CniEnv {
    pub fn from_process() -> CniEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        CniEnv {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            path: var("CNI_PATH"),
        }
    }
}

/// Runs one invocation; returns what goes to stdout.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    match env.command.as_deref() {
        Some("VERSION") => Ok(json!({
            "cniVersion": "1.0.0",
            "supportedVersions": SUPPORTED_VERSIONS,
        })
        .to_string()
        .into_bytes()),
        Some("ADD") => add(env, stdin),
        Some("DEL") => del(env, stdin),
        Some("CHECK") => check(env, stdin),
        Some(other) => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"),
        )),
        None => Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set")),
    }
}

/// The container id, which names the saved file: the spec's characters only.
fn container_id(env: &CniEnv) -> Result<&str, CniError> {
    let id = env
        .container_id
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_CONTAINERID is not set"))?;
    let ok = !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_CONTAINERID {id:?} has characters other than letters, digits, _ . -"),
        ));
    }
    Ok(id)
}

fn plugin_err(msg: String) -> CniError {
    CniError::new(code::PLUGIN, msg)
}

fn load_subnet_env(path: &Path) -> Result<SubnetEnv, CniError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        plugin_err(format!(
            "failed to load flannel subnet file {}: {e}",
            path.display()
        ))
    })?;
    SubnetEnv::parse(&text).map_err(|e| plugin_err(format!("{}: {e}", path.display())))
}

fn saved_path(n: &NetConf, id: &str) -> PathBuf {
    n.data_dir.join(id)
}

/// Saves the delegate conf: directory 0700, file 0600.
fn save(n: &NetConf, id: &str, conf: &Value) -> Result<PathBuf, CniError> {
    let io = |what: &str, e: std::io::Error| CniError::new(code::IO, format!("{what}: {e}"));
    if !n.data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&n.data_dir)
            .map_err(|e| io(&format!("creating {}", n.data_dir.display()), e))?;
    }
    let path = saved_path(n, id);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io(&format!("saving {}", path.display()), e))?;
    f.write_all(conf.to_string().as_bytes())
        .map_err(|e| io(&format!("saving {}", path.display()), e))?;
    Ok(path)
}

/// The saved delegate conf, or `None` when there is none.
fn load_saved(n: &NetConf, id: &str) -> Result<Option<Value>, CniError> {
    let path = saved_path(n, id);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| plugin_err(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::new(
            code::IO,
            format!("reading {}: {e}", path.display()),
        )),
    }
}

fn add(env: &CniEnv, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let id = container_id(env)?;
    let n = NetConf::parse(stdin)?;
    let subnet_env = load_subnet_env(&n.subnet_file)?;
    let conf = delegate_conf(&n, &subnet_env)?;
    let saved = save(&n, id, &conf)?;
    delegate(env, "ADD", &conf).inspect_err(|_| {
        let _ = std::fs::remove_file(&saved);
    })
}

fn del(env: &CniEnv, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let id = container_id(env)?;
    let n = NetConf::parse(stdin)?;
    let Some(mut conf) = load_saved(&n, id)? else {
        return Ok(Vec::new()); // never added, or already deleted
    };
    if let Some(prev) = &n.prev_result {
        conf["prevResult"] = prev.clone();
    }
    delegate(env, "DEL", &conf)?;
    let _ = std::fs::remove_file(saved_path(&n, id));
    Ok(Vec::new())
}

/// CHECK: the node subnet must still be the one the pod got its address
/// from, and the delegate must find the pod as it set it up.
fn check(env: &CniEnv, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let id = container_id(env)?;
    let n = NetConf::parse(stdin)?;
    let mut conf = load_saved(&n, id)?.ok_or_else(|| {
        CniError::new(
            3,
            format!("no network set up by flannel for container {id}"),
        )
    })?;
    let saved_subnet = conf["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Ok(current) = load_subnet_env(&n.subnet_file) {
        let now = current
            .subnet
            .map(|s| s.trunc().to_string())
            .unwrap_or_default();
        if now != saved_subnet {
            return Err(plugin_err(format!(
                "node subnet changed from {saved_subnet} to {now} since the pod was added; recreate the pod"
            )));
        }
    }
    let prev = n.prev_result.clone().ok_or_else(|| {
        CniError::new(code::INVALID_CONFIG, "field prevResult: required for CHECK")
    })?;
    conf["prevResult"] = with_route_gateways(prev);
    delegate(env, "CHECK", &conf)
}

/// The bridge plugin installs a result route without `gw` through the
/// IP's gateway, but its CHECK then looks for a route without one. Give
/// such routes the gateway they were installed with, so CHECK compares
/// against what ADD really did.
pub fn with_route_gateways(mut result: Value) -> Value {
    let gateway = result["ips"][0]["gateway"].clone();
    if gateway.is_string() {
        if let Some(routes) = result.get_mut("routes").and_then(Value::as_array_mut) {
            for r in routes.iter_mut().filter(|r| r.get("gw").is_none()) {
                r["gw"] = gateway.clone();
            }
        }
    }
    result
}

/// Finds `name` in CNI_PATH.
fn find_plugin(env: &CniEnv, name: &str) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("field delegate.type: {name:?} is not a plugin name"),
        ));
    }
    let dirs = env.path.as_deref().unwrap_or("");
    dirs.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| plugin_err(format!("failed to find plugin {name:?} in path [{dirs}]")))
}

/// Executes the delegate plugin with `conf` on stdin and the caller's
/// environment (CNI_COMMAND set to `command`); its output is returned
/// verbatim, its error result passed through.
fn delegate(env: &CniEnv, command: &str, conf: &Value) -> Result<Vec<u8>, CniError> {
    let name = conf["type"].as_str().unwrap_or_default().to_string();
    let path = find_plugin(env, &name)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| plugin_err(format!("running {}: {e}", path.display())))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| plugin_err(format!("writing to {name}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| plugin_err(format!("waiting for {name}: {e}")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    match parsed.as_ref().and_then(|v| v.get("code")?.as_u64()) {
        Some(c) => Err(CniError {
            code: c as u32,
            msg: parsed
                .as_ref()
                .and_then(|v| v.get("msg")?.as_str().map(String::from))
                .unwrap_or_default(),
            details: String::new(),
            raw: Some(out.stdout),
        }),
        None => Err(plugin_err(format!(
            "delegate {name} {command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

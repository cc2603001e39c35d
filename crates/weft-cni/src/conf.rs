//! Network configuration of the `flannel` plugin and the delegate
//! configuration it derives from it and the subnet file.

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use weft_core::subnet_file::SubnetEnv;

use crate::error::{code, CniError};
use crate::SUPPORTED_VERSIONS;

pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

/// The plugin's network configuration (stdin).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub subnet_file: PathBuf,
    pub data_dir: PathBuf,
    pub delegate: Map<String, Value>,
    pub ipam: Map<String, Value>,
    pub runtime_config: Option<Value>,
    pub prev_result: Option<Value>,
}

fn string_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CniError::new(
            code::DECODE,
            format!("error unmarshall network config: field {key} must be a string"),
        )),
    }
}

fn object_field(m: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, CniError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(CniError::new(
            code::DECODE,
            format!("error unmarshall network config: field {key} must be an object"),
        )),
    }
}

/// The cniVersion of a config, when it can be read (for error output).
pub fn version_of(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .unwrap_or_else(|| "1.0.0".into())
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("error unmarshall network config: {e}"),
            )
        })?;
        let m = v.as_object().ok_or_else(|| {
            CniError::new(
                code::DECODE,
                "error unmarshall network config: not a JSON object",
            )
        })?;
        let cni_version = string_field(m, "cniVersion")?.unwrap_or_else(|| "0.1.0".into());
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "incompatible CNI versions: config is {cni_version:?}, plugin supports {SUPPORTED_VERSIONS:?}"
                ),
            ));
        }
        let delegate = object_field(m, "delegate")?;
        for key in ["name", "ipam"] {
            if delegate.contains_key(key) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("field delegate.{key}: must not be set (flannel sets it)"),
                ));
            }
        }
        Ok(NetConf {
            name: string_field(m, "name")?.unwrap_or_default(),
            subnet_file: string_field(m, "subnetFile")?
                .unwrap_or_else(|| DEFAULT_SUBNET_FILE.into())
                .into(),
            data_dir: string_field(m, "dataDir")?
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
                .into(),
            delegate,
            ipam: object_field(m, "ipam")?,
            runtime_config: m.get("runtimeConfig").cloned(),
            prev_result: m.get("prevResult").cloned(),
            cni_version,
        })
    }
}

/// Checks that the subnet file has all four values the plugin needs.
pub fn require_complete(env: &SubnetEnv, path: &str) -> Result<(), CniError> {
    let mut missing = Vec::new();
    if env.network.is_none() {
        missing.push("FLANNEL_NETWORK");
    }
    if env.subnet.is_none() {
        missing.push("FLANNEL_SUBNET");
    }
    if env.mtu.is_none() {
        missing.push("FLANNEL_MTU");
    }
    if env.ipmasq.is_none() {
        missing.push("FLANNEL_IPMASQ");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::PLUGIN,
            format!("{path} is missing {}", missing.join(", ")),
        ))
    }
}

/// The bridge plugin's config: the delegate object with flannel's defaults
/// (type bridge, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU, isGateway)
/// and host-local IPAM over the node subnet with a route to the network.
pub fn delegate_conf(n: &NetConf, env: &SubnetEnv) -> Result<Value, CniError> {
    require_complete(env, &n.subnet_file.display().to_string())?;
    let (Some(network), Some(subnet), Some(mtu), Some(ipmasq)) =
        (env.network, env.subnet, env.mtu, env.ipmasq)
    else {
        return Err(CniError::new(code::PLUGIN, "incomplete subnet file"));
    };
    let mut d = n.delegate.clone();
    d.insert("name".into(), Value::String(n.name.clone()));
    d.entry("type").or_insert_with(|| json!("bridge"));
    d.entry("ipMasq").or_insert_with(|| json!(!ipmasq));
    d.entry("mtu").or_insert_with(|| json!(mtu));
    if d.get("type") == Some(&json!("bridge")) {
        d.entry("isGateway").or_insert_with(|| json!(true));
    }
    d.insert("cniVersion".into(), Value::String(n.cni_version.clone()));
    let mut ipam = n.ipam.clone();
    ipam.entry("type").or_insert_with(|| json!("host-local"));
    ipam.insert(
        "ranges".into(),
        json!([[{ "subnet": subnet.trunc().to_string() }]]),
    );
    let mut routes = match ipam.remove("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "field ipam.routes: must be a list",
            ))
        }
    };
    routes.push(json!({ "dst": network.to_string() }));
    ipam.insert("routes".into(), Value::Array(routes));
    d.insert("ipam".into(), Value::Object(ipam));
    if let Some(rc) = &n.runtime_config {
        d.insert("runtimeConfig".into(), rc.clone());
    }
    Ok(Value::Object(d))
}

#[cfg(test)]
mod tests;

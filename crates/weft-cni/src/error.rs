//! CNI errors: JSON on stdout with the spec's codes, exit status 1.

use serde_json::{json, Value};

/// Error codes from the CNI specification.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    /// Plugin-specific failures (as flannel's plugin reports them).
    pub const PLUGIN: u32 = 999;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
    /// A delegate's own error output, passed through verbatim.
    pub raw: Option<Vec<u8>>,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
            raw: None,
        }
    }

    /// The JSON written to stdout.
    pub fn to_json(&self, cni_version: &str) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut v = json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v.to_string().into_bytes()
    }
}

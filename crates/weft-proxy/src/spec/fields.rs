//! Reading typed fields out of a JSON value with the field's path in every
//! error, and splitting YAML/JSON texts into objects.

use serde_json::{Map, Value};

use super::SpecError;

/// Reads fields of one object; errors name the object and the field path.
pub(crate) struct Fields {
    pub object: String,
}

impl Fields {
    pub fn err(&self, field: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The object at `path`, or an empty map when absent or null.
    pub fn map<'v>(
        &self,
        v: &'v Value,
        path: &str,
    ) -> Result<Option<&'v Map<String, Value>>, SpecError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(m)),
            other => Err(self.err(path, format!("expected an object, got {}", kind(other)))),
        }
    }

    /// An optional string field.
    pub fn str<'v>(&self, v: Option<&'v Value>, path: &str) -> Result<Option<&'v str>, SpecError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(path, format!("expected a string, got {}", kind(other)))),
        }
    }

    /// An optional integer field in `lo..=hi`.
    pub fn int(
        &self,
        v: Option<&Value>,
        path: &str,
        lo: i64,
        hi: i64,
    ) -> Result<Option<i64>, SpecError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (lo..=hi).contains(&i) => Ok(Some(i)),
                _ => Err(self.err(path, format!("{n} is out of range {lo}-{hi}"))),
            },
            Some(other) => Err(self.err(
                path,
                format!("expected an integer {lo}-{hi}, got {}", kind(other)),
            )),
        }
    }

    /// An optional list field.
    pub fn list<'v>(&self, v: Option<&'v Value>, path: &str) -> Result<&'v [Value], SpecError> {
        match v {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(self.err(path, format!("expected a list, got {}", kind(other)))),
        }
    }

    /// An optional boolean field.
    pub fn bool(&self, v: Option<&Value>, path: &str) -> Result<Option<bool>, SpecError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.err(path, format!("expected true or false, got {}", kind(other))))
            }
        }
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `metadata`, `metadata.name` ("" when absent) and `metadata.namespace`
/// (`default` when absent) of an object; their types are checked later.
pub(crate) fn metadata(v: &Value) -> (Option<&Value>, &str, &str) {
    let meta = v.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    (
        meta,
        field("name").unwrap_or(""),
        field("namespace").unwrap_or("default"),
    )
}

/// Checks an RFC 1123 label (namespaces, names, port names): lower-case
/// alphanumerics and '-', starting and ending alphanumeric, ≤ 63 chars.
pub(crate) fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"
        ))
    }
}

/// Splits a YAML or JSON text into objects: YAML documents, JSON arrays and
/// `kind: List` items are flattened; empty documents are skipped.
pub(crate) fn documents(text: &str, origin: &str) -> Result<Vec<Value>, SpecError> {
    let bad = |message: String| SpecError {
        object: origin.into(),
        field: "(document)".into(),
        message,
    };
    let mut values = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        values.push(v);
    } else {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| bad(format!("invalid YAML: {e}")))?;
            if !v.is_null() {
                values.push(v);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack: Vec<Value> = values.into_iter().rev().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.into_iter().rev()),
            Value::Object(mut m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = m.remove("items") {
                    stack.extend(items.into_iter().rev());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

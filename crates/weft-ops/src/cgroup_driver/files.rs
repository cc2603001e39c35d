//! Reading configuration below the root: files, drop-in directories,
//! systemd's logical lines, shell words and flags.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::{CgroupDriver, CheckError};

/// File access confined to the root.
pub(super) struct Files<'a> {
    pub(super) root: &'a Path,
}

impl Files<'_> {
    pub(super) fn full(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(super) fn exists(&self, rel: &str) -> bool {
        self.full(rel).exists()
    }

    /// The file's text, `None` when it does not exist.
    pub(super) fn read(&self, rel: &str) -> Result<Option<String>, CheckError> {
        let path = self.full(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckError::Read { path, source }),
        }
    }

    /// `*.conf` files of a drop-in directory, in name order (systemd's).
    pub(super) fn dropins(&self, dir: &str) -> Result<Vec<String>, CheckError> {
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

    pub(super) fn invalid(&self, rel: &str, problem: String) -> CheckError {
        CheckError::Invalid {
            origin: self.full(rel).display().to_string(),
            problem,
        }
    }
}

/// `/rel`: how the host names a file below the root.
pub(super) fn host_path(rel: &str) -> String {
    format!("/{rel}")
}

/// A path from a configuration file, made relative to the root; `..` never
/// climbs above it.
pub(super) fn below_root(path: &str) -> String {
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
pub(super) fn logical_lines(text: &str) -> Vec<String> {
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
pub(super) fn words(line: &str) -> Vec<String> {
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

pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every value of `--flag value` / `--flag=value` among `words`, in order.
pub(super) fn flag_values(words: &[String], flag: &str) -> Vec<String> {
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
pub(super) fn last_flag_in(text: &str, flag: &str) -> Option<String> {
    logical_lines(text)
        .iter()
        .flat_map(|line| flag_values(&words(line), flag))
        .last()
}

/// The value of docker's `native.cgroupdriver` among exec-opts (`key=value`
/// strings; docker compares the key case-insensitively). The last wins.
pub(super) fn cgroupdriver_opt<'a>(opts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    opts.into_iter()
        .filter_map(|opt| opt.split_once('='))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("native.cgroupdriver"))
        .map(|(_, value)| value.trim().to_string())
        .last()
}

pub(super) fn driver_or_error(
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

pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

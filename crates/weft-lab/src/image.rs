//! Container images without a registry: one uncompressed layer from files
//! on this machine, written as an image archive that both `ctr images
//! import` and `docker load` take (an OCI image layout with Docker's
//! `manifest.json` beside it, as `docker save` writes since Docker 25).
//! The layer is reproducible: entries sorted, owner root, time zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// What one path in the image is.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A copy of a file on this machine, with this mode.
    File(PathBuf, u32),
    /// These bytes, with this mode.
    Bytes(Vec<u8>, u32),
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
}

/// An image: its name (`registry/name:tag`), its files by absolute path,
/// and how it starts.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub name: String,
    /// An uncompressed tar of a root file system laid under the files
    /// (e.g. a debootstrapped Debian with the tools tests run).
    pub base: Option<PathBuf>,
    pub files: BTreeMap<String, Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

impl Image {
    pub fn new(name: &str) -> Image {
        Image {
            name: name.into(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..Image::default()
        }
    }

    /// Adds `path` as a copy of `source` (mode 0755 for programs).
    pub fn file(&mut self, path: &str, source: &Path, mode: u32) -> &mut Image {
        self.files
            .insert(path.into(), Entry::File(source.to_path_buf(), mode));
        self
    }

    pub fn bytes(&mut self, path: &str, bytes: &[u8], mode: u32) -> &mut Image {
        self.files
            .insert(path.into(), Entry::Bytes(bytes.to_vec(), mode));
        self
    }

    pub fn dir(&mut self, path: &str) -> &mut Image {
        self.files.insert(path.into(), Entry::Dir);
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Image {
        self.files
            .insert(path.into(), Entry::Symlink(target.into()));
        self
    }

    /// The uncompressed layer: every parent directory, then the entries,
    /// in path order.
    fn layer(&self) -> Result<Vec<u8>> {
        let mut dirs = std::collections::BTreeSet::new();
        for path in self.files.keys() {
            if !path.starts_with('/') || path.contains("/../") || path.ends_with("/..") {
                bail!(
                    "image {}: path {path:?} is not absolute and plain",
                    self.name
                );
            }
            let mut at = path.as_str();
            while let Some(i) = at.rfind('/') {
                at = &at[..i];
                if !at.is_empty() {
                    dirs.insert(at.to_string());
                }
            }
        }
        let mut all: BTreeMap<&str, Option<&Entry>> = BTreeMap::new();
        for d in &dirs {
            all.insert(d, None);
        }
        for (p, e) in &self.files {
            all.insert(p, Some(e));
        }
        let mut b = tar::Builder::new(Vec::new());
        for (path, entry) in all {
            append(&mut b, &path[1..], entry.unwrap_or(&Entry::Dir))
                .with_context(|| format!("image {}: adding {path}", self.name))?;
        }
        Ok(b.into_inner()?)
    }

    /// Writes the image archive to `out`; returns its size in bytes.
    pub fn write_archive(&self, out: &Path) -> Result<u64> {
        write_archive(std::slice::from_ref(self), out)
    }

    /// The image's blobs (layers, config, manifest, each by digest) and
    /// its entries in the OCI index and in Docker's manifest.json.
    fn blobs(&self) -> Result<ImageBlobs> {
        let mut layers = Vec::new();
        if let Some(base) = &self.base {
            let bytes = std::fs::read(base)
                .with_context(|| format!("image {}: reading {}", self.name, base.display()))?;
            layers.push(bytes);
        }
        layers.push(self.layer()?);
        let digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "Env": self.env,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": digests.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>(),
            },
            "history": [{"created_by": "weft-lab image writer"}],
        }))?;
        let config_digest = sha256(&config);
        let layer_descriptors: Vec<serde_json::Value> = layers
            .iter()
            .zip(&digests)
            .map(|(l, d)| {
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{d}"),
                    "size": l.len(),
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": layer_descriptors,
        }))?;
        let manifest_digest = sha256(&manifest);
        let tag = self
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let index_entry = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": full_name(&self.name),
                "org.opencontainers.image.ref.name": tag,
            },
        });
        let docker_entry = json!({
            "Config": format!("blobs/sha256/{config_digest}"),
            "RepoTags": [self.name],
            "Layers": digests.iter().map(|d| format!("blobs/sha256/{d}")).collect::<Vec<_>>(),
        });
        let blobs = digests
            .into_iter()
            .zip(layers)
            .chain([(config_digest, config), (manifest_digest, manifest)])
            .collect();
        Ok(ImageBlobs {
            blobs,
            index_entry,
            docker_entry,
        })
    }
}

struct ImageBlobs {
    blobs: Vec<(String, Vec<u8>)>,
    index_entry: serde_json::Value,
    docker_entry: serde_json::Value,
}

/// Writes one archive holding every image in `images` (a blob two images
/// share, such as a common base layer, is stored once); returns its size
/// in bytes.
pub fn write_archive(images: &[Image], out: &Path) -> Result<u64> {
    // every image's blobs first (a bad image fails before the file exists),
    // each distinct blob kept once
    let mut seen = std::collections::BTreeSet::new();
    let mut blobs = Vec::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    for image in images {
        let parts = image.blobs()?;
        for (digest, bytes) in parts.blobs {
            if seen.insert(digest.clone()) {
                blobs.push((digest, bytes));
            }
        }
        index.push(parts.index_entry);
        docker.push(parts.docker_entry);
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    append(&mut b, "blobs", &Entry::Dir)?;
    append(&mut b, "blobs/sha256", &Entry::Dir)?;
    for (digest, bytes) in blobs {
        append(
            &mut b,
            &format!("blobs/sha256/{digest}"),
            &Entry::Bytes(bytes, 0o644),
        )?;
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    }))?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    append(&mut b, "oci-layout", &Entry::Bytes(layout, 0o644))?;
    append(&mut b, "index.json", &Entry::Bytes(index, 0o644))?;
    append(
        &mut b,
        "manifest.json",
        &Entry::Bytes(serde_json::to_vec(&docker)?, 0o644),
    )?;
    b.into_inner()?;
    Ok(std::fs::metadata(out)?.len())
}

/// The name as containerd's CRI looks it up: `weft:0.1.0` is
/// `docker.io/library/weft:0.1.0` (docker's normalization).
fn full_name(name: &str) -> String {
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// One tar entry, owned by root, time zero.
fn append<W: std::io::Write>(b: &mut tar::Builder<W>, path: &str, entry: &Entry) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    match entry {
        Entry::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
        }
        Entry::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, path, target)?;
        }
        Entry::Bytes(bytes, mode) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, path, bytes.as_slice())?;
        }
        Entry::File(source, mode) => {
            let f = std::fs::File::open(source)
                .with_context(|| format!("opening {}", source.display()))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_size(f.metadata()?.len());
            b.append_data(&mut h, path, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_names_its_image_for_both_importers() {
        let dir = tempfile::tempdir().expect("dir");
        let mut img = Image::new("registry.example/x/pause:1.0");
        img.bytes("/pause", b"#!/bin/sh\n", 0o755)
            .symlink("/bin/sh", "/bin/busybox");
        img.entrypoint = vec!["/pause".into()];
        let out = dir.path().join("img.tar");
        img.write_archive(&out).expect("written");
        let mut names = Vec::new();
        let mut index = String::new();
        let mut a = tar::Archive::new(std::fs::File::open(&out).expect("open"));
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut e, &mut index).expect("read");
            }
            names.push(name);
        }
        assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
        assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
        assert!(index.contains("\"io.containerd.image.name\":\"registry.example/x/pause:1.0\""));
        // reproducible
        let again = dir.path().join("again.tar");
        img.write_archive(&again).expect("written");
        assert_eq!(std::fs::read(&out).ok(), std::fs::read(&again).ok());
    }

    #[test]
    fn a_relative_path_is_refused_by_name() {
        let mut img = Image::new("x:1");
        img.bytes("etc/passwd", b"", 0o644);
        let Err(err) = img.write_archive(Path::new("/nonexistent/x.tar")) else {
            panic!("a relative path was taken");
        };
        assert!(err.to_string().contains("etc/passwd"), "{err}");
    }
}

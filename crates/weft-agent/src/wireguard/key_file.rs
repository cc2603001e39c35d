//! This host's WireGuard private key, kept where flanneld keeps it:
//! `/run/flannel/wgkey` (or `$WIREGUARD_KEY_FILE`; see [`crate::options`]), base64 as `wg genkey`
//! prints it, made once (file 0400, folder 0755) and reused, so the public
//! key in the lease survives restarts.
//!
//! A key file that others can read is refused: whoever reads it can
//! decrypt this host's pod traffic. It is opened without following a
//! symbolic link (O_NOFOLLOW) and its owner and mode are checked on the
//! opened descriptor, so nothing can be swapped in between the check and
//! the read. Errors never quote the file's content.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use weft_core::WgSecret;

/// Whether the key was read or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Read,
    Made,
}

/// Reads the key at `path`, or makes one there when there is none.
pub fn load_or_create(path: &Path) -> Result<(WgSecret, Origin)> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path);
    match opened {
        Ok(f) => read(path, f).map(|k| (k, Origin::Read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create(path).map(|k| (k, Origin::Made))
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => bail!(
            "the WireGuard key file {} is a symbolic link: the key must be a file of its own (owned by root, mode 0400)",
            path.display()
        ),
        Err(e) => {
            Err(e).with_context(|| format!("reading the WireGuard key file {}", path.display()))
        }
    }
}

/// Checks the opened file (a regular file, owned by root or this user,
/// readable by them alone), then reads the key from it.
fn read(path: &Path, f: std::fs::File) -> Result<WgSecret> {
    let meta = f
        .metadata()
        .with_context(|| format!("reading the WireGuard key file {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "the WireGuard key file {} is not a regular file",
            path.display()
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "the WireGuard key file {} belongs to user {}, not to root or this agent's user: run `chown root {}`, or remove it to have a new key made",
            path.display(),
            meta.uid(),
            path.display()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the WireGuard key file {} can be read by other users (mode {:04o}): run `chmod 0400 {}`, or remove it to have a new key made",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    let mut text = String::new();
    f.take(4096)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the WireGuard key file {}", path.display()))?;
    WgSecret::from_base64(&text).map_err(|e| {
        anyhow::anyhow!(
            "the WireGuard key file {} {e}; remove it to have a new key made",
            path.display()
        )
    })
}

fn create(path: &Path) -> Result<WgSecret> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the WireGuard key", dir.display()))?;
    }
    let key = WgSecret::private_from_random(rand::random());
    // create_new is O_EXCL: it never follows a link planted at `path`
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("creating the WireGuard key file {}", path.display()))?;
    f.write_all(key.to_base64().as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing the WireGuard key file {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("wgkey");
        let (k1, o1) = load_or_create(&path).expect("made");
        assert_eq!(o1, Origin::Made);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let (k2, o2) = load_or_create(&path).expect("read");
        assert_eq!((k1, o2), (k2, Origin::Read));
    }

    #[test]
    fn a_readable_or_broken_key_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wgkey");
        std::fs::write(&path, "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_or_create(&path)
            .expect_err("world-readable")
            .to_string();
        assert!(e.contains("can be read by other users (mode 0644)"), "{e}");
        assert!(!e.contains("HIgo9"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(load_or_create(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "secret-but-not-a-key").expect("write");
        let e = load_or_create(&path).expect_err("not a key").to_string();
        assert!(e.contains("is not base64"), "{e}");
        assert!(!e.contains("secret-but"), "{e}");
    }

    #[test]
    fn a_link_planted_at_the_key_path_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // a key another user could read, behind a link at the key's path
        let theirs = dir.path().join("theirs");
        std::fs::write(&theirs, "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").expect("write");
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        let path = dir.path().join("wgkey");
        std::os::unix::fs::symlink(&theirs, &path).expect("symlink");
        let e = load_or_create(&path).expect_err("a link").to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        // a dangling link is not written through either
        let gone = dir.path().join("gone");
        let path2 = dir.path().join("wgkey2");
        std::os::unix::fs::symlink(&gone, &path2).expect("symlink");
        assert!(load_or_create(&path2).is_err());
        assert!(!gone.exists(), "a key was written through the link");
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wgkey");
        std::fs::write(&path, "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None)
            .expect("chown (the tests run as root)");
        let e = load_or_create(&path).expect_err("not ours").to_string();
        assert!(e.contains("belongs to user 65534"), "{e}");
    }
}

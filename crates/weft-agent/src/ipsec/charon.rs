//! strongSwan's IKE daemon, charon, started as flanneld starts it: found
//! at flannel's list of well-known paths, run as a child with the agent's
//! stdout and stderr, and told to stop (SIGTERM) when the agent goes, even
//! when it is killed. A charon that already answers on the VICI socket
//! (the host's own strongSwan) is used instead of a second one.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result};

/// Where charon listens for VICI clients (flanneld's fixed URI).
pub const VICI_SOCKET: &str = "/var/run/charon.vici";

/// flanneld's search order: PATH, then each distribution's place.
const PATHS: [&str; 5] = [
    "charon",
    "/usr/lib/strongswan/charon",     // alpine, arch, flannel's image
    "/usr/lib/ipsec/charon",          // debian, ubuntu
    "/usr/libexec/strongswan/charon", // centos, rhel
    "/usr/libexec/ipsec/charon",      // opensuse, sles
];

/// The first charon of [`PATHS`] that exists and is executable.
pub fn find() -> Result<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(PATHS[0]))
                .collect()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(PATHS[1..].iter().map(PathBuf::from))
        .find(|p| is_executable(p))
        .with_context(|| {
            format!(
                "no charon (strongSwan's IKE daemon) at {}: install strongSwan (Debian: strongswan-charon, strongswan-swanctl, libstrongswan-standard-plugins)",
                PATHS.join(", ")
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts `program`. The calling thread must live as long as the agent:
/// charon gets SIGTERM when the thread that started it ends.
pub fn start(program: &Path) -> Result<Child> {
    let mut cmd = Command::new(program);
    let agent = nix::unistd::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It calls
    // only prctl(2) and getppid(2), both async-signal-safe; it allocates
    // nothing and takes no lock, so the forked copy of a multi-threaded
    // process cannot deadlock in it.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)?;
            // the agent died before the line above: no one to stop charon
            if nix::unistd::getppid() != agent {
                return Err(std::io::Error::other("the agent is gone"));
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", program.display()))
}

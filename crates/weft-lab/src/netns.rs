//! Running commands and code inside network namespaces.

use std::fs::File;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Runs a command to completion and fails with its stderr if it fails.
pub fn sh(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Runs `f` on a helper thread that has entered network namespace `ns`
/// (sockets it creates live there), and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {path}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in {ns} panicked"))?
    })
}

/// `GET <path>` to `127.0.0.1:<port>` inside namespace `ns` (health and
/// metrics endpoints); the whole response, or `None` when nothing answers.
pub fn http_get(ns: &str, port: u16, path: &str) -> Option<String> {
    http_get_at(ns, std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// `GET <path>` to `addr` from inside namespace `ns` (the connection
/// closed after one answer, 5 s at most); the whole response, or `None`.
pub fn http_get_at(ns: &str, addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    use std::time::Duration;
    in_netns(ns, || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .ok()
    .flatten()
}

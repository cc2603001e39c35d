//! Docker on lab hosts: the article's path with a real daemon.
//!
//! One `dockerd` (Debian's `docker.io`) per host namespace, started the way
//! weft's docker drop-in starts it after the agent is ready: the options
//! file written by `weft docker-opts` is read like systemd's
//! `EnvironmentFile=` and `$DOCKER_NETWORK_OPTIONS` ends the command line.
//! Everything the daemon owns is private to the lab: data and exec roots,
//! socket, pidfile, config file and cgroup parent. It runs in the root mount
//! namespace but the host's network namespace (entered with `nsenter`, not
//! `ip netns exec`, which remounts /sys and hides the cgroup tree), so its
//! bridge and iptables rules stay inside the host.
//!
//! Images come from no registry: [`Dockerd::start`] imports a busybox root
//! file system (Debian's `busybox-static`) whose httpd serves `/www`, with
//! a CGI script `/cgi-bin/who` answering `<hostname> saw <client address>`.
//!
//! Stopping (also on drop) removes the containers, stops the daemon by PID,
//! kills by PID any process left holding the daemon's private directory
//! (containerd shims), unmounts what is left below it and removes the
//! daemon's cgroups.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::lab::{Host, Lab};
use crate::netns::sh;
use crate::process::{kill_where, tail, Proc};

/// Debian's docker client, the daemon's own version (a newer client in
/// PATH may speak an API the daemon does not).
pub const DOCKER: &str = "/usr/bin/docker";
/// The image every lab daemon has.
pub const IMAGE: &str = "weft-busybox:local";
const BUSYBOX: &str = "/usr/bin/busybox";
const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$(hostname) saw $REMOTE_ADDR\"\n";

/// A container started by [`Dockerd::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// A docker daemon on one lab host.
pub struct Dockerd {
    pub host: Host,
    dir: PathBuf,
    sock: String,
    cgroup_parent: String,
    proc: Option<Proc>,
}

impl Dockerd {
    /// Starts dockerd on `host` with the options `opts_file` holds under
    /// `key` (as `weft docker-opts -k KEY -d FILE` writes them), waits until
    /// it answers and imports [`IMAGE`].
    pub fn start(lab: &Lab, host: &Host, opts_file: &Path, key: &str) -> Result<Dockerd> {
        for program in ["/usr/sbin/dockerd", DOCKER, BUSYBOX, "/usr/bin/nsenter"] {
            if !Path::new(program).exists() {
                bail!("{program} is missing: install Debian's docker.io and busybox-static (scripts/deps.sh does)");
            }
        }
        let dir = lab.dir().join(&host.name).join("docker");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}\n").context("writing daemon.json")?;
        let sock = format!("unix://{}", dir.join("docker.sock").display());
        let cgroup_parent = format!("{}-{}", lab.prefix, host.name);
        let d = |name: &str| dir.join(name).display().to_string();
        let script = format!(". \"$1\"; shift; exec \"$@\" ${key}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, "sh"])
            .arg(opts_file)
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", host.ns))
            .arg("/usr/sbin/dockerd")
            .args(["--config-file", &d("daemon.json")])
            .args(["--data-root", &d("data"), "--exec-root", &d("exec")])
            .args(["--pidfile", &d("dockerd.pid"), "-H", &sock])
            .args(["--storage-driver", "overlay2"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--cgroup-parent", &cgroup_parent])
            .args(["--shutdown-timeout", "2"]);
        let proc = Proc::spawn_command(
            &format!("dockerd@{}", host.name),
            dir.join("dockerd.log"),
            cmd,
        )?;
        let mut daemon = Dockerd {
            host: host.clone(),
            dir,
            sock,
            cgroup_parent,
            proc: Some(proc),
        };
        daemon.wait_ready(Duration::from_secs(60))?;
        daemon.import_image()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if self
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(());
            }
            let log = self.log_tail(15);
            if let Some(p) = self.proc.as_mut() {
                if let Some(code) = p.exit_code() {
                    bail!("dockerd on {} exited with {code}:\n{log}", self.host.name);
                }
            }
            if Instant::now() > end {
                bail!(
                    "dockerd on {} did not answer in {timeout:?}:\n{log}",
                    self.host.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn import_image(&self) -> Result<()> {
        let root = self.dir.join("rootfs");
        for sub in ["bin", "etc", "tmp", "proc", "sys", "dev", "www/cgi-bin"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).context("copying busybox")?;
        for applet in [
            "sh", "ping", "wget", "nc", "httpd", "ip", "cat", "echo", "sleep", "hostname", "ls",
            "timeout",
        ] {
            let link = root.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", &link)?;
            }
        }
        std::fs::write(root.join("www/index.html"), "weft\n")?;
        let who = root.join("www/cgi-bin/who");
        std::fs::write(&who, WHO_CGI)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&who, std::fs::Permissions::from_mode(0o755))?;
        let tar = self.dir.join("rootfs.tar");
        let (root_s, tar_s) = (root.display().to_string(), tar.display().to_string());
        sh("tar", &["-C", &root_s, "-cf", &tar_s, "."])?;
        self.docker(&["import", &tar_s, IMAGE])?;
        Ok(())
    }

    /// Runs the docker client against this daemon; its stdout.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-H", self.sock.as_str()];
        all.extend_from_slice(args);
        let out = sh(DOCKER, &all)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts container `name` from [`IMAGE`] serving `/www` on port 80
    /// (busybox httpd), with `extra` `docker run` flags (e.g. `-p`).
    pub fn run(&self, name: &str, extra: &[&str]) -> Result<Container> {
        let mut args = vec!["run", "-d", "--name", name, "--hostname", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
        self.docker(&args)?;
        let ip = self.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])?;
        let ip = ip
            .trim()
            .parse()
            .with_context(|| format!("container {name} has no IPv4 address ({})", ip.trim()))?;
        Ok(Container {
            name: name.to_string(),
            ip,
        })
    }

    /// Runs `cmd` inside container `c`; its stdout.
    pub fn exec(&self, c: &Container, cmd: &[&str]) -> Result<String> {
        let mut args = vec!["exec", c.name.as_str()];
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    /// `wget` of `url` from inside container `c` (3 s timeout); the body.
    /// (busybox-static 1.35's `wget -T` crashes; `timeout` does the job.)
    pub fn fetch(&self, c: &Container, url: &str) -> Result<String> {
        Ok(self
            .exec(c, &["timeout", "3", "wget", "-q", "-O", "-", url])?
            .trim()
            .to_string())
    }

    /// Fetches `url` (the `who` CGI of a lab container or host) from inside
    /// `c`: the answering host name and the client address it saw (IPv4,
    /// unmapped from busybox httpd's `[::ffff:a.b.c.d]`).
    pub fn who(&self, c: &Container, url: &str) -> Result<(String, String)> {
        let body = self.fetch(c, url)?;
        let (name, addr) = body
            .split_once(" saw ")
            .with_context(|| format!("unexpected answer {body:?} from {url}"))?;
        let addr = addr
            .trim_matches(|c| c == '[' || c == ']')
            .trim_start_matches("::ffff:");
        Ok((name.to_string(), addr.to_string()))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("dockerd.log"), lines)
    }

    /// The daemon's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Removes the containers, stops the daemon and cleans up after it.
    pub fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        if proc.alive() {
            if let Ok(ids) = self.docker(&["ps", "-aq"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = self.docker(&args);
                }
            }
        }
        proc.stop(Duration::from_secs(20));
        kill_holders(&self.dir);
        unmount_below(&self.dir);
        crate::cgroups::remove_tree(&self.cgroup_parent);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGKILLs (by PID) every process whose command line names `dir`: what the
/// daemon started and left behind (containerd, shims).
fn kill_holders(dir: &Path) {
    let needle = dir.display().to_string();
    kill_where(|_, _, cmdline| cmdline.contains(&needle));
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

//! Child processes started inside namespaces, killed by PID on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process started by the lab, with its log file.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program args…` in namespace `ns` (via `ip netns exec`, which
    /// execs the program, so the PID is the program's own).
    pub fn spawn(
        ns: &str,
        name: &str,
        log: PathBuf,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Proc> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn_command(&format!("{name} in {ns}"), log, cmd).map(|mut p| {
            p.name = name.to_string();
            p
        })
    }

    /// Starts a prepared command (one that enters its namespace itself,
    /// e.g. through `nsenter`, and execs the program so the PID is its own).
    pub fn spawn_command(name: &str, log: PathBuf, mut cmd: Command) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            log,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The exit code if it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(s)) => s.code(),
            _ => None,
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(c) = self.exit_code() {
                return Some(c);
            }
            if !self.alive() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal (by PID).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps the child.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL now; reaps the child.
    pub fn kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// The last `lines` lines of a log file (empty when unreadable).
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// (PID, parent PID) of every process, read from `/proc`.
pub(crate) fn process_parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // the parent PID is the second field after the command name, which
        // is in parentheses and may hold spaces
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        out.push((pid, ppid));
    }
    out
}

/// SIGKILLs, by PID, every process for which `pick(pid, parent pid,
/// command line)` holds: what the lab's programs started and left behind.
pub fn kill_where(pick: impl Fn(u32, u32, &str) -> bool) {
    for (pid, ppid) in process_parents() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pick(pid, ppid, &String::from_utf8_lossy(&cmdline)) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Stops processes by PID: SIGTERM to all, up to `grace` for them to go,
/// then SIGKILL to any left.
pub(crate) fn stop_pids(pids: &[u32], grace: Duration) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
    }
    let end = std::time::Instant::now() + grace;
    for &p in pids {
        while kill(Pid::from_raw(p as i32), None).is_ok() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

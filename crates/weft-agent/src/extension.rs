//! The extension backend: the user's commands are the data path. They run
//! the way flanneld v0.28 runs them (see [`weft_core::command`]): no shell,
//! the process environment plus flannel's variables, stdin fed, stdout and
//! stderr read together and trimmed.
//!
//! PreStartupCommand and PostStartupCommand run in the agent's start-up and
//! stop it when they fail. The per-lease commands run one at a time, in
//! event order, on a worker thread, so a slow command never holds up the
//! lease stream; a failure is logged and counted, as flanneld logs it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use weft_core::command::CommandLine;
use weft_core::config::ExtensionConfig;
use weft_core::lease::{Lease, LeaseError, LeaseKey};
use weft_core::plan::extension::{Call, CallKind, ExtensionPeers};

/// Runs `cmd` with `vars` added to the environment and `stdin` (plus a
/// newline, as flanneld writes it) on its standard input; returns its
/// output, or an error carrying the output.
pub fn run(cmd: &CommandLine, vars: &[(&str, String)], stdin: &str) -> Result<String> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let argv = cmd.expand(lookup);
    let (program, args) = argv
        .split_first()
        .context("the command expanded to nothing")?;
    // one pipe for stdout and stderr, as Go's CombinedOutput (std's own
    // pipe needs Rust 1.87, above the workspace's 1.85)
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating the output pipe")?;
    let mut output = std::fs::File::from(reader);
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().context("sharing the output pipe")?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program:?} (command `{cmd}`)"))?;
    // the command's copies of the pipe's write end must go, or reading
    // the output never ends
    drop(command);
    let input = format!("{stdin}\n");
    let feeder = child.stdin.take().map(|mut pipe| {
        std::thread::spawn(move || {
            // a command that exits without reading its input is no error
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let mut bytes = Vec::new();
    let read = output.read_to_end(&mut bytes);
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{cmd}`"))?;
    if let Some(f) = feeder {
        let _ = f.join();
    }
    read.with_context(|| format!("reading the output of `{cmd}`"))?;
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    if !status.success() {
        bail!("command `{cmd}` failed ({status}); output: {text}");
    }
    Ok(text)
}

/// PreStartupCommand: its output, the BackendData of this host's lease.
pub fn pre_startup(cfg: &ExtensionConfig) -> Result<Option<String>> {
    let Some(cmd) = &cfg.pre_startup else {
        tracing::info!("no PreStartupCommand configured");
        return Ok(None);
    };
    let out = run(cmd, &[], "").context("PreStartupCommand")?;
    tracing::info!(command = %cmd, output = %out, "ran PreStartupCommand");
    Ok(Some(out))
}

/// What PostStartupCommand is told about this host's lease, printed as
/// flanneld prints it.
pub struct PostStartup {
    /// NETWORK: the IPv4 network (`0.0.0.0/0` without one).
    pub network: String,
    pub subnet: String,
    /// IPV6SUBNET (`::/0` without one).
    pub ipv6_subnet: String,
    pub public_ip: String,
    /// PUBLIC_IPV6: flanneld prints a missing address as `<nil>`, and so
    /// does weft, for scripts that test for it.
    pub public_ipv6: String,
}

/// PostStartupCommand, once the lease is held.
pub fn post_startup(cfg: &ExtensionConfig, lease: PostStartup) -> Result<()> {
    let Some(cmd) = &cfg.post_startup else {
        tracing::info!("no PostStartupCommand configured");
        return Ok(());
    };
    let vars = [
        ("NETWORK", lease.network),
        ("SUBNET", lease.subnet),
        ("IPV6SUBNET", lease.ipv6_subnet),
        ("PUBLIC_IP", lease.public_ip),
        ("PUBLIC_IPV6", lease.public_ipv6),
    ];
    let out = run(cmd, &vars, "").context("PostStartupCommand")?;
    tracing::info!(command = %cmd, output = %out, "ran PostStartupCommand");
    Ok(())
}

/// Where remote leases go with the extension backend: the calls the
/// core plans, queued to the worker that runs them.
pub struct ExtensionSink {
    peers: ExtensionPeers,
    calls: mpsc::Sender<Call>,
}

impl ExtensionSink {
    /// Starts the worker that runs SubnetAddCommand and SubnetRemoveCommand.
    pub fn start(cfg: &ExtensionConfig) -> Result<ExtensionSink> {
        let (calls, queue) = mpsc::channel::<Call>();
        let (add, remove) = (cfg.subnet_add.clone(), cfg.subnet_remove.clone());
        std::thread::Builder::new()
            .name("extension".into())
            .spawn(move || {
                for call in queue {
                    let (name, cmd) = match call.kind {
                        CallKind::Add => ("SubnetAddCommand", &add),
                        CallKind::Remove => ("SubnetRemoveCommand", &remove),
                    };
                    if let Some(cmd) = cmd {
                        run_call(name, cmd, &call);
                    }
                }
            })
            .context("starting the extension command thread")?;
        Ok(ExtensionSink {
            peers: ExtensionPeers::default(),
            calls,
        })
    }

    /// A remote lease appeared or changed.
    pub fn upsert(&mut self, lease: &Lease) -> Result<(), LeaseError> {
        if let Some(call) = self.peers.upsert(lease)? {
            self.queue(call);
        }
        Ok(())
    }

    /// A remote lease went away.
    pub fn remove(&mut self, key: &LeaseKey) {
        if let Some(call) = self.peers.remove(key) {
            self.queue(call);
        }
    }

    pub fn begin_reset(&mut self) {
        self.peers.begin_reset();
    }

    pub fn end_reset(&mut self) {
        for call in self.peers.end_reset() {
            self.queue(call);
        }
    }

    /// Remote leases the add command ran for.
    pub fn lease_count(&self) -> usize {
        self.peers.len()
    }

    fn queue(&self, call: Call) {
        // the worker only ends with the process
        let _ = self.calls.send(call);
    }
}

fn run_call(name: &str, cmd: &CommandLine, call: &Call) {
    match run(cmd, &call.vars(), &call.stdin) {
        Ok(out) => {
            tracing::info!(subnet = %call.subnet, public_ip = %call.public_ip, output = %out, "ran {name}")
        }
        Err(e) => {
            crate::metrics::get().extension_command_failures.inc();
            tracing::error!(subnet = %call.subnet, "{name}: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> CommandLine {
        CommandLine::parse(text).expect("fields")
    }

    #[test]
    fn output_is_stdout_and_stderr_trimmed_and_stdin_is_fed() {
        let out = run(
            &line("/bin/sh -c $SCRIPT"),
            &[("SCRIPT", "read l; echo \"got $l\"; echo err >&2".into())],
            "mac 1",
        )
        .expect("runs");
        assert_eq!(out, "got mac 1\nerr");
    }

    #[test]
    fn variables_are_set_and_expanded_but_never_run_as_code() {
        let dir = tempfile::tempdir().expect("dir");
        let marker = dir.path().join("pwned");
        let evil = format!("x;touch {}", marker.display());
        let out = run(&line("/bin/echo $SUBNET"), &[("SUBNET", evil.clone())], "").expect("runs");
        assert_eq!(out, evil);
        assert!(!marker.exists(), "a value ran as a command");
        let env = run(
            &line("/usr/bin/env"),
            &[("PUBLIC_IP", "198.18.0.1".into())],
            "",
        )
        .expect("runs");
        assert!(env.lines().any(|l| l == "PUBLIC_IP=198.18.0.1"), "{env}");
    }

    #[test]
    fn a_failing_command_says_what_failed_with_its_output() {
        let e = run(
            &line("/bin/sh -c $S"),
            &[("S", "echo nope; exit 3".into())],
            "",
        )
        .expect_err("fails");
        let text = format!("{e:#}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("output: nope"), "{text}");
        let missing = run(&line("/nonexistent/program"), &[], "").expect_err("no program");
        assert!(format!("{missing:#}").contains("starting \"/nonexistent/program\""));
    }
}

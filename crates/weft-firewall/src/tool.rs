//! Running the system's firewall programs (`iptables-restore`, `nft`, …):
//! their output, or their own words as the error.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("running {cmd}: {source} (is it installed?)")]
    Exec {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    /// The chosen iptables backend cannot be used here.
    #[error("{0}")]
    Backend(String),
}

/// Runs a firewall tool, feeding `stdin`; its stdout, or its stderr as the error.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
    let cmd = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Exec {
            cmd: cmd.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| FirewallError::Exec {
                cmd: cmd.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| FirewallError::Exec {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(FirewallError::Failed {
            cmd,
            // a tool that dies silently (a signal, an exit code alone) is
            // reported by how it ended
            stderr: if said.is_empty() {
                format!("it said nothing ({})", out.status)
            } else {
                said
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_failure_says_how_the_tool_ended() {
        let e = run("sh", &["-c", "exit 4"], None).expect_err("fails");
        assert_eq!(
            e.to_string(),
            "sh -c exit 4 failed: it said nothing (exit status: 4)"
        );
        let e = run("sh", &["-c", "echo no >&2; exit 1"], None).expect_err("fails");
        assert!(e.to_string().ends_with("failed: no"), "{e}");
    }
}

//! The agents the lease scenarios run side by side on one lab: weft's
//! (this build's `weft agent`, or `--agent-bin` run with flanneld's flags)
//! and the pinned upstream flanneld.

use std::path::Path;

use anyhow::Result;
use weft_kernel::Netlink;
use weft_lab::{Host, Lab};

use crate::BenchArgs;

pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) program: String,
    /// Its arguments before flanneld's flags (`agent` for `weft`).
    pub(crate) first: Vec<String>,
    /// Upstream flanneld rather than weft.
    pub(crate) upstream: bool,
}

/// weft's agent: `--agent-bin`, else `weft agent`.
pub(crate) fn weft(a: &BenchArgs, weft: &Path) -> Agent {
    match &a.agent_bin {
        Some(bin) => Agent {
            name: format!("weft ({})", bin.display()),
            program: bin.display().to_string(),
            first: Vec::new(),
            upstream: false,
        },
        None => Agent {
            name: "weft agent".into(),
            program: weft.display().to_string(),
            first: vec!["agent".into()],
            upstream: false,
        },
    }
}

/// The pinned upstream flanneld (built by scripts/upstream.sh).
pub(crate) fn flanneld() -> Result<Agent> {
    let bin = weft_lab::upstream_flanneld()?;
    Ok(Agent {
        name: format!("flanneld {}", weft_lab::program_version(&bin, "--version")),
        program: bin.display().to_string(),
        first: Vec::new(),
        upstream: true,
    })
}

/// Back to a cold host: no agent, no device (so no routes), no subnet file.
pub(crate) fn reset(lab: &mut Lab, host: &Host) -> Result<()> {
    lab.stop_agent(host, false);
    let mut nl = lab.netlink(host)?;
    if let Some(idx) = device_index(&mut nl) {
        weft_kernel::delete_link(&mut nl, idx)?;
    }
    let _ = std::fs::remove_file(lab.subnet_file(host));
    Ok(())
}

/// The index of `flannel.1`, once the agent made it.
pub(crate) fn device_index(nl: &mut Netlink) -> Option<u32> {
    weft_kernel::link_by_name(nl, "flannel.1")
        .ok()
        .flatten()
        .map(|l| l.index)
}

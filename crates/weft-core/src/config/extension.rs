//! The extension backend's keys: four command lines run at flannel's
//! points (before the lease, after it, per remote lease added, per remote
//! lease removed). Each is optional; an empty string means none, as in
//! flannel. A line of only whitespace is refused: flanneld crashes on it.

use super::{field_err, requalify, ConfigError, Fields};
use crate::command::CommandLine;

/// extension backend keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionConfig {
    /// Its output (trimmed, stdout and stderr together) becomes the
    /// lease's BackendData.
    pub pre_startup: Option<CommandLine>,
    /// Run once the lease is held, with NETWORK, SUBNET, IPV6SUBNET,
    /// PUBLIC_IP and PUBLIC_IPV6.
    pub post_startup: Option<CommandLine>,
    /// Run per remote lease added or changed, with SUBNET and PUBLIC_IP and
    /// the lease's BackendData on stdin.
    pub subnet_add: Option<CommandLine>,
    /// Run per remote lease removed, as `subnet_add`.
    pub subnet_remove: Option<CommandLine>,
}

pub(super) fn parse_extension(f: &Fields) -> Result<ExtensionConfig, ConfigError> {
    let line = |name: &'static str, qualified: &'static str| match f
        .string(name)
        .map_err(|e| requalify(e, qualified))?
    {
        None | Some("") => Ok(None),
        Some(text) => CommandLine::parse(text)
            .map(Some)
            .ok_or_else(|| field_err(qualified, "holds only whitespace: no program to run")),
    };
    Ok(ExtensionConfig {
        pre_startup: line("PreStartupCommand", "Backend.PreStartupCommand")?,
        post_startup: line("PostStartupCommand", "Backend.PostStartupCommand")?,
        subnet_add: line("SubnetAddCommand", "Backend.SubnetAddCommand")?,
        subnet_remove: line("SubnetRemoveCommand", "Backend.SubnetRemoveCommand")?,
    })
}

pub mod agent;
pub mod bench;
pub mod cleanup;
pub mod cni;
pub mod datapath;
pub mod demo;
pub mod docker_opts;
pub mod install;

use std::process::ExitCode;

/// Prints an error chain on one line and maps it to exit status 1.
pub fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

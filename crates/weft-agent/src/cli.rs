//! The agent as a program: flanneld's argv in, an exit code out. Shared by
//! `weft agent` (and `weft` invoked as `flanneld`) and the agent-only
//! `flanneld` binary (`src/bin/flanneld.rs`).

use std::process::ExitCode;

use crate::flags::parse_flanneld;

/// What `-version` says after weft's own version: the flanneld release
/// whose keys, files and flags the agent keeps. Installers and the bench
/// recognise a weft agent binary by it.
pub const VERSION_MARK: &str = "flanneld v0.21.5 compatible";

/// Parses `argv` (argv[0] included) as flanneld does, sets up logging and
/// runs the agent until it is told to stop. Exit codes: 0 after a clean
/// stop or `-version`, 1 when the agent fails, 2 on bad flags.
pub fn main(argv: Vec<String>) -> ExitCode {
    let args = match parse_flanneld(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.version {
        println!("weft {} ({VERSION_MARK})", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let options = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    weft_telemetry::logging::init(args.v, args.log_format == "json");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::run(options)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that `path` (given by `flag`) is a weft agent binary: it must
/// answer `-version` with [`VERSION_MARK`].
pub fn check_agent_binary(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let out = std::process::Command::new(path)
        .arg("-version")
        .output()
        .with_context(|| format!("{flag}: running {} -version", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(VERSION_MARK) {
        anyhow::bail!(
            "{flag}: {} is not a weft agent (its -version printed {:?})",
            path.display(),
            text.trim()
        );
    }
    Ok(())
}

//! `weft agent` / `weft` invoked as `flanneld`: the agent's own entry point.

use std::process::ExitCode;

pub fn main(argv: Vec<String>) -> ExitCode {
    weft_agent::cli::main(argv)
}

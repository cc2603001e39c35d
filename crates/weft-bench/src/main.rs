//! `weft-bench`: the benchmark harness, a binary of its own so that the
//! node binary `weft` carries none of it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = weft_bench::BenchArgs::parse();
    match weft_bench::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `weft-bench`: the benchmark harness, a binary of its own so that the
//! node binary `weft` carries none of it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = weft_bench::BenchArgs::parse();
    // a bench interrupted (Ctrl-C, a CI timeout) leaves no lab behind
    if let Err(e) = weft_lab::interrupt::tear_down_on_signals("weft-bench") {
        eprintln!("weft-bench: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    match weft_bench::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench: {}", weft_kube::chain_words(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

//! `flanneld`: the agent alone, without weft's other commands. Built with
//! the `lean` profile (`cargo build --profile lean -p weft-agent --bin
//! flanneld`) it maps a fraction of `weft`'s code, which is most of an
//! idle agent's resident memory.

fn main() -> std::process::ExitCode {
    weft_agent::cli::main(std::env::args().collect())
}

//! `weft`: one binary for the agent (also when invoked as `flanneld`),
//! the demo cluster and the benchmarks.

mod commands;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "An overlay network for container clusters, wire-compatible with flannel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (flanneld's job); takes flanneld's flags
    Agent {
        /// flanneld flags, e.g. -etcd-endpoints=http://10.0.0.1:2379
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
    /// Build a multi-host cluster in network namespaces and show it working
    Demo(commands::demo::DemoArgs),
    /// Measure the agent against real etcd in network namespaces
    Bench(commands::bench::BenchArgs),
}

fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv.first().map(|a| program_name(a)).unwrap_or("weft");
    if name == "flanneld" {
        return commands::agent::main(argv);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { flags } => {
            let mut argv = vec!["weft agent".to_string()];
            argv.extend(flags);
            commands::agent::main(argv)
        }
        Command::Demo(a) => commands::report(commands::demo::run(a)),
        Command::Bench(a) => commands::report(commands::bench::run(a)),
    }
}

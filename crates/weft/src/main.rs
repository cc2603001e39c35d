//! `weft`: one binary for the agent (also when invoked as `flanneld`),
//! the CNI plugin (as `flannel`), docker options (as `mk-docker-opts.sh`),
//! the service proxy, the operator commands and the demo cluster. (The
//! benchmarks are the separate `weft-bench` binary.)

mod commands;

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
    /// Run the agent (flanneld's job); takes flanneld's flags (`weft agent --help` lists them)
    #[command(disable_help_flag = true)]
    Agent {
        /// flanneld flags, e.g. -etcd-endpoints=http://10.0.0.1:2379
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
    /// Remove the devices, routes and firewall rules weft set up on this host
    Cleanup(commands::cleanup::CleanupArgs),
    /// The flannel CNI plugin (CNI_* environment, config on stdin)
    Cni,
    /// Write docker daemon options from the subnet file (mk-docker-opts.sh)
    DockerOpts(commands::docker_opts::DockerOptsArgs),
    /// Install the binary, its flannel names, systemd units and the CNI plugin
    Install(commands::install::InstallArgs),
    /// Build a multi-host cluster in network namespaces and show it working
    Demo(commands::demo::DemoArgs),
    /// Run the service proxy (kube-proxy's job): Service IPs and NodePorts
    Proxy(weft_proxy::cli::ProxyArgs),
    /// Manage the services and endpoints the proxy serves
    Service(commands::service::ServiceArgs),
    /// The cluster's leases and this host's data path against them
    Status(commands::status::StatusArgs),
    /// Each pod's QoS class, with the reason, from manifests
    Qos(commands::qos::QosArgs),
    /// Diagnose this host: forwarding, firewall, MTU, docker, etcd, cgroups
    Doctor(commands::doctor::DoctorArgs),
}

fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv.first().map(|a| program_name(a)).unwrap_or("weft");
    match name {
        "flanneld" => return commands::agent::main(argv),
        "mk-docker-opts.sh" | "mk-docker-opts" => return commands::docker_opts::main(argv),
        "flannel" => return commands::cni::main(),
        _ => {}
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { flags } => {
            let mut argv = vec!["weft agent".to_string()];
            argv.extend(flags);
            commands::agent::main(argv)
        }
        Command::Cni => commands::cni::main(),
        Command::Cleanup(a) => commands::report(commands::cleanup::run(a)),
        Command::DockerOpts(a) => commands::report(commands::docker_opts::run(a)),
        Command::Install(a) => commands::report(commands::install::run(a)),
        Command::Demo(a) => commands::report(commands::demo::run(a)),
        Command::Proxy(a) => commands::report(weft_proxy::cli::run(a)),
        Command::Service(a) => commands::report(commands::service::run(a)),
        Command::Status(a) => commands::report(commands::status::run(a)),
        Command::Qos(a) => commands::report(commands::qos::run(a)),
        Command::Doctor(a) => commands::doctor::main(a),
    }
}

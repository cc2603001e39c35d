//! `weft docker-opts` / `mk-docker-opts.sh`: docker daemon options from the
//! subnet file, with the script's flags (`-f -d -k -c -i -m`).
//!
//! Unlike the script, a missing or malformed subnet file is an error and
//! the previous output file is left untouched; the output is replaced
//! atomically.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use weft_core::docker_opts::{render, DockerOptsSettings};
use weft_core::plan::RouteVia;
use weft_core::subnet_file::SubnetEnv;

/// Generate Docker daemon options based on flannel env file
#[derive(clap::Parser, Debug)]
#[command(name = "mk-docker-opts.sh")]
pub struct DockerOptsArgs {
    /// Path to flannel env file
    #[arg(
        short = 'f',
        value_name = "FLANNEL-ENV-FILE",
        default_value = "/run/flannel/subnet.env"
    )]
    flannel_env: PathBuf,
    /// Path to Docker env file to write to
    #[arg(
        short = 'd',
        value_name = "DOCKER-ENV-FILE",
        default_value = "/run/docker_opts.env"
    )]
    docker_env: PathBuf,
    /// Output each Docker option as individual var, e.g. DOCKER_OPT_MTU=1500
    #[arg(short = 'i')]
    individual: bool,
    /// Output combined Docker options into DOCKER_OPTS var
    #[arg(short = 'c')]
    combined: bool,
    /// Set the combined options key to this value
    #[arg(
        short = 'k',
        value_name = "COMBINED-KEY",
        default_value = "DOCKER_OPTS"
    )]
    key: String,
    /// Do not output --ip-masq (useful for older Docker version)
    #[arg(short = 'm')]
    no_ip_masq: bool,
}

fn is_shell_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// As `mk-docker-opts.sh` (argv[0] included); usage errors exit 1 like the script.
pub fn main(argv: Vec<String>) -> std::process::ExitCode {
    use clap::Parser;
    match DockerOptsArgs::try_parse_from(argv) {
        Ok(a) => super::report(run(a)),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
    }
}

pub fn run(a: DockerOptsArgs) -> Result<()> {
    if !is_shell_name(&a.key) {
        bail!("-k {:?}: not a valid environment variable name", a.key);
    }
    let text = std::fs::read_to_string(&a.flannel_env).with_context(|| {
        format!(
            "reading the subnet file {} (is the agent running?)",
            a.flannel_env.display()
        )
    })?;
    let env = SubnetEnv::parse(&text).with_context(|| format!("{}", a.flannel_env.display()))?;
    let settings = DockerOptsSettings {
        // neither -i nor -c: both
        individual: a.individual || !a.combined,
        combined: a.combined || !a.individual,
        combined_key: a.key.clone(),
        ip_masq: !a.no_ip_masq,
    };
    let existing = std::env::var(&a.key).ok();
    let out = render(&env, &settings, existing.as_deref())
        .with_context(|| format!("{}", a.flannel_env.display()))?;
    if let Some(subnet) = env.subnet {
        refuse_if_routed_via_gateway(IpNet::V4(subnet.trunc()))?;
    }
    weft_agent::subnet_file::write_atomic(&a.docker_env, &out)
        .with_context(|| format!("writing {}", a.docker_env.display()))
}

/// The script refuses when the host already routes the docker subnet
/// through a gateway: docker's bridge would then shadow a real network.
fn refuse_if_routed_via_gateway(subnet: IpNet) -> Result<()> {
    let mut nl = weft_kernel::Netlink::open().context("opening netlink to check routes")?;
    let routes = weft_kernel::main_table_routes(&mut nl).context("reading the routing table")?;
    for r in routes.into_iter().filter(|r| r.dst == subnet) {
        if let RouteVia::Gateway(hop) = r.via {
            if !hop.gateway.is_unspecified() {
                return Err(anyhow!(
                    "the docker subnet {subnet} is already routed via {} (interface #{}): refusing to give it to docker",
                    hop.gateway,
                    hop.oif
                ));
            }
        }
    }
    Ok(())
}

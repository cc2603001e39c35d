//! What `mk-docker-opts.sh` writes for docker from the subnet file:
//!
//! ```text
//! DOCKER_OPT_BIP="--bip=172.30.46.1/24"
//! DOCKER_OPT_IPMASQ="--ip-masq=true"
//! DOCKER_OPT_MTU="--mtu=1450"
//! DOCKER_OPTS=" --bip=172.30.46.1/24 --ip-masq=true --mtu=1450"
//! ```
//!
//! Options come in the script's order (BIP, IPMASQ, MTU). `--ip-masq` is
//! the inverse of FLANNEL_IPMASQ: docker masquerades only when the agent
//! does not.

use crate::subnet_file::SubnetEnv;

/// The script's switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptsSettings {
    /// `-i`: one `DOCKER_OPT_*` variable per option.
    pub individual: bool,
    /// `-c`: all options in one variable.
    pub combined: bool,
    /// `-k`: the combined variable's name.
    pub combined_key: String,
    /// Not `-m`: include `--ip-masq`.
    pub ip_masq: bool,
}

impl Default for DockerOptsSettings {
    fn default() -> Self {
        DockerOptsSettings {
            individual: true,
            combined: true,
            combined_key: "DOCKER_OPTS".into(),
            ip_masq: true,
        }
    }
}

/// A subnet file that cannot be turned into docker options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerOptsError {
    #[error("{0} is missing from the subnet file")]
    Missing(&'static str),
}

/// Renders the docker environment file. `existing` is the value the
/// combined key already has in the environment; it is kept in front.
pub fn render(
    env: &SubnetEnv,
    settings: &DockerOptsSettings,
    existing: Option<&str>,
) -> Result<String, DockerOptsError> {
    let subnet = env
        .subnet
        .ok_or(DockerOptsError::Missing("FLANNEL_SUBNET"))?;
    let mtu = env.mtu.ok_or(DockerOptsError::Missing("FLANNEL_MTU"))?;
    let mut opts: Vec<(&str, String)> = vec![("DOCKER_OPT_BIP", format!("--bip={subnet}"))];
    if settings.ip_masq {
        if let Some(agent_masq) = env.ipmasq {
            opts.push(("DOCKER_OPT_IPMASQ", format!("--ip-masq={}", !agent_masq)));
        }
    }
    opts.push(("DOCKER_OPT_MTU", format!("--mtu={mtu}")));
    let mut out = String::new();
    if settings.individual {
        for (name, value) in &opts {
            out.push_str(&format!("{name}=\"{value}\"\n"));
        }
    }
    if settings.combined {
        let mut combined = existing.unwrap_or("").to_string();
        for (_, value) in &opts {
            combined.push(' ');
            combined.push_str(value);
        }
        out.push_str(&format!("{}=\"{combined}\"\n", settings.combined_key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article_env() -> SubnetEnv {
        SubnetEnv::parse("FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.46.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
            .expect("article subnet file")
    }

    #[test]
    fn the_articles_output_byte_for_byte() {
        let out = render(&article_env(), &DockerOptsSettings::default(), None).expect("render");
        assert_eq!(
            out,
            "DOCKER_OPT_BIP=\"--bip=172.30.46.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=true\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\nDOCKER_OPTS=\" --bip=172.30.46.1/24 --ip-masq=true --mtu=1450\"\n"
        );
    }

    #[test]
    fn individual_only_combined_only_and_key() {
        let env = article_env();
        let i = DockerOptsSettings {
            combined: false,
            ..Default::default()
        };
        assert_eq!(
            render(&env, &i, None).expect("render"),
            "DOCKER_OPT_BIP=\"--bip=172.30.46.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=true\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\n"
        );
        let c = DockerOptsSettings {
            individual: false,
            combined_key: "DOCKER_NETWORK_OPTIONS".into(),
            ..Default::default()
        };
        assert_eq!(
            render(&env, &c, None).expect("render"),
            "DOCKER_NETWORK_OPTIONS=\" --bip=172.30.46.1/24 --ip-masq=true --mtu=1450\"\n"
        );
    }

    #[test]
    fn agent_masquerading_turns_docker_masquerading_off_and_m_drops_it() {
        let mut env = article_env();
        env.ipmasq = Some(true);
        let out = render(&env, &DockerOptsSettings::default(), None).expect("render");
        assert!(out.contains("DOCKER_OPT_IPMASQ=\"--ip-masq=false\""));
        let m = DockerOptsSettings {
            ip_masq: false,
            ..Default::default()
        };
        let out = render(&env, &m, None).expect("render");
        assert!(!out.contains("ip-masq"), "{out}");
        assert!(out.ends_with("DOCKER_OPTS=\" --bip=172.30.46.1/24 --mtu=1450\"\n"));
    }

    #[test]
    fn existing_combined_value_is_kept_in_front() {
        let out = render(
            &article_env(),
            &DockerOptsSettings::default(),
            Some("--log-level=warn"),
        )
        .expect("render");
        assert!(
            out.ends_with(
                "DOCKER_OPTS=\"--log-level=warn --bip=172.30.46.1/24 --ip-masq=true --mtu=1450\"\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn incomplete_subnet_files_are_refused() {
        let env = SubnetEnv::parse("FLANNEL_MTU=1450\n").expect("parse");
        assert_eq!(
            render(&env, &DockerOptsSettings::default(), None),
            Err(DockerOptsError::Missing("FLANNEL_SUBNET"))
        );
        let env = SubnetEnv::parse("FLANNEL_SUBNET=172.30.46.1/24\n").expect("parse");
        assert_eq!(
            render(&env, &DockerOptsSettings::default(), None),
            Err(DockerOptsError::Missing("FLANNEL_MTU"))
        );
    }
}

//! `/run/flannel/subnet.env`: what the agent leased, in flannel's format.
//!
//! ```text
//! FLANNEL_NETWORK=172.30.0.0/16
//! FLANNEL_SUBNET=172.30.46.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```

use std::fmt::Write as _;

use ipnet::{Ipv4Net, Ipv6Net};

/// The values of a subnet file. Subnets carry the host address (`.1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    pub network: Option<Ipv4Net>,
    pub subnet: Option<Ipv4Net>,
    pub ipv6_network: Option<Ipv6Net>,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub mtu: Option<u32>,
    pub ipmasq: Option<bool>,
}

/// A subnet file line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subnet file line {line}: {key}: {msg}")]
pub struct SubnetEnvError {
    pub line: usize,
    pub key: String,
    pub msg: String,
}

impl SubnetEnv {
    /// Renders the file exactly as flanneld writes it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        if let (Some(n), Some(sn)) = (self.network, self.subnet) {
            let _ = writeln!(s, "FLANNEL_NETWORK={n}\nFLANNEL_SUBNET={sn}");
        }
        if let (Some(n), Some(sn)) = (self.ipv6_network, self.ipv6_subnet) {
            let _ = writeln!(s, "FLANNEL_IPV6_NETWORK={n}\nFLANNEL_IPV6_SUBNET={sn}");
        }
        let _ = writeln!(s, "FLANNEL_MTU={}", self.mtu.unwrap_or(0));
        let _ = writeln!(s, "FLANNEL_IPMASQ={}", self.ipmasq.unwrap_or(false));
        s
    }

    /// Parses a subnet file. Unknown keys are ignored, as a shell `source`
    /// would; blank lines and `#` comments are skipped; values may be quoted.
    pub fn parse(text: &str) -> Result<SubnetEnv, SubnetEnvError> {
        let mut env = SubnetEnv::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let err = |key: &str, msg: &str| SubnetEnvError {
                line: i + 1,
                key: key.to_string(),
                msg: msg.to_string(),
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(line, "expected KEY=VALUE"))?;
            let value = unquote(value.trim());
            match key.trim() {
                "FLANNEL_NETWORK" => {
                    env.network = Some(value.parse().map_err(|_| err(key, "not an IPv4 CIDR"))?)
                }
                "FLANNEL_SUBNET" => {
                    env.subnet = Some(value.parse().map_err(|_| err(key, "not an IPv4 CIDR"))?)
                }
                "FLANNEL_IPV6_NETWORK" => {
                    env.ipv6_network =
                        Some(value.parse().map_err(|_| err(key, "not an IPv6 CIDR"))?)
                }
                "FLANNEL_IPV6_SUBNET" => {
                    env.ipv6_subnet = Some(value.parse().map_err(|_| err(key, "not an IPv6 CIDR"))?)
                }
                "FLANNEL_MTU" => {
                    env.mtu = Some(value.parse().map_err(|_| err(key, "not a number"))?)
                }
                "FLANNEL_IPMASQ" => {
                    env.ipmasq =
                        Some(parse_go_bool(value).ok_or_else(|| err(key, "not true or false"))?)
                }
                _ => {}
            }
        }
        Ok(env)
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Go's `strconv.ParseBool`: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str =
        "FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_SUBNET=172.30.46.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

    #[test]
    fn renders_the_article_file() {
        let env = SubnetEnv {
            network: Some("172.30.0.0/16".parse().expect("net")),
            subnet: Some("172.30.46.1/24".parse().expect("net")),
            mtu: Some(1450),
            ipmasq: Some(false),
            ..Default::default()
        };
        assert_eq!(env.render(), ARTICLE);
        assert_eq!(SubnetEnv::parse(ARTICLE).expect("parses"), env);
    }

    #[test]
    fn dual_stack_order() {
        let env = SubnetEnv {
            network: Some("10.5.0.0/16".parse().expect("net")),
            subnet: Some("10.5.52.1/24".parse().expect("net")),
            ipv6_network: Some("fc00::/48".parse().expect("net")),
            ipv6_subnet: Some("fc00:0:0:5::1/64".parse().expect("net")),
            mtu: Some(1430),
            ipmasq: Some(true),
        };
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n"
        );
        assert_eq!(SubnetEnv::parse(&env.render()).expect("parses"), env);
    }

    #[test]
    fn tolerant_of_shell_syntax() {
        let env = SubnetEnv::parse(
            "# c\n\nexport FLANNEL_SUBNET=\"172.30.46.1/24\"\nOTHER=x\nFLANNEL_IPMASQ=1\n",
        )
        .expect("parses");
        assert_eq!(
            env.subnet.map(|s| s.to_string()).as_deref(),
            Some("172.30.46.1/24")
        );
        assert_eq!(env.ipmasq, Some(true));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = SubnetEnv::parse("FLANNEL_NETWORK=172.30.0.0/16\nFLANNEL_MTU=big\n")
            .expect_err("bad mtu");
        assert_eq!(e.line, 2);
        assert_eq!(e.key, "FLANNEL_MTU");
        assert!(SubnetEnv::parse("FLANNEL_IPMASQ=yes").is_err());
        assert!(SubnetEnv::parse("FLANNEL_SUBNET=300.1.1.1/24").is_err());
        assert!(SubnetEnv::parse("just words").is_err());
    }
}

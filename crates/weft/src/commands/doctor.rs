//! `weft doctor`: diagnoses the failures the article's troubleshooting
//! list (and flannel operators) keep meeting. Gathers facts from this host
//! and etcd (or, with `--kube-subnet-mgr`, the Kubernetes API and the
//! network config file); the judgements live in `weft_ops::doctor`. Exit
//! status: 0 all well, 1 warnings, 2 errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ipnet::IpNet;
use weft_core::config::{BackendConfig, NetConfig};
use weft_core::subnet_file::SubnetEnv;
use weft_etcd::Registry;
use weft_ops::doctor::{self, Finding};

use super::kube_args::KubeArgs;
use weft_proxy::cli::etcd_args::EtcdArgs;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    kube: KubeArgs,
    /// This host's Node, in Kubernetes mode (default: the host name)
    #[arg(long = "node-name", env = "NODE_NAME")]
    node_name: Option<String>,
    /// The agent's subnet file
    #[arg(long = "subnet-file", default_value = "/run/flannel/subnet.env")]
    subnet_file: PathBuf,
    /// Root of the files read for the kubelet/docker cgroup driver and
    /// leftover kubepods checks (its etc/, sys/fs/cgroup/ and proc/)
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// table or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
    /// wireguard backend: the agent's --wireguard-socket-dir
    #[arg(long = "wireguard-socket-dir", env = "FLANNELD_WIREGUARD_SOCKET_DIR", default_value = weft_agent::options::DEFAULT_WG_SOCKET_DIR)]
    wireguard_socket_dir: PathBuf,
    /// Where `weft proxy` serves /metrics (its --metrics-bind-address), to
    /// read the fallbacks it counted ("" to not ask)
    #[arg(long = "proxy-metrics-address", default_value = "127.0.0.1:10249")]
    proxy_metrics: String,
    /// Where the agent serves /metrics (its -healthz-ip:-healthz-port), to
    /// read the fallbacks it counted
    #[arg(long = "agent-metrics-address")]
    agent_metrics: Option<String>,
}

/// The `fast_path_fallbacks_total{path="…"}` samples of a daemon's
/// /metrics at `addr`; None when nothing answers there.
fn fallbacks_at(addr: &str) -> Option<Vec<(String, u64)>> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let timeout = std::time::Duration::from_secs(2);
    let mut c = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    c.set_read_timeout(Some(timeout)).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: doctor\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    c.take(4 << 20).read_to_string(&mut text).ok()?;
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (_, rest) = l.split_once("fast_path_fallbacks_total{path=\"")?;
            let (path, rest) = rest.split_once('"')?;
            let n = rest.rsplit(' ').next()?.trim().parse().ok()?;
            Some((path.to_string(), n))
        })
        .collect();
    Some(samples)
}

fn fast_path_facts(a: &DoctorArgs, ipt: Option<&weft_firewall::Iptables>) -> doctor::FastPathFacts {
    let mut f = doctor::FastPathFacts {
        libnftables: Some(weft_firewall::NftLibrary::open().is_some()),
        ..Default::default()
    };
    if ipt.is_some_and(|i| i.backend == weft_firewall::Backend::Legacy) {
        let read = weft_firewall::xtables::read_table(weft_firewall::xtables::Family::V4, "filter");
        f.xtables = Some(read.map(|_| ()).map_err(|e| e.to_string()));
    }
    let daemons = [
        (
            "weft proxy",
            Some(a.proxy_metrics.as_str()).filter(|s| !s.is_empty()),
        ),
        ("weft agent", a.agent_metrics.as_deref()),
    ];
    for (daemon, addr) in daemons {
        let Some(samples) = addr.and_then(fallbacks_at) else {
            continue;
        };
        f.asked.push(daemon.to_string());
        f.counted
            .extend(samples.into_iter().map(|(p, n)| (daemon.to_string(), p, n)));
    }
    f
}

/// What the lease store (etcd, or the Kubernetes API) told us.
#[derive(Default)]
struct StoreFacts {
    reached: Option<Result<(), String>>,
    config: Option<Result<NetConfig, String>>,
    /// Whether the subnet file's subnet has a lease, and that lease's VtepMAC.
    leased: Option<bool>,
    vtep_mac: Option<String>,
    /// Kubernetes mode: this host's Node and its lease, or what is wrong.
    node: Option<Result<String, String>>,
    /// Remote leases the agent leaves out, with why (None: not checked).
    refused: Option<Vec<String>>,
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

fn kube_facts(a: &DoctorArgs, subnet: Option<IpNet>) -> StoreFacts {
    let mut facts = StoreFacts::default();
    let config = a.kube.net_config().map_err(|e| format!("{e:#}"));
    let network = config.clone().and_then(|c| {
        weft_agent::network::Network::from_config(c)
            .map_err(|e| format!("--net-config-path {}: {e}", a.kube.flags.net_config_path))
    });
    facts.config = Some(match (&config, &network) {
        (Ok(_), Err(e)) => Err(e.clone()),
        _ => config,
    });
    let network = network.ok();
    let Some(rt) = runtime() else { return facts };
    let node = a
        .node_name
        .clone()
        .or_else(|| read_trim("/proc/sys/kernel/hostname"));
    rt.block_on(async {
        let client = match a.kube.client().await {
            Ok(c) => c,
            Err(e) => {
                facts.reached = Some(Err(format!("{e:#}")));
                return;
            }
        };
        let Some(network) = network else {
            facts.reached = Some(Ok(()));
            return;
        };
        let prefix = &a.kube.flags.kube_annotation_prefix;
        let listed = match weft_agent::source::kube::list_leases(client, prefix, &network).await {
            Ok(l) => l,
            Err(e) => {
                facts.reached = Some(Err(format!("{e:#}")));
                return;
            }
        };
        facts.reached = Some(Ok(()));
        let own = subnet.and_then(|subnet| {
            listed.leases.iter().find(|(_, l)| {
                l.key.v4.map(IpNet::V4) == Some(subnet.trunc())
                    || l.key.v6.map(IpNet::V6) == Some(subnet.trunc())
            })
        });
        if subnet.is_some() {
            facts.leased = Some(own.is_some());
        }
        let own_key = own.map(|(_, l)| l.key);
        let rules = match &own_key {
            Some(k) => weft_core::admission::Rules::from_pools_and_own(network.pools.v4.as_ref(), network.pools.v6.as_ref(), k),
            None => weft_core::admission::Rules::from_pools(network.pools.v4.as_ref(), network.pools.v6.as_ref()),
        };
        let named: Vec<(Option<String>, weft_core::lease::Lease)> =
            listed.leases.iter().map(|(n, l)| (Some(n.clone()), l.clone())).collect();
        facts.refused = Some(weft_agent::source::left_out(rules, own_key, &named));
        facts.vtep_mac = own
            .and_then(|(_, l)| {
                l.attrs
                    .vxlan_data("", subnet.is_some_and(|s| s.addr().is_ipv6()))
                    .ok()
            })
            .map(|d| d.vtep_mac.to_string());
        let Some(node) = node else {
            facts.node = Some(Err("this host's Node name is unknown: give --node-name (or NODE_NAME)".into()));
            return;
        };
        let held = listed.leases.iter().find(|(n, _)| *n == node);
        let unusable = listed.left_out.iter().find(|w| w.starts_with(&format!("Node {node}:")));
        facts.node = Some(match (held, unusable) {
            (Some((_, l)), _) => Ok(format!("Node {node} holds lease {} ({} via {})", l.key, l.attrs.backend(), l.attrs.public_ip)),
            (None, Some(why)) => Err(format!("{why} (the agent and its peers leave this Node out)")),
            (None, None) if listed.without_lease.contains(&node) => Err(format!(
                "Node {node} publishes no lease (no {prefix}/kube-subnet-manager annotation): is the agent running here with -kube-subnet-mgr?"
            )),
            (None, None) => Err(format!("there is no Node {node}: give this host's Node name with --node-name (or NODE_NAME)")),
        });
    });
    facts
}

fn etcd_facts(a: &DoctorArgs, subnet: Option<IpNet>) -> StoreFacts {
    let mut facts = StoreFacts::default();
    let Some(rt) = runtime() else {
        return facts;
    };
    rt.block_on(async {
        let etcd = match weft_etcd::connect(&a.etcd.options()).await {
            Ok(e) => e,
            Err(e) => {
                facts.reached = Some(Err(e.to_string()));
                return;
            }
        };
        let mut reg = Registry::new(etcd, &a.etcd.prefix);
        match reg.config().await {
            Err(e) => {
                facts.reached = Some(Err(e.to_string()));
                return;
            }
            Ok(None) => {}
            Ok(Some(text)) => {
                facts.config = Some(NetConfig::parse(&text).map_err(|e| e.to_string()))
            }
        }
        facts.reached = Some(Ok(()));
        let Ok(listing) = reg.list().await else {
            return;
        };
        let own = subnet.and_then(|subnet| {
            listing.leases.iter().find(|r| {
                r.key.v4.map(IpNet::V4) == Some(subnet.trunc())
                    || r.key.v6.map(IpNet::V6) == Some(subnet.trunc())
            })
        });
        if let Some(subnet) = subnet {
            facts.leased = Some(own.is_some());
            facts.vtep_mac = own
                .and_then(|r| r.attrs.vxlan_data("", subnet.addr().is_ipv6()).ok())
                .map(|d| d.vtep_mac.to_string());
        }
        if let Some(Ok(config)) = &facts.config {
            let rules =
                weft_core::admission::Rules::from_pools(config.ipv4.as_ref(), config.ipv6.as_ref());
            let leases: Vec<(Option<String>, weft_core::lease::Lease)> = listing
                .leases
                .iter()
                .map(|r| (None, r.clone().into_lease()))
                .collect();
            facts.refused = Some(weft_agent::source::left_out(
                rules,
                own.map(|r| r.key),
                &leases,
            ));
        }
    });
    facts
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kernel settings and the firewall: forwarding, the FORWARD policy, the
/// iptables backends and the fast paths.
fn firewall_findings(
    a: &DoctorArgs,
    config: Option<&NetConfig>,
    env: Option<&SubnetEnv>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.push(doctor::ip_forward(
        read_trim("/proc/sys/net/ipv4/ip_forward").as_deref(),
    ));
    let network = config
        .and_then(|c| c.ipv4.as_ref().map(|p| p.network()))
        .or(env.and_then(|e| e.network.map(IpNet::V4)));
    // the backend weft's agent and proxy would use, and what each backend holds
    let saved = weft_firewall::backend::saved_by_backend();
    let ipt = weft_firewall::backend::detect_with(weft_firewall::BackendChoice::Auto, &saved).ok();
    let save = ipt
        .as_ref()
        .map_or_else(|| "iptables-save".to_string(), |i| i.save(false));
    let filter = output_of(&save, &["-t", "filter"]);
    findings.push(doctor::forward_policy(filter.as_deref(), network));
    let saved: Vec<(&str, String)> = saved
        .into_iter()
        .map(|(b, text)| (b.name(), text))
        .collect();
    findings.push(doctor::iptables_backends(
        ipt.as_ref().map(ToString::to_string).as_deref(),
        &saved,
    ));
    findings.push(doctor::fast_paths(&fast_path_facts(a, ipt.as_ref())));

    findings
}

/// The devices: bridges and br_netfilter, docker0, the overlay device's
/// MTU, MAC and checksum offload, and wireguard's devices.
fn device_findings(
    a: &DoctorArgs,
    config: Option<&NetConfig>,
    env: Option<&SubnetEnv>,
    vtep_mac: Option<&str>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let links = weft_kernel::Netlink::open()
        .ok()
        .and_then(|mut nl| {
            let links = weft_kernel::list_links(&mut nl).ok()?;
            let ifaces = weft_kernel::list_interfaces(&mut nl).ok()?;
            Some((links, ifaces))
        })
        .unwrap_or_default();
    let (links, ifaces) = links;
    let bridges: Vec<String> = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("bridge"))
        .map(|l| l.name.clone())
        .collect();
    findings.push(doctor::bridge_netfilter(
        read_trim("/proc/sys/net/bridge/bridge-nf-call-iptables").as_deref(),
        &bridges,
    ));
    let docker0 = ifaces.iter().find(|i| i.name == "docker0");
    findings.push(doctor::docker_bridge(
        docker0.map(|d| (d.addrs.as_slice(), d.mtu)),
        env.and_then(|e| e.subnet.map(IpNet::V4)),
        env.and_then(|e| e.mtu),
    ));

    // The overlay device: MTU, MAC, checksum offload.
    let backend = config.map(|c| &c.backend);
    let (dev_name, overhead) = match backend {
        Some(BackendConfig::Vxlan(vx)) => (Some(format!("flannel.{}", vx.vni)), 50),
        Some(BackendConfig::Udp(_)) => (Some("flannel0".to_string()), 28),
        Some(BackendConfig::Wireguard(_)) => (Some("flannel-wg".to_string()), 80),
        Some(BackendConfig::Ipip(_)) => (Some("flannel.ipip".to_string()), 20),
        // the extension's commands make their own devices; alloc and ipsec have none
        Some(
            BackendConfig::HostGw
            | BackendConfig::Extension(_)
            | BackendConfig::Alloc
            | BackendConfig::Ipsec(_),
        ) => (None, 0),
        None => (Some("flannel.1".to_string()), 50),
    };
    let device = dev_name
        .as_ref()
        .and_then(|n| links.iter().find(|l| &l.name == n));
    let underlay = device
        .and_then(|d| d.vxlan.as_ref().and_then(|v| v.underlay))
        .and_then(|idx| ifaces.iter().find(|i| i.index == idx))
        .or_else(|| {
            // udp, or no underlay recorded: the interface with the default route
            let mut nl = weft_kernel::Netlink::open().ok()?;
            let idx = weft_kernel::default_route_oif(&mut nl, false).ok()??;
            ifaces.iter().find(|i| i.index == idx)
        });
    if dev_name.is_some() {
        findings.push(doctor::mtu(
            device.map(|d| (d.name.as_str(), d.mtu)),
            underlay.map(|u| (u.name.as_str(), u.mtu)),
            overhead,
            env.and_then(|e| e.mtu),
        ));
    }
    if let Some(BackendConfig::Wireguard(wg)) = backend {
        findings.extend(wireguard_findings(
            wg.mode,
            config.is_some_and(|c| c.ipv4.is_some()),
            config.is_some_and(|c| c.ipv6.is_some()),
            &a.wireguard_socket_dir,
        ));
    }
    if let Some(BackendConfig::Ipsec(_)) = backend {
        let charon = weft_agent::ipsec::find_charon().ok();
        let answering =
            std::os::unix::net::UnixStream::connect(weft_agent::ipsec::VICI_SOCKET).is_ok();
        findings.push(doctor::ipsec_charon(
            charon.as_ref().and_then(|p| p.to_str()),
            answering,
        ));
    }
    if matches!(backend, Some(BackendConfig::Vxlan(_)) | None) {
        let mac = device.and_then(|d| d.mac).map(|m| m.to_string());
        findings.push(doctor::vtep_mac(mac.as_deref(), vtep_mac));
        if let Some(d) = device {
            findings.push(doctor::checksum_offload(
                &d.name,
                output_of("ethtool", &["-k", &d.name]).as_deref(),
            ));
        }
    }

    findings
}

/// The host's kubelet and docker: cgroup drivers, and the article's
/// kubelet restart failure (QoS slices left behind).
fn host_findings(a: &DoctorArgs) -> Vec<Finding> {
    let mut findings = Vec::new();
    let docker_info = output_of("docker", &["info", "--format", "{{.CgroupDriver}}"]);
    let cgroup_v2 = a.root.join("sys/fs/cgroup/cgroup.controllers").exists();
    findings.push(
        match weft_ops::cgroup_driver::check(&a.root, docker_info.as_deref(), cgroup_v2) {
            Err(e) => Finding {
                check: "cgroup-driver",
                severity: doctor::Severity::Error,
                message: e.to_string(),
                fix: Some("fix the file named above".into()),
            },
            Ok(r) => Finding {
                check: "cgroup-driver",
                severity: match r.verdict {
                    weft_ops::Verdict::Match => doctor::Severity::Ok,
                    weft_ops::Verdict::NotApplicable => doctor::Severity::Skipped,
                    weft_ops::Verdict::Mismatch => doctor::Severity::Error,
                },
                message: r.summary.clone(),
                fix: r.fix.clone(),
            },
        },
    );
    // The article's kubelet restart failure: QoS slices left behind.
    findings.push(weft_ops::kubepods::finding(&weft_ops::kubepods::scan(
        &a.root,
    )));
    findings
}

pub fn gather(a: &DoctorArgs) -> Vec<Finding> {
    let mut findings = Vec::new();
    let path = a.subnet_file.display().to_string();
    let file = std::fs::read_to_string(&a.subnet_file).map_err(|e| e.to_string());
    let env = file.as_ref().ok().and_then(|t| SubnetEnv::parse(t).ok());
    let subnet = env
        .as_ref()
        .and_then(|e| e.subnet.map(IpNet::V4).or(e.ipv6_subnet.map(IpNet::V6)));

    // The lease store (etcd, or the Kubernetes API) and the config.
    let kube = a.kube.flags.kube_subnet_mgr;
    let facts = if kube {
        kube_facts(a, subnet)
    } else {
        etcd_facts(a, subnet)
    };
    let config = facts.config.as_ref().and_then(|c| c.as_ref().ok());
    let described = facts.config.as_ref().map(|c| match c {
        Ok(c) => Ok(format!(
            "network {}, backend {}",
            c.ipv4
                .as_ref()
                .map(|p| p.network().to_string())
                .or(c.ipv6.as_ref().map(|p| p.network().to_string()))
                .unwrap_or_default(),
            c.backend.type_name()
        )),
        Err(e) => Err(e.clone()),
    });
    let reached = facts.reached.clone().unwrap_or(Err("not tried".into()));
    if kube {
        findings.push(doctor::kube(
            reached,
            described,
            &a.kube.flags.net_config_path,
            facts.node.clone().unwrap_or(Err("not read".into())),
        ));
    } else {
        let key = format!("{}/config", a.etcd.prefix.trim_end_matches('/'));
        findings.push(doctor::etcd(reached, described, &key));
    }
    findings.push(doctor::refused_leases(
        facts.refused.as_deref(),
        if kube {
            "correct the Node's spec.podCIDRs or its flannel annotations, or delete the Node"
        } else {
            "correct or delete the key under <prefix>/subnets/ in etcd (etcdctl del <prefix>/subnets/<lease>)"
        },
    ));
    findings.push(doctor::subnet_file(
        &path,
        file.as_ref().map(|_| ()).map_err(Clone::clone),
        subnet,
        facts.leased,
        if kube {
            "the Nodes' annotations"
        } else {
            "etcd"
        },
    ));

    findings.extend(firewall_findings(a, config, env.as_ref()));
    findings.extend(device_findings(
        a,
        config,
        env.as_ref(),
        facts.vtep_mac.as_deref(),
    ));
    findings.extend(host_findings(a));
    findings
}

pub fn main(a: DoctorArgs) -> ExitCode {
    let findings = gather(&a);
    if a.output == "json" {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("weft: {e}"),
        }
    } else {
        print!("{}", doctor::render(&findings));
    }
    ExitCode::from(doctor::exit_code(&findings))
}

/// The wireguard backend's devices: which implementation, and peers.
fn wireguard_findings(
    mode: weft_core::config::WgMode,
    v4: bool,
    v6: bool,
    socket_dir: &std::path::Path,
) -> Vec<Finding> {
    let Ok(mut nl) = weft_kernel::Netlink::open() else {
        return Vec::new();
    };
    weft_agent::wireguard::inspect(&mut nl, mode, v4, v6, socket_dir)
        .into_iter()
        .map(|r| match (r.implementation, r.state) {
            (what, Ok(s)) => Finding {
                check: "wireguard",
                severity: doctor::Severity::Ok,
                message: format!(
                    "{}: {what} WireGuard, port {}, {} peers, {} with a handshake",
                    r.device, s.listen_port, s.peers, s.handshakes
                ),
                fix: None,
            },
            (_, Err(e)) => Finding {
                check: "wireguard",
                severity: doctor::Severity::Error,
                message: format!("{}: {e}", r.device),
                fix: Some(
                    "start the agent (weft agent / flanneld) with the wireguard backend".into(),
                ),
            },
        })
        .collect()
}

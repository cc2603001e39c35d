//! `weft doctor`'s judgements: each check turns facts gathered from the
//! host (sysctls, firewall text, devices, the subnet file, etcd) into a
//! finding with a verdict and, when something is wrong, a fix line. The
//! facts are gathered by the command; everything here is pure.

use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    /// Not checked (tool or file absent), no verdict.
    Skipped,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Ok => "ok",
            Severity::Skipped => "skip",
            Severity::Warning => "WARN",
            Severity::Error => "FAIL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            severity: Severity::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub(crate) fn skip(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            severity: Severity::Skipped,
            message: message.into(),
            fix: None,
        }
    }

    fn bad(
        check: &'static str,
        severity: Severity,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            severity,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// 0 when nothing is wrong, 1 for warnings, 2 for errors.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}

/// One line per finding, the fix indented under it.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!("[{:>4}] {}: {}\n", f.severity, f.check, f.message));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("       fix: {fix}\n"));
        }
    }
    out
}

/// Remote leases the agent leaves out because they fail the network
/// config's checks (`None`: the leases could not be read); `fix` says
/// where such a lease is corrected.
pub fn refused_leases(refused: Option<&[String]>, fix: &str) -> Finding {
    const C: &str = "leases";
    match refused {
        None => Finding::skip(C, "the leases could not be read"),
        Some([]) => Finding::ok(C, "every remote lease passes the network config's checks"),
        Some(lines) => Finding::bad(
            C,
            Severity::Warning,
            format!(
                "{} lease(s) left out by the agent (nothing is routed for them): {}",
                lines.len(),
                lines.join("; ")
            ),
            fix,
        ),
    }
}

/// What was found about weft's fast paths on this host.
#[derive(Debug, Clone, Default)]
pub struct FastPathFacts {
    /// libnftables loads (None: not asked; the nftables modes use it).
    pub libnftables: Option<bool>,
    /// On the legacy backend: whether weft reads legacy tables from the
    /// kernel itself (Err: why not).
    pub xtables: Option<Result<(), String>>,
    /// Fallbacks a running daemon counted: (daemon, path, count) from its
    /// /metrics, for every daemon that answered.
    pub counted: Vec<(String, String, u64)>,
    /// Daemons whose metrics were asked for and that answered.
    pub asked: Vec<String>,
}

/// Whether the fast paths (libnftables, weft's x_tables reader and
/// writer) work here, and whether a running agent or proxy fell back from
/// them to the slower tools.
pub fn fast_paths(f: &FastPathFacts) -> Finding {
    const C: &str = "fast-paths";
    let mut bad = Vec::new();
    let mut fix = Vec::new();
    for (daemon, path, n) in f.counted.iter().filter(|(_, _, n)| *n > 0) {
        bad.push(format!("{daemon} fell back from {path} {n} time(s)"));
    }
    if f.libnftables == Some(false) {
        bad.push("libnftables.so.1 does not load: nftables syncs run an nft process each".into());
        fix.push("apt install libnftables1 (dnf install nftables)");
    }
    if let Some(Err(why)) = &f.xtables {
        bad.push(format!("weft cannot read legacy tables from the kernel ({why}): iptables-legacy-save and -restore are used instead"));
    }
    if bad.is_empty() {
        let mut ok = Vec::new();
        if f.libnftables == Some(true) {
            ok.push("libnftables loads");
        }
        if matches!(f.xtables, Some(Ok(()))) {
            ok.push("legacy tables are read and written by weft");
        }
        let asked = if f.asked.is_empty() {
            String::new()
        } else {
            format!("; no fallbacks counted by {}", f.asked.join(", "))
        };
        return Finding::ok(
            C,
            format!(
                "{}{asked}",
                if ok.is_empty() {
                    "nothing to check".to_string()
                } else {
                    ok.join(", ")
                }
            ),
        );
    }
    if !f.counted.is_empty() && fix.is_empty() {
        fix.push("the daemon's log names the first fallback's reason (\"told once\")");
    }
    Finding::bad(C, Severity::Warning, bad.join("; "), fix.join("; "))
}

/// `net.ipv4.ip_forward` (value of the /proc file, `None` if unreadable).
pub fn ip_forward(value: Option<&str>) -> Finding {
    const C: &str = "ip-forward";
    match value.map(str::trim) {
        Some("1") => Finding::ok(C, "net.ipv4.ip_forward = 1"),
        Some(v) => Finding::bad(
            C,
            Severity::Error,
            format!(
                "net.ipv4.ip_forward = {v}: this host drops every packet between pods and hosts"
            ),
            "sysctl -w net.ipv4.ip_forward=1 (and set it in /etc/sysctl.d/ to survive reboots)",
        ),
        None => Finding::skip(C, "cannot read /proc/sys/net/ipv4/ip_forward"),
    }
}

/// The filter table's FORWARD policy against the cluster network: a DROP
/// policy (docker ≥ 1.13 sets one) needs accept rules for pod traffic.
/// `filter` is `iptables-save -t filter` output.
pub fn forward_policy(filter: Option<&str>, network: Option<IpNet>) -> Finding {
    const C: &str = "forward-policy";
    let Some(filter) = filter else {
        return Finding::skip(
            C,
            "no iptables-save on this host: the FORWARD policy is nftables', not checked",
        );
    };
    let drop = filter.lines().any(|l| l.starts_with(":FORWARD DROP"));
    if !drop {
        return Finding::ok(C, "FORWARD policy is ACCEPT");
    }
    let Some(net) = network else {
        return Finding::skip(C, "FORWARD policy is DROP; the cluster network is unknown");
    };
    let n = net.to_string();
    let reached = chains_reached_from("FORWARD", filter);
    let accepts = filter.lines().any(|l| {
        let chain = l
            .strip_prefix("-A ")
            .and_then(|r| r.split_whitespace().next());
        chain.is_some_and(|c| reached.contains(c))
            && l.ends_with("-j ACCEPT")
            && (l.contains(&format!("-s {n}")) || l.contains(&format!("-d {n}")))
    });
    if accepts {
        Finding::ok(
            C,
            format!("FORWARD policy is DROP, but traffic of {n} is accepted"),
        )
    } else {
        Finding::bad(
            C,
            Severity::Error,
            format!("FORWARD policy is DROP and nothing accepts {n}: pods on different hosts cannot talk"),
            format!("run the agent with -iptables-forward-rules (default), or iptables -A FORWARD -s {n} -j ACCEPT; iptables -A FORWARD -d {n} -j ACCEPT"),
        )
    }
}

/// `start` and every chain its rules jump or go to, transitively, in
/// `iptables-save` output: an accept rule counts only where a packet
/// traversing `start` can meet it.
fn chains_reached_from<'a>(start: &'a str, saved: &'a str) -> std::collections::BTreeSet<&'a str> {
    let mut reached = std::collections::BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(chain) = todo.pop() {
        let prefix = format!("-A {chain} ");
        for rule in saved.lines().filter(|l| l.starts_with(&prefix)) {
            let mut words = rule.split_whitespace();
            while let Some(w) = words.next() {
                if w == "-j" || w == "-g" {
                    if let Some(target) = words.next() {
                        if reached.insert(target) {
                            todo.push(target);
                        }
                    }
                }
            }
        }
    }
    reached
}

/// br_netfilter and `net.bridge.bridge-nf-call-iptables`: without them,
/// service rules never see traffic between pods on the same bridge.
/// `value` is the sysctl (None when br_netfilter is not loaded).
pub fn bridge_netfilter(value: Option<&str>, bridges: &[String]) -> Finding {
    const C: &str = "bridge-netfilter";
    if bridges.is_empty() {
        return Finding::ok(C, "no bridge on this host");
    }
    let list = bridges.join(", ");
    match value.map(str::trim) {
        Some("1") => Finding::ok(C, "net.bridge.bridge-nf-call-iptables = 1"),
        Some(v) => Finding::bad(
            C,
            Severity::Warning,
            format!("net.bridge.bridge-nf-call-iptables = {v} with bridge(s) {list}: Service IPs fail between pods on this host"),
            "sysctl -w net.bridge.bridge-nf-call-iptables=1",
        ),
        None => Finding::bad(
            C,
            Severity::Warning,
            format!("br_netfilter is not loaded and {list} exist: Service IPs fail between pods on this host"),
            "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 (and list it in /etc/modules-load.d/)",
        ),
    }
}

/// docker0 against the subnet file: docker must be started with
/// `--bip=FLANNEL_SUBNET --mtu=FLANNEL_MTU` (mk-docker-opts.sh), else its
/// containers get addresses no other host routes to.
pub fn docker_bridge(
    docker0: Option<(&[IpNet], u32)>,
    subnet: Option<IpNet>,
    mtu: Option<u32>,
) -> Finding {
    const C: &str = "docker-bridge";
    let Some((addrs, dmtu)) = docker0 else {
        return Finding::ok(C, "no docker0 on this host");
    };
    let Some(subnet) = subnet else {
        return Finding::skip(
            C,
            "docker0 exists, but the subnet file has no FLANNEL_SUBNET",
        );
    };
    let fix = "run `weft docker-opts` (mk-docker-opts.sh) before docker, pass its DOCKER_OPTS (--bip, --mtu) to dockerd, restart docker";
    let inside = addrs.iter().any(|a| subnet.trunc().contains(&a.addr()));
    if !inside {
        let have: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        return Finding::bad(
            C,
            Severity::Error,
            format!("docker0 has {} but FLANNEL_SUBNET is {subnet}: containers get addresses no other host routes to", if have.is_empty() { "no address".into() } else { have.join(", ") }),
            fix,
        );
    }
    match mtu {
        Some(m) if dmtu > m => Finding::bad(
            C,
            Severity::Error,
            format!("docker0 MTU {dmtu} is larger than FLANNEL_MTU {m}: large packets between hosts are lost"),
            fix,
        ),
        _ => Finding::ok(C, format!("docker0 is inside {subnet}")),
    }
}

/// The overlay device's MTU against the underlay and the subnet file.
/// `overhead`: encapsulation bytes (50 for vxlan over IPv4).
pub fn mtu(
    device: Option<(&str, u32)>,
    underlay: Option<(&str, u32)>,
    overhead: u32,
    file_mtu: Option<u32>,
) -> Finding {
    const C: &str = "mtu";
    let (Some((dev, dmtu)), Some((under, umtu))) = (device, underlay) else {
        return Finding::skip(C, "no overlay device or underlay interface found");
    };
    if dmtu + overhead > umtu {
        return Finding::bad(
            C,
            Severity::Error,
            format!("{dev} MTU {dmtu} + {overhead} bytes of encapsulation exceeds {under} MTU {umtu}: large packets are dropped"),
            format!("ip link set {dev} mtu {} (restart the agent: it sets {under} MTU - {overhead})", umtu.saturating_sub(overhead)),
        );
    }
    if let Some(f) = file_mtu.filter(|f| *f > dmtu) {
        return Finding::bad(
            C,
            Severity::Error,
            format!("FLANNEL_MTU {f} is larger than {dev} MTU {dmtu}: pods send packets the overlay cannot carry"),
            "restart the agent so it rewrites the subnet file, then restart docker / recreate pods",
        );
    }
    Finding::ok(C, format!("{dev} MTU {dmtu} fits {under} MTU {umtu}"))
}

/// The vxlan device's MAC against the VtepMAC this host published.
pub fn vtep_mac(device: Option<&str>, lease: Option<&str>) -> Finding {
    const C: &str = "vtep-mac";
    match (device, lease) {
        (Some(d), Some(l)) if d.eq_ignore_ascii_case(l) => Finding::ok(C, format!("device MAC {d} matches the lease")),
        (Some(d), Some(l)) => Finding::bad(
            C,
            Severity::Error,
            format!("device MAC {d} differs from VtepMAC {l} in this host's lease: peers send to a MAC nobody has"),
            "restart the agent (it re-publishes the device's MAC), or delete the device and restart it",
        ),
        _ => Finding::skip(C, "no vxlan device or no vxlan lease for this host"),
    }
}

/// `ethtool -k <vxlan device>` output: with checksum offload on, some
/// kernels emit vxlan packets with bad UDP checksums after NAT (flannel's
/// known 63-second delay / dropped service traffic).
pub fn checksum_offload(device: &str, ethtool: Option<&str>) -> Finding {
    const C: &str = "checksum-offload";
    let Some(text) = ethtool else {
        return Finding::skip(C, "ethtool is not installed or the device is missing");
    };
    let on = text
        .lines()
        .any(|l| l.trim_start().starts_with("tx-checksum-ip-generic: on"));
    if on {
        Finding::bad(
            C,
            Severity::Warning,
            format!("{device} has tx-checksum-ip-generic on: service traffic through vxlan may carry bad UDP checksums"),
            format!("ethtool -K {device} tx-checksum-ip-generic off"),
        )
    } else {
        Finding::ok(C, format!("{device} checksum offload is off"))
    }
}

/// The ipsec backend's IKE daemon: strongSwan's charon installed (the
/// agent starts it) and answering on its VICI socket.
pub fn ipsec_charon(charon: Option<&str>, answering: bool) -> Finding {
    const C: &str = "ipsec-charon";
    match (charon, answering) {
        (_, true) => Finding::ok(C, "charon answers on /var/run/charon.vici"),
        (None, false) => Finding::bad(
            C,
            Severity::Error,
            "no charon (strongSwan's IKE daemon) on this host: the ipsec backend cannot negotiate keys",
            "install strongSwan (Debian: apt install strongswan-charon strongswan-swanctl libstrongswan-standard-plugins)",
        ),
        (Some(path), false) => Finding::bad(
            C,
            Severity::Warning,
            format!("{path} is installed but nothing answers on /var/run/charon.vici: the agent starts it"),
            "start the agent; its log says whether charon started",
        ),
    }
}

/// The subnet file: present, parseable, and matching a lease in `store`
/// (etcd, or the Nodes' annotations).
pub fn subnet_file(
    path: &str,
    read: Result<(), String>,
    subnet: Option<IpNet>,
    leased: Option<bool>,
    store: &str,
) -> Finding {
    const C: &str = "subnet-file";
    match read {
        Ok(()) => {}
        Err(e) => {
            return Finding::bad(
                C,
                Severity::Error,
                format!("{path}: {e}: docker and the CNI plugin have no subnet to use"),
                "start the agent (weft agent / flanneld) and wait for it to write the file",
            )
        }
    }
    let Some(subnet) = subnet else {
        return Finding::bad(
            C,
            Severity::Error,
            format!("{path} has no usable FLANNEL_SUBNET"),
            "restart the agent so it rewrites the file",
        );
    };
    match leased {
        Some(true) => Finding::ok(C, format!("{path}: {subnet}, leased in {store}")),
        Some(false) => Finding::bad(
            C,
            Severity::Error,
            format!("{path} says {subnet}, but {store} holds no lease for it (stale file: another host may take it)"),
            "restart the agent: it re-acquires a lease and rewrites the file; then restart docker",
        ),
        None => Finding::skip(C, format!("{path}: {subnet} ({store} not reachable to confirm)")),
    }
}

const BUILTIN_CHAINS: [&str; 5] = ["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

/// Who writes chains of a name: the group a chain is listed under.
fn chain_group(chain: &str) -> &'static str {
    if chain.starts_with("KUBE-") {
        "KUBE-* (kube-proxy)"
    } else if chain.starts_with("FLANNEL") {
        "FLANNEL-* (flanneld)"
    } else if chain.starts_with("DOCKER") {
        "DOCKER* (docker)"
    } else if chain.starts_with("CNI-") {
        "CNI-* (CNI plugins)"
    } else {
        "other chains"
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// What one backend's `iptables-save` holds, in words: its rule count and
/// its own chains by the tool that writes them (a built-in chain's rule
/// that only jumps to such a chain belongs to it).
fn backend_summary(saved: &str) -> (usize, String) {
    let declared: std::collections::BTreeSet<&str> = saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| !BUILTIN_CHAINS.contains(c))
        .collect();
    let mut chains = declared.clone();
    let (mut rules, mut builtin_rules) = (0, 0);
    for rest in saved.lines().filter_map(|l| l.strip_prefix("-A ")) {
        rules += 1;
        let chain = rest.split(' ').next().unwrap_or("");
        if !BUILTIN_CHAINS.contains(&chain) {
            chains.insert(chain);
            continue;
        }
        let target = rest
            .split_once(" -j ")
            .map(|(_, t)| t.split(' ').next().unwrap_or(""));
        if !target.is_some_and(|t| declared.contains(t)) {
            builtin_rules += 1;
        }
    }
    let mut groups: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for c in chains {
        *groups.entry(chain_group(c)).or_default() += 1;
    }
    let mut parts: Vec<String> = groups
        .into_iter()
        .map(|(g, n)| format!("{g}: {}", plural(n, "chain")))
        .collect();
    if builtin_rules > 0 {
        parts.push(format!(
            "{} in built-in chains",
            plural(builtin_rules, "rule")
        ));
    }
    (rules, parts.join(", "))
}

/// The iptables backends: which one weft uses and why (`in_use`), and
/// whether rules are split across both. `saved` is each installed
/// backend's name and `iptables-save` output (IPv4 and IPv6). Rules in
/// both backends (say kube-proxy in one, docker or flanneld in the other)
/// make Services work on some nodes only.
pub fn iptables_backends(in_use: Option<&str>, saved: &[(&str, String)]) -> Finding {
    const C: &str = "iptables-backend";
    let used = in_use.map_or(String::new(), |u| format!("weft uses {u}; "));
    let holding: Vec<(&str, usize, String)> = saved
        .iter()
        .map(|(name, text)| {
            let (rules, groups) = backend_summary(text);
            (*name, rules, groups)
        })
        .filter(|(_, rules, _)| *rules > 0)
        .collect();
    match holding.as_slice() {
        // a host with nftables only (RHEL/Rocky 10): the agent picks
        // nftables by itself, the proxy too unless told --proxy-mode=iptables
        [] if saved.is_empty() => Finding::ok(
            C,
            format!("{used}no iptables programs on this host: weft's agent and proxy use nftables"),
        ),
        [] => Finding::ok(C, format!("{used}no iptables rules in any backend")),
        [(name, rules, groups)] => Finding::ok(
            C,
            format!(
                "{used}all {} are in {name} ({groups})",
                plural(*rules, "iptables rule")
            ),
        ),
        many => {
            let split = many
                .iter()
                .map(|(name, rules, groups)| {
                    format!("{name} holds {} ({groups})", plural(*rules, "rule"))
                })
                .collect::<Vec<_>>()
                .join("; ");
            Finding::bad(
                C,
                Severity::Warning,
                format!("{used}iptables rules are split across backends: {split}. Packets meet both rule sets, so Services can work on some nodes only"),
                "run every tool on one backend: point iptables at it (update-alternatives --set iptables /usr/sbin/iptables-nft, or -legacy), restart kube-proxy/weft proxy, docker and the agent (or pass --iptables-backend), then flush the other backend's tables",
            )
        }
    }
}

/// etcd reachability and the network config.
pub fn etcd(
    reached: Result<(), String>,
    config: Option<Result<String, String>>,
    key: &str,
) -> Finding {
    const C: &str = "etcd";
    if let Err(e) = reached {
        return Finding::bad(
            C,
            Severity::Error,
            format!(
                "etcd is not reachable: {}",
                e.strip_prefix("etcd: ").unwrap_or(&e)
            ),
            "check --etcd-endpoints, that etcd runs (systemctl status etcd), TLS files and firewall",
        );
    }
    match config {
        None => Finding::bad(
            C,
            Severity::Error,
            format!("no network config at {key}"),
            format!("etcdctl put {key} '{{\"Network\": \"172.30.0.0/16\", \"SubnetLen\": 24, \"Backend\": {{\"Type\": \"vxlan\"}}}}'"),
        ),
        Some(Err(e)) => Finding::bad(C, Severity::Error, format!("{key}: {e}"), format!("fix the JSON at {key}")),
        Some(Ok(desc)) => Finding::ok(C, format!("reachable; {key}: {desc}")),
    }
}

/// Kubernetes mode: the API server reachable, the network config file,
/// and this host's Node holding its lease (`node`: what it says, or what
/// is wrong with it).
pub fn kube(
    reached: Result<(), String>,
    config: Option<Result<String, String>>,
    config_path: &str,
    node: Result<String, String>,
) -> Finding {
    const C: &str = "kubernetes";
    if let Err(e) = reached {
        return Finding::bad(
            C,
            Severity::Error,
            format!("the Kubernetes API is not reachable: {e}"),
            "check --kubeconfig-file / --kube-api-url (FLANNELD_KUBECONFIG_FILE, FLANNELD_KUBE_API_URL), the API server and its certificate",
        );
    }
    match config {
        None => {
            return Finding::bad(
                C,
                Severity::Error,
                format!("no network config at {config_path}"),
                "mount the kube-flannel-cfg ConfigMap's net-conf.json there (--net-config-path)",
            )
        }
        Some(Err(e)) => return Finding::bad(C, Severity::Error, e, format!("fix {config_path}")),
        Some(Ok(_)) => {}
    }
    match node {
        Ok(desc) => Finding::ok(C, format!("API reachable; {config_path} read; {desc}")),
        Err(e) => Finding::bad(
            C,
            Severity::Error,
            e,
            "start the agent with -kube-subnet-mgr on this host (the DaemonSet's pod); check the controller-manager assigns pod ranges (--allocate-node-cidrs)",
        ),
    }
}

#[cfg(test)]
mod tests;

//! `weft proxy --config FILE`: kube-proxy's `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`), so a kube-proxy DaemonSet's
//! ConfigMap works unchanged. As in kube-proxy, the file's settings win
//! over flags, except `--hostname-override` and `-v`; settings the file
//! leaves out keep the flag's value. Unknown fields are refused (kube-proxy
//! decodes strictly), naming the field; fields weft has no use for
//! (conntrack tuning, profiling, logging) are accepted and left alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_yaml::{Mapping, Value};

use weft_core::duration::parse as parse_duration;

/// What the file sets (each `None` when absent or empty).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    pub kubeconfig: Option<PathBuf>,
    pub hostname_override: Option<String>,
    pub bind_address: Option<std::net::IpAddr>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    pub mode: Option<String>,
    pub cluster_cidr: Vec<ipnet::IpNet>,
    pub node_port_addresses: Option<Vec<String>>,
    pub masquerade_all: Option<bool>,
    pub localhost_node_ports: Option<bool>,
    pub sync_period: Option<std::time::Duration>,
    pub min_sync_period: Option<std::time::Duration>,
}

/// Fields accepted and not used by weft.
const IGNORED: [&str; 12] = [
    "featureGates",
    "logging",
    "bindAddressHardFail",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "ipvs",
    "winkernel",
    "detectLocal",
    "oomScoreAdj",
    "conntrack",
    "configSyncPeriod",
    "portRange",
];

struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("--config {}: {field}: {msg}", self.file.display())
    }

    fn map<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Mapping> {
        v.as_mapping()
            .ok_or_else(|| self.err(field, "expected a mapping"))
    }

    fn string(&self, v: &Value, field: &str) -> Result<Option<String>> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(self.err(field, "expected a string")),
        }
    }

    fn boolean(&self, v: &Value, field: &str) -> Result<Option<bool>> {
        match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            _ => Err(self.err(field, "expected true or false")),
        }
    }

    fn duration(&self, v: &Value, field: &str) -> Result<Option<std::time::Duration>> {
        match self.string(v, field)? {
            None => Ok(None),
            Some(s) => parse_duration(&s).map(Some).map_err(|e| self.err(field, e)),
        }
    }

    /// Checks that `m` holds only `known` keys.
    fn only(&self, m: &Mapping, prefix: &str, known: &[&str]) -> Result<()> {
        for k in m.keys() {
            let name = k.as_str().unwrap_or("?");
            if !known.contains(&name) {
                bail!(self.err(
                    &format!("{prefix}{name}"),
                    "unknown field (kube-proxy's KubeProxyConfiguration has no such setting)"
                ));
            }
        }
        Ok(())
    }
}

/// Reads a `KubeProxyConfiguration` file.
pub fn read(file: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow!("--config {}: {e}", file.display()))?;
    parse(&text, file)
}

/// Parses a `KubeProxyConfiguration`'s text (`file` names it in errors).
pub fn parse(text: &str, file: &Path) -> Result<FileConfig> {
    let r = Reader { file };
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|e| anyhow!("--config {}: not YAML: {e}", file.display()))?;
    let top = r.map(&doc, "(document)")?;
    let get = |k: &str| top.get(k).unwrap_or(&Value::Null);
    check_document(&r, top)?;

    let mut c = FileConfig {
        kubeconfig: kubeconfig(&r, get("clientConnection"))?,
        ..FileConfig::default()
    };
    c.hostname_override = r.string(get("hostnameOverride"), "hostnameOverride")?;
    c.bind_address = match r.string(get("bindAddress"), "bindAddress")? {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| r.err("bindAddress", format!("{s:?} is not an IP address")))?,
        ),
    };
    c.healthz_bind_address = r.string(get("healthzBindAddress"), "healthzBindAddress")?;
    c.metrics_bind_address = r.string(get("metricsBindAddress"), "metricsBindAddress")?;
    c.mode = r.string(get("mode"), "mode")?;
    if let Some(m) = c.mode.as_deref() {
        if m != "iptables" && m != "nftables" {
            bail!(r.err(
                "mode",
                format!("{m:?}: weft proxy has iptables and nftables")
            ));
        }
    }
    match r
        .string(get("detectLocalMode"), "detectLocalMode")?
        .as_deref()
    {
        None | Some("ClusterCIDR") => {}
        Some(o) => bail!(r.err(
            "detectLocalMode",
            format!("{o:?}: weft proxy tells pod traffic by clusterCIDR only")
        )),
    }
    if let Some(s) = r.string(get("clusterCIDR"), "clusterCIDR")? {
        for part in s.split(',') {
            c.cluster_cidr.push(
                part.trim()
                    .parse()
                    .map_err(|_| r.err("clusterCIDR", format!("{part:?} is not a CIDR")))?,
            );
        }
    }
    match get("nodePortAddresses") {
        Value::Null => {}
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let field = format!("nodePortAddresses[{i}]");
                out.extend(r.string(v, &field)?);
            }
            c.node_port_addresses = Some(out);
        }
        _ => bail!(r.err("nodePortAddresses", "expected a list")),
    }
    mode_sections(&r, top, &mut c)?;
    Ok(c)
}

/// A field of `m`, null when absent.
fn get<'m>(m: &'m Mapping, k: &str) -> &'m Value {
    m.get(k).unwrap_or(&Value::Null)
}

/// The document is a KubeProxyConfiguration naming only fields weft knows
/// or knowingly ignores.
fn check_document(r: &Reader<'_>, top: &Mapping) -> Result<()> {
    match (
        r.string(get(top, "apiVersion"), "apiVersion")?.as_deref(),
        r.string(get(top, "kind"), "kind")?.as_deref(),
    ) {
        (Some("kubeproxy.config.k8s.io/v1alpha1"), Some("KubeProxyConfiguration")) => {}
        (api, kind) => bail!(r.err(
            "apiVersion/kind",
            format!(
                "{api:?}/{kind:?}: expected kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration"
            )
        )),
    }
    let mut known = vec![
        "apiVersion",
        "kind",
        "clientConnection",
        "hostnameOverride",
        "bindAddress",
        "healthzBindAddress",
        "metricsBindAddress",
        "mode",
        "iptables",
        "nftables",
        "detectLocalMode",
        "clusterCIDR",
        "nodePortAddresses",
    ];
    known.extend(IGNORED);
    r.only(top, "", &known)
}

/// `clientConnection.kubeconfig`.
fn kubeconfig(r: &Reader<'_>, cc: &Value) -> Result<Option<PathBuf>> {
    let Value::Mapping(cc) = cc else {
        return Ok(None);
    };
    r.only(
        cc,
        "clientConnection.",
        &[
            "kubeconfig",
            "acceptContentTypes",
            "contentType",
            "qps",
            "burst",
        ],
    )?;
    Ok(
        r.string(get(cc, "kubeconfig"), "clientConnection.kubeconfig")?
            .map(PathBuf::from),
    )
}

/// The `iptables` and `nftables` sections: each is checked; the mode's
/// own gives masqueradeAll and the sync periods, as kube-proxy reads it.
fn mode_sections(r: &Reader<'_>, top: &Mapping, c: &mut FileConfig) -> Result<()> {
    let section = if c.mode.as_deref() == Some("nftables") {
        "nftables"
    } else {
        "iptables"
    };
    for name in ["iptables", "nftables"] {
        let Value::Mapping(m) = get(top, name) else {
            continue;
        };
        let field = |k: &str| format!("{name}.{k}");
        let mut fields = vec![
            "masqueradeBit",
            "masqueradeAll",
            "syncPeriod",
            "minSyncPeriod",
        ];
        if name == "iptables" {
            fields.push("localhostNodePorts");
        }
        r.only(m, &format!("{name}."), &fields)?;
        let at = |k: &str| m.get(k).unwrap_or(&Value::Null);
        let masq = r.boolean(at("masqueradeAll"), &field("masqueradeAll"))?;
        let sync = r.duration(at("syncPeriod"), &field("syncPeriod"))?;
        let min_sync = r.duration(at("minSyncPeriod"), &field("minSyncPeriod"))?;
        match at("masqueradeBit") {
            Value::Null => {}
            Value::Number(n) if n.as_i64() == Some(14) => {}
            _ => bail!(r.err(
                &field("masqueradeBit"),
                "weft proxy marks with bit 14 (0x4000), the default"
            )),
        }
        if name == "iptables" {
            c.localhost_node_ports =
                r.boolean(at("localhostNodePorts"), &field("localhostNodePorts"))?;
        }
        if name == section {
            c.masquerade_all = masq;
            c.sync_period = sync;
            c.min_sync_period = min_sync;
        }
    }
    Ok(())
}

/// An address flag's value: `""` (off) or `host:port`; kube-proxy also
/// takes a bare IP with its default port.
pub fn bind_address(value: &str, default_port: u16, flag: &str) -> Result<Option<SocketAddr>> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Ok(Some(SocketAddr::new(ip, default_port)));
    }
    bail!("{flag} {value:?}: expected IP:port, an IP, or \"\" to turn it off")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig> {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("config.conf");
        std::fs::write(&f, text).expect("write");
        read(&f)
    }

    #[test]
    fn kube_proxys_own_configmap_reads() {
        let c = parse(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: \"\"
  burst: 0
  contentType: \"\"
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
enableProfiling: false
healthzBindAddress: \"\"
hostnameOverride: \"\"
iptables:
  localhostNodePorts: false
  masqueradeAll: true
  masqueradeBit: null
  minSyncPeriod: 1s
  syncPeriod: 1m0s
ipvs:
  strictARP: false
metricsBindAddress: 0.0.0.0:10249
mode: iptables
nodePortAddresses: [primary]
",
        )
        .expect("valid");
        assert_eq!(
            c.kubeconfig.as_deref(),
            Some(Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
        );
        assert_eq!(c.masquerade_all, Some(true));
        assert_eq!(c.localhost_node_ports, Some(false));
        assert_eq!(c.sync_period, Some(std::time::Duration::from_secs(60)));
        assert_eq!(c.min_sync_period, Some(std::time::Duration::from_secs(1)));
        assert_eq!(c.cluster_cidr.len(), 1);
        assert_eq!(c.node_port_addresses, Some(vec!["primary".to_string()]));
        assert_eq!(c.healthz_bind_address, None);
        assert_eq!(c.metrics_bind_address.as_deref(), Some("0.0.0.0:10249"));
    }

    #[test]
    fn bad_fields_are_named() {
        let head = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";
        for (body, want) in [
            (
                "iptables: {syncPeriod: soon}\n",
                "iptables.syncPeriod: \"soon\" is not a duration",
            ),
            ("iptables: {sync: 1s}\n", "iptables.sync: unknown field"),
            ("colour: blue\n", "colour: unknown field"),
            ("mode: ipvs\n", "mode: \"ipvs\""),
            (
                "clusterCIDR: 10.0.0.0/33\n",
                "clusterCIDR: \"10.0.0.0/33\" is not a CIDR",
            ),
            (
                "bindAddress: here\n",
                "bindAddress: \"here\" is not an IP address",
            ),
        ] {
            let e = parse(&format!("{head}{body}")).expect_err(body).to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = parse("kind: Pod\n").expect_err("kind").to_string();
        assert!(e.contains("apiVersion/kind"), "{e}");
    }

    #[test]
    fn go_durations_and_addresses() {
        assert_eq!(
            parse_duration("1h0m30s"),
            Ok(std::time::Duration::from_secs(3630))
        );
        assert!(parse_duration("5x").is_err());
        assert_eq!(
            bind_address("0.0.0.0", 10256, "--healthz-bind-address").expect("ip"),
            Some("0.0.0.0:10256".parse().expect("addr"))
        );
        assert_eq!(bind_address("", 1, "x").expect("off"), None);
        assert!(bind_address("nowhere", 1, "x").is_err());
    }
}

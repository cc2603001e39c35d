//! A real Kubernetes control plane in the lab: the pinned upstream
//! kube-apiserver (built by `scripts/upstream.sh` from the Go module proxy
//! into a cache outside the repository) on the lab's etcd under its own
//! `--etcd-prefix`, with RBAC on, a serving certificate from a lab CA,
//! service-account signing keys, and a kubeconfig per client (client
//! certificates: a name and groups). Started in a lab host's namespace,
//! ready once `/readyz` answers, stopped by PID.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::lab::{Host, Lab};
use crate::netns::sh;
use crate::process::{tail, Proc};
use crate::tls::{make_ca, sign};
use crate::upstream::upstream_kubernetes;

/// The article's Service range.
pub const SERVICE_CIDR: &str = "10.254.0.0/16";
const PORT: u16 = 6443;

/// A running (or stopped) kube-apiserver.
pub struct ApiServer {
    pub host: Host,
    /// `https://<host ip>:6443`
    pub url: String,
    /// kube-apiserver, kube-proxy and kubectl live here.
    pub bin: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl Lab {
    /// Starts kube-apiserver on `host` (which must reach the lab's etcd),
    /// with the lab's etcd under `/registry-<lab prefix>`; waits for
    /// `/readyz`.
    pub fn start_apiserver(&mut self, host: &Host) -> Result<ApiServer> {
        let bin = upstream_kubernetes()?;
        let dir = self.dir().join("kubernetes");
        std::fs::create_dir_all(&dir)?;
        let p = |n: &str| dir.join(n).display().to_string();
        // CA, serving certificate, service-account keys
        make_ca(&dir, "weft-lab-kubernetes-ca")?;
        let ca_pem = p("ca.pem");
        let san = format!(
            "subjectAltName=IP:{},IP:127.0.0.1,IP:10.254.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth",
            host.ip
        );
        sign(&dir, "apiserver", "/CN=kube-apiserver", &san)?;
        // what the server shows kubelets (logs, exec, port-forward)
        sign(
            &dir,
            "kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "extendedKeyUsage=clientAuth",
        )?;
        let (sa_key, sa_pub) = (p("sa.key"), p("sa.pub"));
        let key = [
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &sa_key,
        ];
        sh("openssl", &key)?;
        sh(
            "openssl",
            &["ec", "-in", &sa_key, "-pubout", "-out", &sa_pub],
        )?;
        let url = format!("https://{}:{PORT}", host.ip);
        let args: Vec<String> = [
            format!("--etcd-servers={}", self.etcd_url()?),
            format!("--etcd-prefix=/registry-{}", self.prefix),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!("--bind-address={}", host.ip),
            format!("--advertise-address={}", host.ip),
            format!("--secure-port={PORT}"),
            format!("--tls-cert-file={}", p("apiserver.pem")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={ca_pem}"),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={sa_pub}"),
            format!("--service-account-signing-key-file={sa_key}"),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            format!("--cert-dir={}", p("cert-dir")),
            format!("--kubelet-client-certificate={}", p("kubelet-client.pem")),
            format!("--kubelet-client-key={}", p("kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
        ]
        .into();
        let mut api = ApiServer {
            host: host.clone(),
            url,
            bin,
            dir,
            args,
            proc: None,
        };
        api.admin_kubeconfig()?;
        api.start()?;
        Ok(api)
    }
}

impl ApiServer {
    /// Starts the stopped server again (same certificates, same data).
    pub fn start(&mut self) -> Result<()> {
        if self.proc.is_some() {
            return Ok(());
        }
        let program = self.bin.join("kube-apiserver").display().to_string();
        let proc = Proc::spawn(
            &self.host.ns,
            "kube-apiserver",
            self.dir.join("kube-apiserver.log"),
            &program,
            &self.args,
            &[],
        )?;
        self.proc = Some(proc);
        self.wait_ready(Duration::from_secs(90))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            if self
                .kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|s| s.trim() == "ok")
            {
                return Ok(());
            }
            if let Some(p) = self.proc.as_mut() {
                if let Some(code) = p.exit_code() {
                    bail!("kube-apiserver exited with {code}:\n{}", p.log_tail(20));
                }
            }
            if Instant::now() > end {
                let tail = self
                    .proc
                    .as_ref()
                    .map(|p| p.log_tail(20))
                    .unwrap_or_default();
                bail!("kube-apiserver not ready after {timeout:?}:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// A kubeconfig for `user` in `groups` (a client certificate from the
    /// lab CA), written once in the lab directory.
    pub fn kubeconfig(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let file = self.dir.join(format!("{user}.kubeconfig"));
        if file.exists() {
            return Ok(file);
        }
        let mut subject = String::new();
        for g in groups {
            subject.push_str(&format!("/O={g}"));
        }
        subject.push_str(&format!("/CN={user}"));
        let name = format!("user-{}", user.replace([':', '/'], "-"));
        sign(&self.dir, &name, &subject, "extendedKeyUsage=clientAuth")?;
        let p = |n: &str| self.dir.join(n).display().to_string();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: {user}\ncurrent-context: lab\n",
            self.url,
            p("ca.pem"),
            p(&format!("{name}.pem")),
            p(&format!("{name}.key")),
        );
        std::fs::write(&file, text)?;
        Ok(file)
    }

    /// A file of the server's folder (certificates and keys: `ca.pem`,
    /// `ca.key`, `sa.key`, …).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The cluster administrator's kubeconfig (`system:masters`).
    pub fn admin_kubeconfig(&self) -> Result<PathBuf> {
        self.kubeconfig("admin", &["system:masters"])
    }

    /// Runs kubectl as the administrator in the server's namespace; stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let kubectl = self.bin.join("kubectl").display().to_string();
        let kubeconfig = format!("--kubeconfig={}", self.admin_kubeconfig()?.display());
        let mut all = vec![
            "netns",
            "exec",
            self.host.ns.as_str(),
            &kubectl,
            &kubeconfig,
        ];
        all.extend_from_slice(args);
        let out = sh("ip", &all)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        let file = self.dir.join(format!(
            "apply-{}.yaml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::write(&file, yaml)?;
        let out = self.kubectl(&["apply", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        out
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("kube-apiserver.log"), lines)
    }

    /// One KubeProxyConfiguration for kube-proxy and `weft proxy` side by
    /// side (as a kube-proxy DaemonSet's ConfigMap gives it): this server
    /// as administrator, node `node`, `mode`, pod network `cluster_cidr`,
    /// health on 10256 and metrics on 127.0.0.1:10249, then `extra`
    /// (more YAML keys). Written into `dir`; its path.
    pub fn kube_proxy_config(
        &self,
        dir: &std::path::Path,
        node: &str,
        mode: &str,
        cluster_cidr: &str,
        extra: &str,
    ) -> Result<PathBuf> {
        let file = dir.join("kube-proxy-config.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {}
hostnameOverride: {node}
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
mode: {mode}
clusterCIDR: {cluster_cidr}
conntrack:
  maxPerCore: 0
{extra}",
                self.admin_kubeconfig()?.display()
            ),
        )?;
        Ok(file)
    }

    /// The pinned kube-proxy on `host`, run with `--config=config` only,
    /// logging to `log`.
    pub fn start_kube_proxy(
        &self,
        host: &Host,
        log: PathBuf,
        config: &std::path::Path,
    ) -> Result<Proc> {
        Proc::spawn(
            &host.ns,
            "kube-proxy",
            log,
            &self.bin.join("kube-proxy").display().to_string(),
            &[format!("--config={}", config.display())],
            &[],
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

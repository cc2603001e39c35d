//! The workloads the lab's cluster tests run: agnhost netexec pods pinned
//! to a node, a netexec Deployment behind a Service, and fetching from
//! inside a pod.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::KubeCluster;

/// A Pod manifest: agnhost `netexec` on port 8080, pinned to `node`,
/// labelled `app: <name>`.
pub fn netexec_pod(name: &str, node: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n\
         spec:\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n  - name: netexec\n    \
         image: {image}\n    imagePullPolicy: Never\n    args: [\"netexec\", \"--http-port=8080\"]\n    \
         ports:\n    - containerPort: 8080\n"
    )
}

impl KubeCluster {
    /// netexec pods `a` on n1 and `b` on n2 (the cluster tests' pair),
    /// and their addresses once both run (each waited for up to `timeout`).
    pub fn netexec_pair(&self, image: &str, timeout: Duration) -> Result<(String, String)> {
        self.api.apply(&netexec_pod("a", "n1", image))?;
        self.api.apply(&netexec_pod("b", "n2", image))?;
        let mut ips = Vec::new();
        for pod in ["a", "b"] {
            let end = Instant::now() + timeout;
            loop {
                if let Some(ip) = self.running_pod_ip(pod) {
                    ips.push(ip);
                    break;
                }
                if Instant::now() >= end {
                    bail!("pod {pod} not running after {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        let b = ips.pop().unwrap_or_default();
        Ok((ips.pop().unwrap_or_default(), b))
    }

    /// Pod `name`'s address once it runs.
    pub fn running_pod_ip(&self, name: &str) -> Option<String> {
        let out = self
            .kubectl(&[
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])
            .ok()?;
        let (phase, ip) = out.split_once(' ')?;
        (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
    }

    /// `curl` from inside pod `from` (through the API server and the
    /// kubelet): the trimmed body, None on an error or an empty answer.
    pub fn fetch_from(&self, from: &str, url: &str) -> Option<String> {
        match self.kubectl(&["exec", from, "--", "curl", "-s", "-m", "3", url]) {
            Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Err(e) => {
                eprintln!("{from} -> {url}: {e:#}");
                None
            }
        }
    }

    /// Deployment `name` (`replicas` agnhost netexec pods on port 8080)
    /// behind a Service of the same name on port 80, as `kubectl create
    /// deployment` and `kubectl expose` make them.
    pub fn netexec_service(&self, name: &str, image: &str, replicas: u32) -> Result<()> {
        self.kubectl(&[
            "create",
            "deployment",
            name,
            &format!("--image={image}"),
            &format!("--replicas={replicas}"),
            "--",
            "/agnhost",
            "netexec",
            "--http-port=8080",
        ])?;
        self.kubectl(&[
            "expose",
            "deployment",
            name,
            "--port=80",
            "--target-port=8080",
        ])?;
        Ok(())
    }
}

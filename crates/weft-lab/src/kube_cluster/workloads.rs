//! The workloads the lab's cluster tests run: agnhost netexec pods pinned
//! to a node, a netexec Deployment behind a Service, and fetching from
//! inside a pod.

use anyhow::Result;

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

//! What this node writes to its own Node: the lease annotations (one
//! patch, only of the values that differ, re-sent whenever the Node
//! drifts from them — e.g. an operator sets `public-ip-overwrite`) and,
//! once the data path is up, the `NetworkUnavailable=False` condition.
//! Both go through the Node's `status` subresource, as flanneld's do, so
//! the kube-flannel ClusterRole (`nodes/status: patch`) suffices.

use std::time::Duration;

use anyhow::{anyhow, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::time::sleep;
use weft_kube::{words, Retry};

use super::KubeSource;

impl KubeSource {
    /// Patches this Node's annotations to what it publishes; nothing is
    /// sent when they already say it. Retried (for about two minutes)
    /// while the API server is unreachable or answers 409/5xx; refused
    /// patches are fatal.
    pub(super) async fn announce(&mut self) -> Result<()> {
        let Some(attrs) = &self.published else {
            return Ok(());
        };
        let current = self.node.view().annotations.clone();
        let patch = self.names.patch(attrs, &current);
        if patch.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = patch.keys().map(String::as_str).collect();
        tracing::info!(node = %self.name, annotations = ?keys, "publishing this node's lease");
        let body = json!({"metadata": {"annotations": patch}});
        self.node = self.patch_status(&body, "annotating").await?;
        Ok(())
    }

    /// The Node's `NetworkUnavailable` condition to False, reason
    /// `FlannelIsUp` (flanneld's words). A failure is logged only.
    pub(super) async fn mark_network_available(&mut self) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let body = json!({"status": {"conditions": [{
            "type": "NetworkUnavailable",
            "status": "False",
            "reason": "FlannelIsUp",
            "message": "Flannel is running on this node",
            "lastTransitionTime": now,
            "lastHeartbeatTime": now,
        }]}});
        match self
            .patch_status(&body, "setting NetworkUnavailable=False on")
            .await
        {
            Ok(n) => {
                self.node = n;
                tracing::info!(node = %self.name, "NetworkUnavailable=False (FlannelIsUp)");
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }

    async fn patch_status(
        &self,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<super::node::LeaseNode> {
        let params = PatchParams::default();
        let mut backoff = Retry::default();
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .nodes
                .patch_status(&self.name, &params, &Patch::Strategic(body))
                .await
            {
                Ok(n) => return Ok(n),
                Err(kube::Error::Api(s)) if s.code != 409 && s.code < 500 => {
                    return Err(anyhow!("{what} Node {}: {}", self.name, s.message))
                }
                Err(e) if tries >= 30 => {
                    return Err(anyhow!("{what} Node {}: {}", self.name, words(&e)))
                }
                Err(e) => {
                    tracing::warn!("{what} Node {}: {}; retrying", self.name, words(&e));
                    sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
                }
            }
        }
    }
}

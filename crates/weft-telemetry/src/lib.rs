//! Health, readiness and metrics over a minimal HTTP/1.1 responder, shared
//! by the agent and the proxy: `/healthz` (alive), `/readyz` (503 until the
//! first sync is done), `/metrics` (Prometheus text format).

pub mod http;

pub use http::{bind, serve, Endpoints};
pub use prometheus_client;

//! Health, readiness and metrics over a minimal HTTP/1.1 responder, shared
//! by the agent and the proxy: `/healthz` (alive), `/readyz` (503 until the
//! first sync is done), `/metrics` (Prometheus text format); and the log
//! set-up both use.

pub mod http;
pub mod logging;

pub use http::{bind, serve, serve_with, Endpoints, Response};
pub use prometheus_client;

/// Histogram buckets `start, start·factor, …` (`count` of them), by repeated
/// multiplication: prometheus-client's `exponential_buckets` calls `powf`,
/// which is the agent's one use of libm (a whole shared library mapped
/// into every agent for ten numbers).
pub fn geometric_buckets(start: f64, factor: f64, count: u16) -> Vec<f64> {
    let mut out = Vec::with_capacity(count.into());
    let mut b = start;
    for _ in 0..count {
        out.push(b);
        b *= factor;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn geometric_buckets_multiply() {
        let b = super::geometric_buckets(0.5, 4.0, 4);
        assert_eq!(b, vec![0.5, 2.0, 8.0, 32.0]);
    }
}

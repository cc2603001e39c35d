//! A minimal HTTP/1.1 responder for `/healthz`, `/readyz` and `/metrics`.
//!
//! Whoever reaches the port can connect, so a connection is held only
//! within [`Limits`]: at most `connections` at once (more are closed as
//! they arrive, with one warning), the request head read within
//! `read_timeout` and `max_request` bytes (431 beyond), the answer written
//! within `write_timeout`. A slow or hostile scraper then costs a bounded
//! number of sockets for a bounded time, and the process's own work goes
//! on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bounds on the connections one server holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 64,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_request: 8 * 1024,
        }
    }
}

/// A request's first line, as far as the endpoints care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Method and path.
    Request(String, String),
    /// The head did not end within the size limit.
    TooLarge,
    /// Not an HTTP request line.
    Bad,
}

/// Reads the head of a request from the bytes received so far: `None`
/// while it has not ended (no empty line yet) and is within `max` bytes.
pub fn parse_head(buf: &[u8], max: usize) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n");
    if end.is_none() && buf.len() < max {
        return None;
    }
    let Some(end) = end.filter(|e| *e + 4 <= max) else {
        return Some(Head::TooLarge);
    };
    let line = buf[..end].split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Some(Head::Bad);
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v), None)
            if !m.is_empty() && p.starts_with('/') && v.starts_with("HTTP/1.") =>
        {
            Some(Head::Request(m.to_string(), p.to_string()))
        }
        _ => Some(Head::Bad),
    }
}

/// What the endpoints report.
pub struct Endpoints {
    /// `/healthz` body, e.g. `flanneld is running`.
    pub name: &'static str,
    /// Set once the process has done its first full sync.
    pub ready: Arc<AtomicBool>,
    pub registry: Arc<Mutex<Registry>>,
}

/// Binds the listener (so bind errors surface at start-up).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// One answer: status line, content type, extra headers and body.
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl From<(&'static str, &'static str, String)> for Response {
    fn from((status, content_type, body): (&'static str, &'static str, String)) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }
}

fn respond(ep: &Endpoints, method: &str, path: &str) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain";
    match (method, path) {
        ("GET" | "HEAD", "/healthz") => ("200 OK", TEXT, format!("{}\n", ep.name)),
        ("GET" | "HEAD", "/readyz") => {
            if ep.ready.load(Ordering::Relaxed) {
                ("200 OK", TEXT, "ready\n".into())
            } else {
                ("503 Service Unavailable", TEXT, "not ready\n".into())
            }
        }
        ("GET" | "HEAD", "/metrics") => {
            let mut body = String::new();
            let encoded = match ep.registry.lock() {
                Ok(reg) => prometheus_client::encoding::text::encode(&mut body, &reg).is_ok(),
                Err(_) => false,
            };
            if encoded {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                )
            } else {
                (
                    "500 Internal Server Error",
                    TEXT,
                    "metrics unavailable\n".into(),
                )
            }
        }
        ("GET" | "HEAD", _) => ("404 Not Found", TEXT, "not found\n".into()),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "method not allowed\n".into(),
        ),
    }
}

/// Answers `/healthz`, `/readyz` and `/metrics` until the process ends.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>) {
    serve_with(listener, move |method, path| {
        respond(&endpoints, method, path).into()
    })
    .await
}

/// Answers every request with `answer(method, path)` until the future is
/// dropped (one request per connection), within [`Limits::default`].
pub async fn serve_with<F>(listener: TcpListener, answer: F)
where
    F: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    serve_limited(listener, answer, Limits::default()).await
}

/// [`serve_with`] within `limits`.
pub async fn serve_limited<F>(listener: TcpListener, answer: F, limits: Limits)
where
    F: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let mut told = false;
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning
                tracing::warn!("http: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !told {
                told = true;
                tracing::warn!(
                    port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
                    "http: {} connections open already; closing new ones until some end (told once)",
                    limits.connections
                );
            }
            drop(sock);
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            one_connection(sock, &*answer, &limits).await;
            drop(permit);
        });
    }
}

/// Reads one request head within the limits and writes the answer.
async fn one_connection<F>(mut sock: tokio::net::TcpStream, answer: &F, limits: &Limits)
where
    F: Fn(&str, &str) -> Response,
{
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(limits.read_timeout, async {
        let mut chunk = [0u8; 512];
        loop {
            if let Some(head) = parse_head(&buf, limits.max_request) {
                return Some(head);
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let (method, r) = match read {
        Ok(Some(Head::Request(method, path))) => {
            let r = answer(&method, &path);
            (method, r)
        }
        Ok(Some(Head::TooLarge)) => (
            String::new(),
            Response::from((
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n".to_string(),
            )),
        ),
        Ok(Some(Head::Bad)) => (
            String::new(),
            Response::from(("400 Bad Request", "text/plain", "bad request\n".to_string())),
        ),
        // closed, or too slow: no answer
        Ok(None) | Err(_) => return,
    };
    let extra: String = r
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let resp = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.content_type,
        r.body.len(),
        if method == "HEAD" { "" } else { &r.body }
    );
    let _ = tokio::time::timeout(limits.write_timeout, async {
        let _ = sock.write_all(resp.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests;

//! A minimal HTTP/1.1 responder for `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MAX_REQUEST: usize = 8 * 1024;

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
/// dropped (one request per connection).
pub async fn serve_with<F>(listener: TcpListener, answer: F)
where
    F: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    loop {
        let mut sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning
                tracing::warn!("http: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(512);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 512];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
                    let n = sock.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let r = answer(method, path);
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
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

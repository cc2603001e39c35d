//! Every Node, followed: a list, then a watch from the list's
//! resourceVersion with bookmarks; a fresh list when the API server says
//! the version is gone (`410`); reconnects with backoff. Both requests
//! ask for protobuf ([`super::proto`]). The list asks with
//! `resourceVersion=0`, as client-go's informers (and so flanneld) do:
//! the API server answers from its watch cache and streams the answer
//! as it encodes it, so each Node is decoded — and its lease programmed —
//! while the rest are still coming. After a `410` the list is a
//! consistent one (no resourceVersion), as client-go's.

use std::time::Duration;

use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::utils::Backoff;
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::sleep;
use weft_kube::{clip, words, Retry, MESSAGE_CHARS};

use weft_core::kube_node::proto::{self, ListDecoder, ListItem, Node, Object, WatchDecoder};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const PROTOBUF_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// How much of an error answer is read.
const ERROR_BODY_BYTES: usize = 64 << 10;

/// What the Node stream says, in order: a listing is `Init`, each Node
/// `InitApply`, then `InitDone`; after it, changes.
pub enum NodeEvent {
    Init,
    InitApply(Node),
    InitDone,
    Apply(Node),
    Delete(Node),
}

/// An event, or a failure (in words) that is being retried.
pub type Signal = Result<NodeEvent, String>;

/// Starts following the Nodes; the task ends when the receiver is
/// dropped.
pub fn spawn(client: Client) -> mpsc::Receiver<Signal> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(follow(client, tx));
    rx
}

enum Fault {
    /// The receiver is gone.
    Stopped,
    /// The resourceVersion is too old: list again.
    Gone,
    Failed(String),
}

impl From<String> for Fault {
    fn from(e: String) -> Self {
        Fault::Failed(e)
    }
}

async fn follow(client: Client, tx: mpsc::Sender<Signal>) {
    let mut backoff = Retry::default();
    // where the watch resumes; none: list first
    let mut version: Option<String> = None;
    let mut consistent = false;
    loop {
        let step = match version.as_deref() {
            None => list(&client, &tx, consistent).await.map(|v| {
                version = Some(v);
                consistent = false;
            }),
            Some(v) => {
                let mut at = v.to_string();
                let r = watch(&client, &tx, &mut at).await;
                version = Some(at);
                r
            }
        };
        match step {
            Ok(()) => backoff.reset(),
            Err(Fault::Stopped) => return,
            Err(Fault::Gone) => {
                tracing::info!(
                    "the Node watch's resourceVersion has expired (410 Gone); listing the Nodes again"
                );
                version = None;
                consistent = true;
            }
            Err(Fault::Failed(e)) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
            }
        }
    }
}

async fn send(tx: &mpsc::Sender<Signal>, ev: NodeEvent) -> Result<(), Fault> {
    tx.send(Ok(ev)).await.map_err(|_| Fault::Stopped)
}

/// Lists every Node; gives the list's resourceVersion.
async fn list(
    client: &Client,
    tx: &mpsc::Sender<Signal>,
    consistent: bool,
) -> Result<String, Fault> {
    let uri = if consistent {
        "/api/v1/nodes"
    } else {
        "/api/v1/nodes?resourceVersion=0"
    };
    let mut body = get(client, uri, PROTOBUF).await?;
    send(tx, NodeEvent::Init).await?;
    let mut decoder = ListDecoder::default();
    let mut version = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the Node list: {}", words(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        decoder.push(&data);
        while let Some(item) = decoder
            .next_item()
            .map_err(|e| format!("the Node list: {e}"))?
        {
            match item {
                ListItem::Version(v) => version = Some(v),
                ListItem::Node(n) => send(tx, NodeEvent::InitApply(n)).await?,
            }
        }
    }
    if !decoder.complete() {
        return Err("the Node list ended part-way".to_string().into());
    }
    let version = version
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "the Node list has no resourceVersion".to_string())?;
    send(tx, NodeEvent::InitDone).await?;
    Ok(version)
}

/// Watches from `version`, moving it with every event; returns when the
/// API server ends the watch (its timeout).
async fn watch(
    client: &Client,
    tx: &mpsc::Sender<Signal>,
    version: &mut String,
) -> Result<(), Fault> {
    // client-go's spread of watch lengths, below kube's read timeout
    let seconds = 240 + rand::random::<u64>() % 50;
    let uri = format!(
        "/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds={seconds}"
    );
    let started = std::time::Instant::now();
    let mut body = get(client, &uri, PROTOBUF_WATCH).await?;
    let mut decoder = WatchDecoder::default();
    let mut events = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the Node watch: {}", words(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        decoder.push(&data);
        while let Some(ev) = decoder
            .next_event()
            .map_err(|e| format!("the Node watch: {e}"))?
        {
            events += 1;
            let node = match ev.object {
                Object::Node(n) => n,
                Object::Status(s) if s.code == 410 => return Err(Fault::Gone),
                Object::Status(s) => {
                    let words = clip(&s.message, MESSAGE_CHARS);
                    return Err(format!("the Node watch: {words}").into());
                }
            };
            if !node.resource_version().is_empty() {
                *version = node.resource_version().to_string();
            }
            let ev = match ev.kind.as_str() {
                "ADDED" | "MODIFIED" => NodeEvent::Apply(node),
                "DELETED" => NodeEvent::Delete(node),
                "BOOKMARK" => continue,
                other => return Err(format!("the Node watch: an event of type {other:?}").into()),
            };
            send(tx, ev).await?;
        }
    }
    if events == 0 && started.elapsed() < Duration::from_secs(1) {
        // not the API server's timeout: something between ends watches at
        // once; back off rather than ask again at full speed
        return Err("the Node watch ended as soon as it began"
            .to_string()
            .into());
    }
    Ok(())
}

/// Sends a GET; an answer other than 2xx in `accept`'s encoding is a
/// fault in the API server's words.
async fn get(client: &Client, uri: &str, accept: &str) -> Result<Body, Fault> {
    let mut request = http::Request::get(uri).header(http::header::ACCEPT, accept);
    if accept == PROTOBUF {
        // a list's megabytes grow the connection's read buffer, which a
        // pooled connection would keep for the watch's trickle: this one
        // is closed after the list instead (kube's client speaks HTTP/1.1)
        request = request.header(http::header::CONNECTION, "close");
    }
    let request = request
        .body(Body::empty())
        .map_err(|e| format!("the request {uri}: {e}"))?;
    let response = client
        .send(request)
        .await
        .map_err(|e| format!("requesting the Nodes: {}", words(&e)))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status.is_success() {
        if !content_type.starts_with(PROTOBUF) {
            return Err(format!(
                "the API server answered the Node {} as {content_type:?}, not protobuf",
                if accept == PROTOBUF { "list" } else { "watch" }
            )
            .into());
        }
        return Ok(response.into_body());
    }
    // an error's body is read to a bound and its words cut for the log
    let bytes = http_body_util::Limited::new(response.into_body(), ERROR_BODY_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let (code, message) = match proto::decode_object(&bytes) {
        Ok(Object::Status(s)) => (s.code, clip(&s.message, MESSAGE_CHARS)),
        _ => (
            i32::from(status.as_u16()),
            clip(&String::from_utf8_lossy(&bytes), MESSAGE_CHARS),
        ),
    };
    if code == 410 {
        return Err(Fault::Gone);
    }
    let message = if message.is_empty() {
        status.to_string()
    } else {
        message
    };
    Err(format!("listing or watching the Nodes: {message}").into())
}

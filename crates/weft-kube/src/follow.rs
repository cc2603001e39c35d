//! Every object of one kind, followed in protobuf
//! ([`weft_core::kube_proto`]): a list, then a watch from the list's
//! resourceVersion with bookmarks; a fresh list when the API server says
//! the version is gone (`410`); reconnects with backoff ([`Retry`]). The
//! list asks with `resourceVersion=0`, as client-go's informers (and so
//! flanneld and kube-proxy) do: the API server answers from its watch
//! cache in one answer, no pages, and streams it as it encodes it, so
//! each object is decoded (and acted on) while the rest are still coming.
//! After a `410` the list is a consistent one (no resourceVersion), as
//! client-go's. Used for the agent's Nodes and the proxy's EndpointSlices.

use std::time::Duration;

use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::utils::Backoff;
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::sleep;
use weft_core::kube_proto::{
    decode_status, ListDecoder, ListItem, Object, ProtoKind, WatchDecoder,
};

use crate::{clip, words, Retry, MESSAGE_CHARS};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const PROTOBUF_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// How much of an error answer is read.
const ERROR_BODY_BYTES: usize = 64 << 10;

/// Which objects to follow.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    /// The collection's path, e.g. `/api/v1/nodes`.
    pub path: &'static str,
    /// Its name in messages, e.g. `Nodes`.
    pub what: &'static str,
    /// A label selector, as the API takes it (unencoded); empty for none.
    pub labels: &'static str,
}

impl Collection {
    /// The collection's URI with `query` and the label selector.
    fn uri(&self, query: &str) -> String {
        let mut params: Vec<String> = Vec::new();
        if !query.is_empty() {
            params.push(query.to_string());
        }
        if !self.labels.is_empty() {
            let selector: String =
                form_urlencoded::byte_serialize(self.labels.as_bytes()).collect();
            params.push(format!("labelSelector={selector}"));
        }
        if params.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, params.join("&"))
        }
    }
}

/// What the stream says, in order: a listing is `Init`, each object
/// `InitApply`, then `InitDone`; after it, changes.
#[derive(Debug)]
pub enum Event<T> {
    Init,
    InitApply(T),
    InitDone,
    Apply(T),
    Delete(T),
}

/// An event, or a failure (in words) that is being retried.
pub type Signal<T> = Result<Event<T>, String>;

/// Starts following `collection`; the task ends when the receiver is
/// dropped.
pub fn spawn<K>(client: Client, collection: Collection) -> mpsc::Receiver<Signal<K::Item>>
where
    K: ProtoKind + Send + 'static,
    K::Item: Send + 'static,
{
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(follow::<K>(client, collection, tx));
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

/// A request's sender and where its events go.
struct Follower<'a, T> {
    client: &'a Client,
    of: Collection,
    tx: &'a mpsc::Sender<Signal<T>>,
}

async fn follow<K: ProtoKind>(client: Client, of: Collection, tx: mpsc::Sender<Signal<K::Item>>) {
    let f = Follower {
        client: &client,
        of,
        tx: &tx,
    };
    let mut backoff = Retry::default();
    // where the watch resumes; none: list first
    let mut version: Option<String> = None;
    let mut consistent = false;
    loop {
        let step = match version.as_deref() {
            None => f.list::<K>(consistent).await.map(|v| {
                version = Some(v);
                consistent = false;
            }),
            Some(v) => {
                let mut at = v.to_string();
                let r = f.watch::<K>(&mut at).await;
                version = Some(at);
                r
            }
        };
        match step {
            Ok(()) => backoff.reset(),
            Err(Fault::Stopped) => return,
            Err(Fault::Gone) => {
                tracing::info!(
                    "the {} watch's resourceVersion has expired (410 Gone); listing the {} again",
                    K::KIND,
                    of.what
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

impl<T> Follower<'_, T> {
    async fn send(&self, ev: Event<T>) -> Result<(), Fault> {
        self.tx.send(Ok(ev)).await.map_err(|_| Fault::Stopped)
    }

    /// Lists every object; gives the list's resourceVersion.
    async fn list<K: ProtoKind<Item = T>>(&self, consistent: bool) -> Result<String, Fault> {
        let query = if consistent { "" } else { "resourceVersion=0" };
        let asked = std::time::Instant::now();
        let mut body = self.get(&self.of.uri(query), PROTOBUF).await?;
        let answered = asked.elapsed();
        self.send(Event::Init).await?;
        let mut decoder = ListDecoder::<K>::default();
        let mut version = None;
        let what = self.of.what;
        let (mut items, mut bytes) = (0usize, 0usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the {what} list: {}", words(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            bytes += data.len();
            decoder.push(&data);
            while let Some(item) = decoder
                .next_item()
                .map_err(|e| format!("the {what} list: {e}"))?
            {
                match item {
                    ListItem::Version(v) => version = Some(v),
                    ListItem::Item(n) => {
                        items += 1;
                        self.send(Event::InitApply(n)).await?
                    }
                }
            }
        }
        if !decoder.complete() {
            return Err(format!("the {what} list ended part-way").into());
        }
        tracing::info!(
            "listed {items} {what} in {:.0?} ({:.1} MB; the answer began after {:.0?})",
            asked.elapsed(),
            bytes as f64 / 1e6,
            answered
        );
        let version = version
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the {what} list has no resourceVersion"))?;
        self.send(Event::InitDone).await?;
        Ok(version)
    }

    /// Watches from `version`, moving it with every event; returns when
    /// the API server ends the watch (its timeout).
    async fn watch<K: ProtoKind<Item = T>>(&self, version: &mut String) -> Result<(), Fault> {
        // client-go's spread of watch lengths, below kube's read timeout
        let seconds = 240 + rand::random::<u64>() % 50;
        let uri = self.of.uri(&format!(
            "watch=true&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds={seconds}"
        ));
        let started = std::time::Instant::now();
        let mut body = self.get(&uri, PROTOBUF_WATCH).await?;
        let mut decoder = WatchDecoder::<K>::default();
        let mut events = 0usize;
        let what = self.of.what;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the {what} watch: {}", words(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            while let Some(ev) = decoder
                .next_event()
                .map_err(|e| format!("the {what} watch: {e}"))?
            {
                events += 1;
                let item = match ev.object {
                    Object::Item(n) => n,
                    Object::Status(s) if s.code == 410 => return Err(Fault::Gone),
                    Object::Status(s) => {
                        let words = clip(&s.message, MESSAGE_CHARS);
                        return Err(format!("the {what} watch: {words}").into());
                    }
                };
                let at = K::resource_version(&item);
                if !at.is_empty() {
                    *version = at.to_string();
                }
                let ev = match ev.kind.as_str() {
                    "ADDED" | "MODIFIED" => Event::Apply(item),
                    "DELETED" => Event::Delete(item),
                    "BOOKMARK" => continue,
                    other => {
                        return Err(format!("the {what} watch: an event of type {other:?}").into())
                    }
                };
                self.send(ev).await?;
            }
        }
        if events == 0 && started.elapsed() < Duration::from_secs(1) {
            // not the API server's timeout: something between ends watches
            // at once; back off rather than ask again at full speed
            return Err(format!("the {what} watch ended as soon as it began").into());
        }
        Ok(())
    }

    /// Sends a GET; an answer other than 2xx in `accept`'s encoding is a
    /// fault in the API server's words.
    async fn get(&self, uri: &str, accept: &str) -> Result<Body, Fault> {
        let what = self.of.what;
        let mut request = http::Request::get(uri).header(http::header::ACCEPT, accept);
        if accept == PROTOBUF {
            // a list's megabytes grow the connection's read buffer, which a
            // pooled connection would keep for the watch's trickle: this
            // one is closed after the list instead (kube's client speaks
            // HTTP/1.1)
            request = request.header(http::header::CONNECTION, "close");
        }
        let request = request
            .body(Body::empty())
            .map_err(|e| format!("the request {uri}: {e}"))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| format!("requesting the {what}: {}", words(&e)))?;
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
                    "the API server answered the {what} {} as {content_type:?}, not protobuf",
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
        let (code, message) = match decode_status(&bytes) {
            Ok(s) => (s.code, clip(&s.message, MESSAGE_CHARS)),
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
        Err(format!("listing or watching the {what}: {message}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_is_encoded_into_the_uri() {
        let slices = Collection {
            path: "/apis/discovery.k8s.io/v1/endpointslices",
            what: "EndpointSlices",
            labels: "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",
        };
        assert_eq!(
            slices.uri("resourceVersion=0"),
            "/apis/discovery.k8s.io/v1/endpointslices?resourceVersion=0&labelSelector=\
             %21service.kubernetes.io%2Fservice-proxy-name%2C%21service.kubernetes.io%2Fheadless"
        );
        let nodes = Collection {
            path: "/api/v1/nodes",
            what: "Nodes",
            labels: "",
        };
        assert_eq!(nodes.uri(""), "/api/v1/nodes");
        assert_eq!(
            nodes.uri("resourceVersion=0"),
            "/api/v1/nodes?resourceVersion=0"
        );
        assert_eq!(
            slices.uri(""),
            "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=\
             %21service.kubernetes.io%2Fservice-proxy-name%2C%21service.kubernetes.io%2Fheadless"
        );
    }
}

//! Nodes as the API server sends them in its protobuf encoding
//! (`application/vnd.kubernetes.protobuf`): a third of the JSON's bytes,
//! encoded by the server in half the time, and a list served from its
//! watch cache streams as it is encoded. Only the fields the agent reads
//! are declared (name, resourceVersion, annotations, pod ranges); the
//! rest of each Node (status, managedFields: most of its bytes) is
//! skipped while decoding.
//!
//! The envelope: `k8s\0`, then a `runtime.Unknown` whose `raw` field holds
//! the object (a `NodeList`, a `Node`, a `Status`). A watch is a sequence
//! of frames, each a 4-byte big-endian length and a `WatchEvent` whose
//! object is such an envelope. [`ListDecoder`] takes a list's bytes as
//! they arrive and gives each Node as soon as its bytes are complete.

use std::collections::BTreeMap;

use prost::Message;

use super::annotations::NodeView;

const MAGIC: &[u8] = b"k8s\0";
/// Larger watch frames and list items are refused rather than buffered
/// (etcd keeps objects below 1.5 MiB).
pub const MAX_FRAME: usize = 64 << 20;
/// Nodes one list may hold (Kubernetes is tested to 5,000).
pub const MAX_LIST_ITEMS: usize = 100_000;
/// Bytes a list's NodeList may declare.
pub const MAX_LIST_BYTES: usize = 2 << 30;

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// `runtime.Unknown`: the envelope of every object.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Node {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<NodeSpec>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ObjectMeta {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub resource_version: String,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeSpec {
    #[prost(string, tag = "1")]
    pub pod_cidr: String,
    #[prost(string, repeated, tag = "7")]
    pub pod_cidrs: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ListMeta {
    #[prost(string, tag = "2")]
    resource_version: String,
}

/// `metav1.Status`: an error's words and code.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "3")]
    pub message: String,
    #[prost(string, tag = "4")]
    pub reason: String,
    #[prost(int32, tag = "6")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
struct RawExtension {
    #[prost(bytes = "vec", tag = "1")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct WatchEventMessage {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(message, optional, tag = "2")]
    object: Option<RawExtension>,
}

/// An object in its envelope.
#[derive(Debug, PartialEq)]
pub enum Object {
    Node(Node),
    Status(Status),
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

impl Node {
    pub fn name(&self) -> &str {
        self.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    pub fn resource_version(&self) -> &str {
        self.metadata
            .as_ref()
            .map_or("", |m| m.resource_version.as_str())
    }

    pub fn view(&self) -> NodeView<'_> {
        NodeView {
            name: self.name(),
            annotations: self
                .metadata
                .as_ref()
                .map_or(&NO_ANNOTATIONS, |m| &m.annotations),
            pod_cidr: self
                .spec
                .as_ref()
                .map(|s| s.pod_cidr.as_str())
                .filter(|c| !c.is_empty()),
            pod_cidrs: self.spec.as_ref().map_or(&[], |s| s.pod_cidrs.as_slice()),
        }
    }
}

/// Decodes one enveloped object: a Node or a Status.
pub fn decode_object(bytes: &[u8]) -> Result<Object, String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf object (no k8s\\0 prefix)")?;
    let unknown = Unknown::decode(body).map_err(|e| format!("protobuf envelope: {e}"))?;
    let kind = unknown.type_meta.map(|t| t.kind).unwrap_or_default();
    match kind.as_str() {
        "Node" => Node::decode(unknown.raw.as_slice())
            .map(Object::Node)
            .map_err(|e| format!("protobuf Node: {e}")),
        "Status" => Status::decode(unknown.raw.as_slice())
            .map(Object::Status)
            .map_err(|e| format!("protobuf Status: {e}")),
        other => Err(format!("expected a Node or a Status, got kind {other:?}")),
    }
}

/// A base-128 varint at the start of `b` and its length; `None` while
/// incomplete.
fn varint(b: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(Some((value, i + 1)));
        }
    }
    if b.len() >= 10 {
        return Err("a protobuf varint longer than 10 bytes".into());
    }
    Ok(None)
}

/// A field's number, header length and payload length.
struct Field {
    number: u64,
    length_delimited: bool,
    head: usize,
    len: usize,
}

/// The header of the field at the start of `b`; `None` while incomplete.
fn field(b: &[u8]) -> Result<Option<Field>, String> {
    let Some((key, n)) = varint(b)? else {
        return Ok(None);
    };
    let (number, wire) = (key >> 3, key & 7);
    let (head, len) = match wire {
        0 => match varint(&b[n..])? {
            Some((_, m)) => (n, m),
            None => return Ok(None),
        },
        1 => (n, 8),
        5 => (n, 4),
        2 => match varint(&b[n..])? {
            Some((len, m)) => (
                n + m,
                usize::try_from(len).map_err(|_| "a protobuf length beyond memory")?,
            ),
            None => return Ok(None),
        },
        w => return Err(format!("protobuf wire type {w} in field {number}")),
    };
    if head.checked_add(len).is_none() {
        return Err(format!("protobuf field {number}: a length beyond memory"));
    }
    Ok(Some(Field {
        number,
        length_delimited: wire == 2,
        head,
        len,
    }))
}

/// Bytes received and not yet decoded: a stream's chunks appended, what
/// is decoded consumed from the front (the consumed part dropped once it
/// is half the buffer).
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    at: usize,
}

impl Pending {
    fn push(&mut self, chunk: &[u8]) {
        if self.at > 0 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

/// What a list gives, in order.
#[derive(Debug, PartialEq)]
pub enum ListItem {
    /// The list's resourceVersion (where a watch starts).
    Version(String),
    Node(Node),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ListState {
    Magic,
    Envelope,
    /// Inside the NodeList, with this many of its bytes still to come.
    Items(usize),
    Done,
}

/// A `NodeList` decoded while it arrives: [`push`](Self::push) each chunk
/// of the body, then take [`next_item`](Self::next_item) until it says `None`.
pub struct ListDecoder {
    pending: Pending,
    state: ListState,
    /// Nodes given so far.
    nodes: usize,
}

impl Default for ListDecoder {
    fn default() -> Self {
        ListDecoder {
            pending: Pending::default(),
            state: ListState::Magic,
            nodes: 0,
        }
    }
}

impl ListDecoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.push(chunk);
    }

    /// Whether the whole list has been read.
    pub fn complete(&self) -> bool {
        self.state == ListState::Done
    }

    /// The next item whose bytes are all here; `None` until more come.
    pub fn next_item(&mut self) -> Result<Option<ListItem>, String> {
        loop {
            let b = self.pending.rest();
            match self.state {
                ListState::Magic => {
                    if b.len() < MAGIC.len() {
                        return Ok(None);
                    }
                    if !b.starts_with(MAGIC) {
                        return Err("not a Kubernetes protobuf list (no k8s\\0 prefix)".into());
                    }
                    self.pending.consume(MAGIC.len());
                    self.state = ListState::Envelope;
                }
                ListState::Envelope => {
                    let Some(f) = field(b)? else { return Ok(None) };
                    if f.number == 2 && f.length_delimited {
                        if f.len > MAX_LIST_BYTES {
                            return Err(format!(
                                "a Node list of {} bytes (more than {MAX_LIST_BYTES})",
                                f.len
                            ));
                        }
                        self.pending.consume(f.head);
                        self.state = ListState::Items(f.len);
                        continue;
                    }
                    if f.len > MAX_FRAME {
                        return Err(format!("a list envelope field of {} bytes", f.len));
                    }
                    let Some(payload) = b.get(f.head..f.head + f.len) else {
                        return Ok(None);
                    };
                    if f.number == 1 {
                        let t = TypeMeta::decode(payload)
                            .map_err(|e| format!("protobuf envelope: {e}"))?;
                        if t.kind != "NodeList" {
                            return Err(format!("expected a NodeList, got kind {:?}", t.kind));
                        }
                    }
                    self.pending.consume(f.head + f.len);
                }
                ListState::Items(0) => self.state = ListState::Done,
                ListState::Items(left) => {
                    let Some(f) = field(b)? else { return Ok(None) };
                    let end = f.head + f.len;
                    if end > left {
                        return Err("protobuf NodeList: an item runs past the list".into());
                    }
                    if f.len > MAX_FRAME {
                        return Err(format!(
                            "a Node list item of {} bytes (more than {MAX_FRAME})",
                            f.len
                        ));
                    }
                    let Some(payload) = b.get(f.head..end) else {
                        return Ok(None);
                    };
                    let item = match (f.number, f.length_delimited) {
                        (1, true) => ListMeta::decode(payload)
                            .map(|m| Some(ListItem::Version(m.resource_version)))
                            .map_err(|e| format!("protobuf ListMeta: {e}"))?,
                        (2, true) => {
                            self.nodes += 1;
                            if self.nodes > MAX_LIST_ITEMS {
                                return Err(format!(
                                    "a Node list of more than {MAX_LIST_ITEMS} Nodes"
                                ));
                            }
                            Node::decode(payload)
                                .map(|n| Some(ListItem::Node(n)))
                                .map_err(|e| format!("protobuf Node: {e}"))?
                        }
                        _ => None,
                    };
                    self.pending.consume(end);
                    self.state = ListState::Items(left - end);
                    if item.is_some() {
                        return Ok(item);
                    }
                }
                // the envelope's remaining fields (encoding, content type)
                ListState::Done => return Ok(None),
            }
        }
    }
}

/// One watch event: its type (`ADDED`, `MODIFIED`, `DELETED`,
/// `BOOKMARK`, `ERROR`) and object.
#[derive(Debug, PartialEq)]
pub struct WatchEvent {
    pub kind: String,
    pub object: Object,
}

/// A watch stream's frames decoded while they arrive.
#[derive(Default)]
pub struct WatchDecoder {
    pending: Pending,
}

impl WatchDecoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.push(chunk);
    }

    /// The next event whose frame is complete; `None` until more comes.
    pub fn next_event(&mut self) -> Result<Option<WatchEvent>, String> {
        let b = self.pending.rest();
        let Some(len) = b.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("a watch frame of {len} bytes"));
        }
        let Some(frame) = b.get(4..4 + len) else {
            return Ok(None);
        };
        let ev =
            WatchEventMessage::decode(frame).map_err(|e| format!("protobuf WatchEvent: {e}"))?;
        self.pending.consume(4 + len);
        let raw = ev.object.map(|o| o.raw).unwrap_or_default();
        let object = decode_object(&raw).map_err(|e| format!("{} event: {e}", ev.kind))?;
        Ok(Some(WatchEvent {
            kind: ev.kind,
            object,
        }))
    }
}

#[cfg(test)]
mod tests;

//! Kubernetes objects as the API server sends them in its protobuf
//! encoding (`application/vnd.kubernetes.protobuf`), for any kind: a
//! third of the JSON's bytes, encoded by the server in a fraction of the
//! time, and a list served from its watch cache streams as it is encoded.
//! Each kind ([`ProtoKind`]) declares only the fields its reader uses;
//! the rest of each object (managedFields and the like: most of its
//! bytes) is skipped while decoding. Used for the agent's Nodes
//! ([`crate::kube_node::proto`]) and the proxy's EndpointSlices.
//!
//! The envelope: `k8s\0`, then a `runtime.Unknown` whose `raw` field holds
//! the object (a list, one object, a `Status`). A watch is a sequence of
//! frames, each a 4-byte big-endian length and a `WatchEvent` whose object
//! is such an envelope. [`ListDecoder`] takes a list's bytes as they
//! arrive and gives each object as soon as its bytes are complete. The
//! bytes are untrusted: fuzz target `kube_proto`.

use std::marker::PhantomData;

use prost::Message;

const MAGIC: &[u8] = b"k8s\0";
/// Larger watch frames and list items are refused rather than buffered
/// (etcd keeps objects below 1.5 MiB).
pub const MAX_FRAME: usize = 64 << 20;
/// Bytes a list may declare.
pub const MAX_LIST_BYTES: usize = 2 << 30;

/// A kind read in protobuf: its message (only the fields read), its
/// names, and how many of it one list may hold.
pub trait ProtoKind {
    type Item: Message + Default;
    /// `Node`, `EndpointSlice`.
    const KIND: &'static str;
    /// Objects one list may hold.
    const MAX_ITEMS: usize;
    /// The object's `metadata.resourceVersion` (empty when absent).
    fn resource_version(item: &Self::Item) -> &str;
}

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

/// An object in its envelope: one of the kind read, or a Status.
#[derive(Debug, PartialEq)]
pub enum Object<T> {
    Item(T),
    Status(Status),
}

/// An enveloped object's kind and bytes.
fn envelope(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf object (no k8s\\0 prefix)")?;
    let unknown = Unknown::decode(body).map_err(|e| format!("protobuf envelope: {e}"))?;
    let kind = unknown.type_meta.map(|t| t.kind).unwrap_or_default();
    Ok((kind, unknown.raw))
}

fn status(raw: &[u8]) -> Result<Status, String> {
    Status::decode(raw).map_err(|e| format!("protobuf Status: {e}"))
}

/// Decodes one enveloped object of kind `K`, or a Status.
pub fn decode_object<K: ProtoKind>(bytes: &[u8]) -> Result<Object<K::Item>, String> {
    let (kind, raw) = envelope(bytes)?;
    if kind == K::KIND {
        return K::Item::decode(raw.as_slice())
            .map(Object::Item)
            .map_err(|e| format!("protobuf {}: {e}", K::KIND));
    }
    match kind.as_str() {
        "Status" => status(&raw).map(Object::Status),
        other => Err(format!(
            "expected a {} or a Status, got kind {other:?}",
            K::KIND
        )),
    }
}

/// Decodes an error answer's body: a Status in its envelope.
pub fn decode_status(bytes: &[u8]) -> Result<Status, String> {
    match envelope(bytes)? {
        (kind, raw) if kind == "Status" => status(&raw),
        (other, _) => Err(format!("expected a Status, got kind {other:?}")),
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
pub enum ListItem<T> {
    /// The list's resourceVersion (where a watch starts).
    Version(String),
    Item(T),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ListState {
    Magic,
    Envelope,
    /// Inside the list object, with this many of its bytes still to come.
    Items(usize),
    Done,
}

/// One field of a list read: the item it gave, if any, and the bytes it
/// used.
type ListField<T> = (Option<ListItem<T>>, usize);

/// A list of `K` decoded while it arrives: [`push`](Self::push) each
/// chunk of the body, then take [`next_item`](Self::next_item) until it
/// says `None`.
pub struct ListDecoder<K> {
    pending: Pending,
    state: ListState,
    /// Objects given so far.
    items: usize,
    kind: PhantomData<K>,
}

impl<K> Default for ListDecoder<K> {
    fn default() -> Self {
        ListDecoder {
            pending: Pending::default(),
            state: ListState::Magic,
            items: 0,
            kind: PhantomData,
        }
    }
}

impl<K: ProtoKind> ListDecoder<K> {
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.push(chunk);
    }

    /// Whether the whole list has been read.
    pub fn complete(&self) -> bool {
        self.state == ListState::Done
    }

    /// The next item whose bytes are all here; `None` until more come.
    pub fn next_item(&mut self) -> Result<Option<ListItem<K::Item>>, String> {
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
                    if let Some(next) = self.envelope_field()? {
                        self.state = next;
                    } else {
                        return Ok(None);
                    }
                }
                ListState::Items(0) => self.state = ListState::Done,
                ListState::Items(left) => {
                    let Some((item, used)) = self.list_field(left)? else {
                        return Ok(None);
                    };
                    self.pending.consume(used);
                    self.state = ListState::Items(left - used);
                    if item.is_some() {
                        return Ok(item);
                    }
                }
                // the envelope's remaining fields (encoding, content type)
                ListState::Done => return Ok(None),
            }
        }
    }

    /// Reads one field of the envelope: the list's bytes start (its
    /// state), or another field checked and skipped (still the envelope);
    /// `None` until the field is here.
    fn envelope_field(&mut self) -> Result<Option<ListState>, String> {
        let b = self.pending.rest();
        let Some(f) = field(b)? else { return Ok(None) };
        if f.number == 2 && f.length_delimited {
            if f.len > MAX_LIST_BYTES {
                return Err(format!(
                    "a {} list of {} bytes (more than {MAX_LIST_BYTES})",
                    K::KIND,
                    f.len
                ));
            }
            self.pending.consume(f.head);
            return Ok(Some(ListState::Items(f.len)));
        }
        if f.len > MAX_FRAME {
            return Err(format!("a list envelope field of {} bytes", f.len));
        }
        let Some(payload) = b.get(f.head..f.head + f.len) else {
            return Ok(None);
        };
        if f.number == 1 {
            let t = TypeMeta::decode(payload).map_err(|e| format!("protobuf envelope: {e}"))?;
            let wanted = format!("{}List", K::KIND);
            if t.kind != wanted {
                return Err(format!("expected a {wanted}, got kind {:?}", t.kind));
            }
        }
        self.pending.consume(f.head + f.len);
        Ok(Some(ListState::Envelope))
    }

    /// Reads one field of the list (`left` bytes of it to come): its
    /// metadata's version, an item, or something skipped (`None` inside);
    /// with the bytes it used. `None` until the field is here.
    fn list_field(&mut self, left: usize) -> Result<Option<ListField<K::Item>>, String> {
        let b = self.pending.rest();
        let Some(f) = field(b)? else { return Ok(None) };
        let end = f.head + f.len;
        if end > left {
            return Err(format!(
                "protobuf {}List: an item runs past the list",
                K::KIND
            ));
        }
        if f.len > MAX_FRAME {
            return Err(format!(
                "a {} list item of {} bytes (more than {MAX_FRAME})",
                K::KIND,
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
                self.items += 1;
                if self.items > K::MAX_ITEMS {
                    return Err(format!(
                        "more than {} {}s in one list",
                        K::MAX_ITEMS,
                        K::KIND
                    ));
                }
                K::Item::decode(payload)
                    .map(|n| Some(ListItem::Item(n)))
                    .map_err(|e| format!("protobuf {}: {e}", K::KIND))?
            }
            _ => None,
        };
        Ok(Some((item, end)))
    }
}

/// One watch event: its type (`ADDED`, `MODIFIED`, `DELETED`,
/// `BOOKMARK`, `ERROR`) and object.
#[derive(Debug, PartialEq)]
pub struct WatchEvent<T> {
    pub kind: String,
    pub object: Object<T>,
}

/// A watch stream's frames decoded while they arrive.
pub struct WatchDecoder<K> {
    pending: Pending,
    kind: PhantomData<K>,
}

impl<K> Default for WatchDecoder<K> {
    fn default() -> Self {
        WatchDecoder {
            pending: Pending::default(),
            kind: PhantomData,
        }
    }
}

impl<K: ProtoKind> WatchDecoder<K> {
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.push(chunk);
    }

    /// The next event whose frame is complete; `None` until more comes.
    pub fn next_event(&mut self) -> Result<Option<WatchEvent<K::Item>>, String> {
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
        let object = decode_object::<K>(&raw).map_err(|e| format!("{} event: {e}", ev.kind))?;
        Ok(Some(WatchEvent {
            kind: ev.kind,
            object,
        }))
    }
}

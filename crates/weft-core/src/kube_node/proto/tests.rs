//! Against bytes captured from kube-apiserver v1.36.3 (`testdata/`):
//! a list of three Nodes, watch frames (MODIFIED, DELETED, BOOKMARK, an
//! ERROR for an expired resourceVersion) and a 404's Status.

use super::*;

const LIST: &[u8] = include_bytes!("../testdata/node-list.pb");
const MODIFIED: &[u8] = include_bytes!("../testdata/watch-modified.pb");
const DELETED_BOOKMARK: &[u8] = include_bytes!("../testdata/watch-delete-bookmark.pb");
const GONE: &[u8] = include_bytes!("../testdata/watch-gone.pb");
const NOT_FOUND: &[u8] = include_bytes!("../testdata/not-found.pb");

fn list_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<ListItem<Node>>, bool) {
    let mut d = ListDecoder::default();
    let mut items = Vec::new();
    for c in bytes.chunks(chunk) {
        d.push(c);
        while let Some(item) = d.next_item().expect("decodes") {
            items.push(item);
        }
    }
    (items, d.complete())
}

fn name(n: &Node) -> &str {
    n.metadata.as_ref().map_or("", |m| m.name.as_str())
}

#[test]
fn a_list_gives_its_version_then_each_node_however_it_is_cut() {
    for chunk in [1, 7, 100, 1 << 20] {
        let (items, complete) = list_in_chunks(LIST, chunk);
        assert!(complete, "chunks of {chunk}");
        assert_eq!(items.len(), 4, "chunks of {chunk}");
        assert_eq!(items[0], ListItem::Version("5262".into()));
        let ListItem::Item(peer) = &items[2] else {
            panic!("a Node")
        };
        assert_eq!(name(peer), "peer-0");
        let meta = peer.metadata.as_ref().expect("metadata");
        assert_eq!(
            meta.annotations
                .get("flannel.alpha.coreos.com/backend-type")
                .map(String::as_str),
            Some("vxlan")
        );
        assert!(!meta.resource_version.is_empty());
        let spec = peer.spec.as_ref().expect("spec");
        assert_eq!(spec.pod_cidr, "100.64.0.64/26");
        assert_eq!(spec.pod_cidrs, vec!["100.64.0.64/26"]);
    }
}

#[test]
fn a_cut_list_is_not_complete_and_garbage_is_refused() {
    let (items, complete) = list_in_chunks(&LIST[..LIST.len() - 200], 64);
    assert!(!complete);
    assert_eq!(items.len(), 3, "the last Node is not given half-read");
    let mut d = ListDecoder::default();
    d.push(b"{\"kind\":\"NodeList\"}");
    assert!(d.next_item().expect_err("JSON").contains("k8s"));
    // a Node where a NodeList belongs
    let mut d = ListDecoder::default();
    let envelope = MODIFIED
        .windows(4)
        .position(|w| w == b"k8s\0")
        .expect("an envelope");
    d.push(&MODIFIED[envelope..]);
    let e = d.next_item().expect_err("a Node");
    assert!(e.contains("NodeList") && e.contains("Node"), "{e}");
}

#[test]
fn watch_frames_give_modified_deleted_bookmark() {
    let mut d = WatchDecoder::default();
    for c in MODIFIED.chunks(5) {
        d.push(c);
    }
    let ev = d.next_event().expect("decodes").expect("an event");
    assert_eq!(ev.kind, "MODIFIED");
    let Object::Item(n) = ev.object else {
        panic!("a Node")
    };
    assert_eq!(name(&n), "peer-7");
    let bookmark = d
        .next_event()
        .expect("decodes")
        .expect("the bookmark before the timeout");
    assert_eq!(bookmark.kind, "BOOKMARK");
    assert_eq!(d.next_event().expect("decodes"), None);

    let mut d = WatchDecoder::default();
    d.push(DELETED_BOOKMARK);
    let deleted = d.next_event().expect("decodes").expect("an event");
    assert_eq!(deleted.kind, "DELETED");
    let Object::Item(n) = deleted.object else {
        panic!("a Node")
    };
    assert_eq!(name(&n), "peer-4999");
    assert_eq!(
        n.spec.map(|s| s.pod_cidrs),
        Some(vec!["100.68.226.0/26".to_string()])
    );
    let bookmark = d.next_event().expect("decodes").expect("an event");
    assert_eq!(bookmark.kind, "BOOKMARK");
    let Object::Item(b) = bookmark.object else {
        panic!("a Node")
    };
    assert_eq!(b.resource_version(), "5266");
    // the watch's last frame, a bookmark just before its timeout
    let last = d.next_event().expect("decodes").expect("an event");
    assert_eq!(last.kind, "BOOKMARK");
    assert_eq!(d.next_event().expect("decodes"), None);
}

#[test]
fn an_expired_version_and_a_missing_node_are_statuses() {
    let mut d = WatchDecoder::default();
    d.push(GONE);
    let ev = d.next_event().expect("decodes").expect("an event");
    assert_eq!(ev.kind, "ERROR");
    let Object::Status(s) = ev.object else {
        panic!("a Status")
    };
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
    assert!(
        s.message.starts_with("too old resource version"),
        "{}",
        s.message
    );

    let Object::Status(s) = decode_object(NOT_FOUND).expect("decodes") else {
        panic!("a Status")
    };
    assert_eq!(s.code, 404);
    assert_eq!(s.message, r#"nodes "no-such-node" not found"#);
    assert!(decode_object(b"{}").is_err());
}

#[test]
fn an_oversized_frame_is_refused() {
    let mut d = WatchDecoder::default();
    d.push(&[0xff, 0xff, 0xff, 0xff]);
    assert!(d.next_event().is_err());
}

#[test]
fn cut_or_corrupted_bytes_are_errors_never_panics() {
    for end in 0..LIST.len() {
        let mut d = ListDecoder::default();
        d.push(&LIST[..end]);
        while let Ok(Some(_)) = d.next_item() {}
        // complete once the NodeList is whole: only the envelope's empty
        // encoding and content-type fields (4 bytes) follow it
        assert!(!d.complete() || end >= LIST.len() - 4, "complete at {end}");
    }
    for at in (0..LIST.len()).step_by(7) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = LIST.to_vec();
            bytes[at] ^= flip;
            let mut d = ListDecoder::default();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_item() {}
        }
    }
    for at in 0..DELETED_BOOKMARK.len() {
        let mut bytes = DELETED_BOOKMARK.to_vec();
        bytes[at] ^= 0xff;
        let mut d = WatchDecoder::default();
        d.push(&bytes);
        while let Ok(Some(_)) = d.next_event() {}
    }
    // a length varint of ten bytes (near u64::MAX) inside the list
    let mut d = ListDecoder::default();
    d.push(b"k8s\0\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    assert!(d.next_item().is_err());
}

fn varint_bytes(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A NodeList of `n` empty Nodes, in its envelope.
fn empty_nodes(n: usize) -> Vec<u8> {
    let items: Vec<u8> = std::iter::repeat_n([0x12u8, 0x00], n).flatten().collect();
    let mut out = b"k8s\0\x12".to_vec();
    out.extend(varint_bytes(items.len()));
    out.extend(items);
    out
}

#[test]
fn a_list_is_capped_in_nodes_and_bytes() {
    let count = |bytes: &[u8]| -> Result<usize, String> {
        let mut d = ListDecoder::default();
        d.push(bytes);
        let mut n = 0;
        while let Some(item) = d.next_item()? {
            n += matches!(item, ListItem::Item(_)) as usize;
        }
        Ok(n)
    };
    assert_eq!(count(&empty_nodes(MAX_LIST_ITEMS)), Ok(MAX_LIST_ITEMS));
    assert_eq!(
        count(&empty_nodes(MAX_LIST_ITEMS + 1)),
        Err(format!("more than {MAX_LIST_ITEMS} Nodes in one list"))
    );
    // a list declaring more bytes than allowed is refused before any arrive
    let mut huge = b"k8s\0\x12".to_vec();
    huge.extend(varint_bytes(MAX_LIST_BYTES + 1));
    assert!(count(&huge).expect_err("too big").contains("bytes"));
    // one item declaring more than a frame is refused before it is buffered
    let mut big_item = b"k8s\0\x12".to_vec();
    let inner = [vec![0x12u8], varint_bytes(MAX_FRAME + 1)].concat();
    big_item.extend(varint_bytes(inner.len() + MAX_FRAME + 1));
    big_item.extend(inner);
    assert!(count(&big_item).expect_err("too big").contains("list item"));
}

/// An error answer (the API server's 404) is read as its Status; another
/// object is not taken for one.
#[test]
fn an_error_answer_is_read_as_its_status() {
    use crate::kube_proto::decode_status;
    let s = decode_status(NOT_FOUND).expect("a Status");
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, r#"nodes "no-such-node" not found"#);
    let e = decode_status(LIST).expect_err("a NodeList");
    assert!(e.contains("\"NodeList\""), "{e}");
    assert!(decode_status(b"{}").is_err());
}
